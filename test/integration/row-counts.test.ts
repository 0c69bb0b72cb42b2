// The backup records how many rows each of the instance's tables held, counted inside the
// maintenance window, so that a restore can prove it brought every row back: the counts equal
// COUNT(*) of every table with the instance's prefix (odd names included), no other table is
// counted, and a row written before the window is counted while one written after it is not.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMariaDb, type MariaDbServer } from '../harness/mariadb.ts';
import { startPostgres, type PostgresServer } from '../harness/postgres.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import { startSshd, type SshServer } from '../harness/sshd.ts';
import { requireTool } from '../harness/tools.ts';
import type { SampleInstance } from '../sample/instance.ts';
import { quoteName } from '../sample/schema.ts';
import { runBackupCli } from '../support/backup-run.ts';
import { explain, occSwitches, sshArgs } from '../support/cli-checks.ts';
import { sampleOn, type Engine } from '../support/instances.ts';
import { holdOccAt } from '../support/occ-hold.ts';
import { finishedBackup } from '../support/restore.ts';

let mariadb: MariaDbServer;
let postgres: PostgresServer;
let sshd: SshServer;
const scratch = makeScratchDir('row-counts-test');
// occ runs as the instance's owner, who must be able to reach the instance.
chmodSync(scratch.path, 0o755);
let counter = 0;

beforeAll(async () => {
  [mariadb, postgres, sshd] = await Promise.all([startMariaDb(), startPostgres(), startSshd()]);
});
afterAll(async () => {
  await Promise.all([mariadb?.stop(), postgres?.stop(), sshd?.stop()]);
  scratch.remove();
});

const PREFIX = 'oc_';
/** A prefixed table whose name needs quoting in every engine. */
const ODD = `${PREFIX}odd \`"' name`;
/** Not prefixed: `ocX` matches the LIKE pattern `oc_%`, so a LIKE without escaping counts it. */
const NOT_PREFIXED = ['ocXlookalike', 'other_app_table'];
/** A prefixed table the tests write rows into at chosen moments. */
const PROBE = `${PREFIX}rowcount_probe`;

async function sample(engine: Engine): Promise<SampleInstance> {
  const instance = await sampleOn(engine, { mariadb, postgres }, scratch.path, counter++, {
    tablePrefix: PREFIX,
  });
  await asInstanceUser(
    instance,
    [ODD, ...NOT_PREFIXED, PROBE]
      .map((table) => `CREATE TABLE ${quoteName(engine, table)} (id INTEGER);`)
      .join('\n'),
  );
  await insert(instance, ODD, 3);
  await insert(instance, NOT_PREFIXED[0]!, 2);
  await insert(instance, NOT_PREFIXED[1]!, 4);
  return instance;
}

/** SQL run as the instance's own database user would (PostgreSQL: tables it owns). */
function asInstanceUser(instance: SampleInstance, sql: string) {
  const { engine } = instance.database;
  return instance.database.query(
    engine === 'pgsql'
      ? `SET ROLE ${quoteName(engine, String(instance.config.dbuser))};\n${sql}`
      : sql,
  );
}

async function insert(instance: SampleInstance, table: string, rows: number): Promise<void> {
  const values = Array.from({ length: rows }, (_, i) => `(${i + 1})`).join(', ');
  await asInstanceUser(
    instance,
    `INSERT INTO ${quoteName(instance.database.engine, table)} VALUES ${values};`,
  );
}

/** COUNT(*) of every table with the prefix, queried one by one as an administrator. */
async function prefixedCounts(instance: SampleInstance): Promise<Record<string, number>> {
  const { database } = instance;
  const counts: Record<string, number> = {};
  for (const table of await database.tables())
    if (table.startsWith(PREFIX))
      counts[table] = Number(
        (await database.query(`SELECT COUNT(*) FROM ${quoteName(database.engine, table)};`))[0]![0],
      );
  return counts;
}

async function backup(instance: SampleInstance, args: string[] = []) {
  const backupDir = join(instance.root, 'backups');
  mkdirSync(backupDir, { recursive: true });
  const run = await runBackupCli(
    ['--owncloud-dir', instance.installDir, '--backup-dir', backupDir, ...args],
    { secrets: [instance.dbPassword] },
  );
  expect(run.exitCode, explain(run)).toBe(0);
  expect(run.leaks).toEqual([]);
  return { run, ...finishedBackup(backupDir) };
}

describe.each([
  ['sqlite', 'local'],
  ['mysql', 'local'],
  ['pgsql', 'local'],
  ['mysql', 'ssh'],
] as const)('the manifest records the row counts of the %s database (%s)', (engine, transport) => {
  it('exactly the COUNT(*) of every prefixed table, odd names included, and no other table', async () => {
    const instance = await sample(engine);
    const expected = await prefixedCounts(instance);
    // The sample's own tables, with rows, beside the ones this test added.
    expect(Object.keys(expected).length).toBeGreaterThan(8);
    expect(Object.values(expected).filter((n) => n > 0).length).toBeGreaterThan(4);
    expect(expected[ODD]).toBe(3);
    const { manifest, run } = await backup(instance, transport === 'ssh' ? sshArgs(sshd) : []);
    expect(manifest.database.rowCounts).toEqual(expected);
    for (const table of NOT_PREFIXED) expect(manifest.database.rowCounts).not.toHaveProperty(table);
    expect(manifest.database.rowCountsInWindow).toBe(true);
    expect(manifest.format).toBe('owncloud-backup/1');
    const tables = Object.keys(expected).length;
    const rows = Object.values(expected).reduce((sum, n) => sum + n, 0);
    expect(run.stderr).toContain(`Row counts: ${tables} tables, ${rows} rows.`);
    instance.remove();
  });
});

describe.each(['sqlite', 'mysql', 'pgsql'] as const)(
  'the row counts are taken inside the maintenance window (%s)',
  (engine) => {
    it('a row written while occ switches maintenance mode on is counted', async () => {
      const instance = await sample(engine);
      // occ has switched maintenance mode on and waits: the window is about to open.
      const hold = holdOccAt(instance, 'maintenance:mode --on');
      const running = backup(instance);
      try {
        // -1: the run ended without reaching occ's call (its own assertions say why).
        const occPid = await Promise.race([
          hold.reached(),
          running.then(
            () => -1,
            () => -1,
          ),
        ]);
        expect(occPid).toBeGreaterThan(0);
        expect(instance.readConfig().maintenance).toBe(true);
        await insert(instance, PROBE, 1);
      } finally {
        hold.release();
      }
      const { manifest } = await running;
      expect(manifest.database.rowCounts[PROBE]).toBe(1);
      expect(manifest.database.rowCounts).toEqual(await prefixedCounts(instance));
      instance.remove();
    });

    it('a row written while occ switches maintenance mode off is not counted', async () => {
      const instance = await sample(engine);
      // occ has switched maintenance mode off and waits: the window has closed.
      const hold = holdOccAt(instance, 'maintenance:mode --off');
      const running = backup(instance);
      try {
        // -1: the run ended without reaching occ's call (its own assertions say why).
        const occPid = await Promise.race([
          hold.reached(),
          running.then(
            () => -1,
            () => -1,
          ),
        ]);
        expect(occPid).toBeGreaterThan(0);
        expect(instance.readConfig().maintenance).toBe(false);
        await insert(instance, PROBE, 1);
      } finally {
        hold.release();
      }
      const { manifest } = await running;
      const now = await prefixedCounts(instance);
      expect(now[PROBE]).toBe(1);
      expect(manifest.database.rowCounts).toEqual({ ...now, [PROBE]: 0 });
      instance.remove();
    });
  },
);

describe('without maintenance mode', () => {
  it('the rows are still counted beside the dump, and the manifest says not in a window', async () => {
    const instance = await sample('sqlite');
    const { manifest } = await backup(instance, ['--maintenance-mode', 'false']);
    expect(instance.occCalls()).toEqual([]);
    expect(occSwitches(instance)).toEqual([]);
    expect(manifest.database.rowCounts).toEqual(await prefixedCounts(instance));
    expect(manifest.database.rowCountsInWindow).toBe(false);
    instance.remove();
  });
});

describe('a WAL-mode SQLite database', () => {
  it('is counted read-only as its owner: the counts are exact and no journal file belongs to root', async () => {
    const instance = await sample('sqlite');
    const file = join(instance.dataDir, `${String(instance.config.dbname)}.db`);
    const sqlite3 = requireTool('sqlite3');
    expect(execFileSync(sqlite3, [file, 'PRAGMA journal_mode=WAL;'], { encoding: 'utf8' })).toBe(
      'wal\n',
    );
    const { manifest } = await backup(instance);
    expect(manifest.database.rowCounts).toEqual(await prefixedCounts(instance));
    expect(manifest.database.rowCounts[ODD]).toBe(3);
    for (const suffix of ['-wal', '-shm']) {
      const stats = statSync(`${file}${suffix}`, { throwIfNoEntry: false });
      if (stats) expect([stats.uid, stats.gid]).toEqual([instance.owner.uid, instance.owner.gid]);
    }
    instance.remove();
  });
});
