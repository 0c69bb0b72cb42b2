// The restore test: every backup can prove it restores. The dump is loaded into a throwaway
// server the tool starts on the runner, every table's rows are compared with the counts of
// the maintenance window, and the files archive is checked for config.php, the data
// marker and every user's files/. A dump that lost rows fails (naming the table), a backup
// whose test fails leaves no backup behind, and a runner without the server programs says
// "skipped", never "passed".
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/manifest.ts';
import { startMariaDb, type MariaDbServer } from '../harness/mariadb.ts';
import { startPostgres, type PostgresServer } from '../harness/postgres.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import { requireTool } from '../harness/tools.ts';
import type { SampleInstance } from '../sample/instance.ts';
import { CLI, cliForAnyUser, runBackupCli } from '../support/backup-run.ts';
import { sampleOn, type Engine } from '../support/instances.ts';

let mariadb: MariaDbServer;
let postgres: PostgresServer;
const scratch = makeScratchDir('restore-test');
chmodSync(scratch.path, 0o755);
let counter = 0;
/** The finished backup of each engine's sample, for the verify tests. */
const backups: Partial<Record<Engine, string>> = {};

beforeAll(async () => {
  [mariadb, postgres] = await Promise.all([startMariaDb(), startPostgres()]);
});
afterAll(async () => {
  await Promise.all([mariadb?.stop(), postgres?.stop()]);
  scratch.remove();
});

/**
 * Hides the server programs: PATH without /usr/sbin (mariadbd) and /usr/local/bin (where
 * this machine links postgres), and no fixed directories.
 */
const WITHOUT_SERVERS = { PATH: '/usr/bin:/bin', OWNCLOUD_BACKUP_SERVER_DIRS: '' };
/** PATH without the directories that link postgres here (a backup needs /usr/sbin's runuser). */
const PATH_WITHOUT_POSTGRES = (process.env.PATH ?? '')
  .split(':')
  .filter((dir) => !dir.startsWith('/usr/local/') && !dir.includes('postgresql'))
  .join(':');

async function backUp(
  engine: Engine,
  options: { env?: Record<string, string>; args?: (instance: SampleInstance) => string[] } = {},
): Promise<{
  instance: SampleInstance;
  backupDir: string;
  run: Awaited<ReturnType<typeof runBackupCli>>;
}> {
  const instance = await sampleOn(engine, { mariadb, postgres }, scratch.path, counter++);
  const backupDir = join(scratch.path, `backups-${counter}`);
  mkdirSync(backupDir);
  const run = await runBackupCli(
    [
      '--owncloud-dir',
      instance.installDir,
      '--backup-dir',
      backupDir,
      '--restore-test',
      'true',
      ...(options.args?.(instance) ?? []),
    ],
    {
      secrets: [instance.dbPassword],
      env: { OWNCLOUD_BACKUP_DB_PASSWORD: instance.dbPassword, ...options.env },
    },
  );
  return { instance, backupDir, run };
}

function manifestOf(dir: string): Manifest {
  return JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;
}

function verifyCli(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [CLI, 'verify', ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
}

describe('the restore test in a backup', () => {
  for (const engine of ['sqlite', 'mysql', 'pgsql'] as const)
    it(`passes on an intact ${engine} backup and is recorded in the manifest`, async () => {
      const { instance, backupDir, run } = await backUp(engine);
      expect(run.exitCode, run.stderr).toBe(0);
      expect(run.leaks).toEqual([]);
      const [name] = readdirSync(backupDir);
      const dir = join(backupDir, name!);
      backups[engine] = dir;
      const manifest = manifestOf(dir);
      const counts = manifest.database.rowCounts;
      const test = manifest.restoreTest!;
      expect(test.result, test.reason).toBe('passed');
      expect(test.tables).toBe(Object.keys(counts).length);
      expect(test.tables).toBeGreaterThan(5);
      expect(test.rows).toBe(Object.values(counts).reduce((sum, n) => sum + n, 0));
      // Every sample user has a home storage and a files/ directory.
      expect(test.users).toBe(instance.users.length);
      expect(test.users).toBeGreaterThan(0);
      expect(test.server).toMatch(
        { sqlite: /^sqlite3 3\./, mysql: /^mariadbd 10\./, pgsql: /^postgres 1\d\./ }[engine],
      );
      expect(test.seconds).toBeGreaterThan(0);
      expect(run.stderr).toContain(`restore test passed (`);
      expect(run.stdout).toContain('restore test passed');
    });

  it('is recorded as skipped, with the missing program named, on a runner without postgres; verify --restore-test then passes where postgres is', async () => {
    const { backupDir, run } = await backUp('pgsql', {
      env: { PATH: PATH_WITHOUT_POSTGRES, OWNCLOUD_BACKUP_SERVER_DIRS: '' },
    });
    expect(run.exitCode, run.stderr).toBe(0);
    const dir = join(backupDir, readdirSync(backupDir)[0]!);
    const test = manifestOf(dir).restoreTest!;
    expect(test.result).toBe('skipped');
    expect(test.reason).toBe('no postgres on the runner');
    expect(run.stderr).toContain('warning: restore test skipped: no postgres on the runner');

    const verified = verifyCli(['--restore-test', dir]);
    expect(verified.status, verified.stdout + verified.stderr).toBe(0);
    expect(verified.stdout).toMatch(/restore test passed \(\d+\.\d s, postgres \d+/);
    const tables = Object.keys(manifestOf(dir).database.rowCounts).length;
    expect(verified.stdout).toContain(`with the ${tables} tables and`);
  });

  it('fails the backup, leaving no backup behind, when the loaded dump lacks rows', async () => {
    // A zstd on PATH that drops two filecache rows from what the restore test loads (and
    // only from that: the backup's own dump is written and counted intact).
    const wrapper = join(scratch.path, `lossy-zstd-${counter}`);
    mkdirSync(wrapper);
    writeFileSync(
      join(wrapper, 'zstd'),
      `#!/bin/sh
if [ "$1" = "-dc" ] && [ "$2" = "--" ]; then
  ${requireTool('zstd')} "$@" | awk '/^INSERT INTO "?oc_filecache"? VALUES/ && n < 2 { n++; next } { print }'
  exit 0
fi
exec ${requireTool('zstd')} "$@"
`,
      { mode: 0o755 },
    );
    const { backupDir, run } = await backUp('sqlite', {
      env: { PATH: `${wrapper}:${process.env.PATH}` },
    });
    expect(run.exitCode, run.stdout + run.stderr).toBe(1);
    expect(run.stderr).toMatch(
      /error: The restore test failed \(.*\): the restored database differs: oc_filecache has (\d+) rows, the backup counted (\d+)/,
    );
    const [, restored, recorded] = /oc_filecache has (\d+) rows, the backup counted (\d+)/.exec(
      run.stderr,
    )!;
    expect(Number(recorded) - Number(restored)).toBe(2);
    expect(readdirSync(backupDir).filter((n) => n.startsWith('owncloud-backup-'))).toEqual([]);
  });
});

describe('the files archive check', () => {
  it('fails the backup when a user with a home storage has no files/ in the archive', async () => {
    let user = '';
    const { backupDir, run } = await backUp('sqlite', {
      args: (instance) => {
        user = instance.users[0]!;
        return ['--exclude', `/${user}/files/`];
      },
    });
    expect(run.exitCode, run.stdout + run.stderr).toBe(1);
    expect(run.stderr).toContain(
      `: the files archive has no files/ directory for user ${user} (a home storage in the database)`,
    );
    expect(readdirSync(backupDir)).toEqual([]);
  });
});

describe('owncloud-backup verify --restore-test', () => {
  /**
   * The command's TMPDIR: where the throwaway server's private directory is made (short
   * enough for a unix socket path; a deeper one makes the tool use /tmp).
   */
  const tmp = mkdtempSync('/tmp/ocb-rt-');
  chmodSync(tmp, 0o1777);
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  /** A copy of a backup whose dump lost `drop` rows of `table`, with manifest and sums fixed. */
  function withRowsRemoved(source: string, table: string): string {
    const dir = join(scratch.path, `corrupt-${counter++}`);
    execFileSync('cp', ['-a', source, dir]);
    const manifest = manifestOf(dir);
    const dump = manifest.archives.find((a) => a.role === 'database')!;
    const path = join(dir, dump.name);
    const sql = execFileSync('zstd', ['-dc', '--', path]).toString('latin1').split('\n');
    let dropped = 0;
    const kept = sql.filter((line) => {
      if (dropped < 3 && new RegExp(`^INSERT INTO "?${table}"? VALUES`).test(line)) {
        dropped++;
        return false;
      }
      return true;
    });
    expect(dropped).toBe(3);
    const text = Buffer.from(kept.join('\n'), 'latin1');
    execFileSync('zstd', ['-q', '-f', '-o', path], { input: text });
    const bytes = readFileSync(path);
    dump.size = statSync(path).size;
    dump.sha256 = createHash('sha256').update(bytes).digest('hex');
    manifest.database.dumpBytes = text.length;
    writeFileSync(join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    writeFileSync(
      join(dir, 'SHA256SUMS'),
      manifest.archives.map((a) => `${a.sha256}  ${a.name}\n`).join(''),
    );
    return dir;
  }

  it('fails on a dump from which rows were removed, naming the table and both counts', () => {
    const dir = withRowsRemoved(backups.sqlite!, 'oc_filecache');
    // Plain verify cannot tell: the archive is whole and its records match.
    const plain = verifyCli([dir]);
    expect(plain.status, plain.stdout).toBe(0);
    const recorded = manifestOf(dir).database.rowCounts.oc_filecache!;
    const run = verifyCli(['--restore-test', dir]);
    expect(run.status, run.stdout + run.stderr).toBe(1);
    expect(run.stdout).toContain(`restore test failed (`);
    expect(run.stdout).toContain(
      `the restored database differs: oc_filecache has ${recorded - 3} rows, the backup counted ${recorded}`,
    );
  });

  it('says skipped (exit 3), naming what is missing, when the server programs are hidden', () => {
    for (const [engine, missing] of [
      ['mysql', 'mariadbd/mysqld'],
      ['pgsql', 'postgres'],
    ] as const) {
      const run = verifyCli(['--restore-test', backups[engine]!], {
        ...WITHOUT_SERVERS,
        TMPDIR: tmp,
      });
      expect(run.status, run.stdout + run.stderr).toBe(3);
      expect(run.stdout).toContain(`restore test skipped: no ${missing} on the runner\n`);
      expect(run.stdout).not.toContain('restore test passed');
    }
    expect(readdirSync(tmp)).toEqual([]);
  });

  it('runs as an unprivileged user, as on a hosted runner (no root, no sudo)', () => {
    const { node, cli } = cliForAnyUser();
    const nobodyTmp = tmp;
    for (const engine of ['mysql', 'pgsql'] as const) {
      const readable = join(scratch.path, `readable-${engine}`);
      execFileSync('cp', ['-a', backups[engine]!, readable]);
      execFileSync('chmod', ['-R', 'a+rX', readable]);
      const run = spawnSync(
        requireTool('setpriv'),
        [
          '--reuid=nobody',
          '--regid=nogroup',
          '--clear-groups',
          '--',
          node,
          cli,
          'verify',
          '--restore-test',
          readable,
        ],
        { encoding: 'utf8', env: { ...process.env, TMPDIR: nobodyTmp }, cwd: '/' },
      );
      expect(run.status, run.stdout + run.stderr).toBe(0);
      expect(run.stdout).toContain('restore test passed (');
    }
    expect(readdirSync(nobodyTmp)).toEqual([]);
  });

  it('stops the throwaway server and removes its directory when interrupted', async () => {
    const child = spawn(process.execPath, [CLI, 'verify', '--restore-test', backups.mysql!], {
      env: { ...process.env, TMPDIR: tmp },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    // Interrupted once the server runs in its private directory.
    const serverPids = () =>
      readdirSync('/proc')
        .filter((pid) => /^\d+$/.test(pid))
        .filter((pid) => {
          try {
            const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
            return (
              argv[0]!.endsWith('mariadbd') && argv.some((a) => a.startsWith(`--datadir=${tmp}/`))
            );
          } catch {
            return false;
          }
        });
    // The server is up once its socket exists in the private directory.
    const listening = () =>
      readdirSync(tmp)
        .filter((name) => name.startsWith('owncloud-backup-restore-test-'))
        .some((dir) => readdirSync(join(tmp, dir)).includes('mysqld.sock'));
    const deadline = Date.now() + 60_000;
    while (!listening() && Date.now() < deadline) await sleep(20);
    expect(serverPids()).toHaveLength(1);
    expect(readdirSync(tmp)).toHaveLength(1);
    child.kill('SIGINT');
    expect(await exited, stderr).toBe(130);
    expect(serverPids()).toEqual([]);
    expect(readdirSync(tmp)).toEqual([]);
  });
});
