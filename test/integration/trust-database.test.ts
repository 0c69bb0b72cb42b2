// The database part of a backup says "OK" only when it is: the database is checked with the
// dump's own credentials before anything changes (a stopped server or a wrong password
// stops the run before the bulk copy and before maintenance mode), a missing SQLite file is
// named and never created, a PostgreSQL database name is only ever a name, and a MySQL
// password of any length works without ever appearing in a command line.
import { execFileSync } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  statSync,
  symlinkSync,
  watch,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMariaDb, type MariaDbServer } from '../harness/mariadb.ts';
import { startPostgres, type PostgresServer } from '../harness/postgres.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import { startSshd, type SshServer } from '../harness/sshd.ts';
import { requireTool } from '../harness/tools.ts';
import type { SampleInstance, SampleOptions } from '../sample/instance.ts';
import { hostilePassword, lockTargetOf, sampleOn, type Engine } from '../support/instances.ts';
import { holdDumpLock, runBackupCli, type CliRun } from '../support/backup-run.ts';
import {
  archivePath,
  expectSameDatabase,
  finishedBackup,
  restoreDump,
} from '../support/restore.ts';
import { diffTrees, snapshotTree } from '../support/tree.ts';
import { explain, errorLine, occSwitches, sshArgs as sshArgsFor } from '../support/cli-checks.ts';

let mariadb: MariaDbServer;
let postgres: PostgresServer;
let sshd: SshServer;
const scratch = makeScratchDir('trust-database-test');
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

type Transport = 'local' | 'ssh';

function sample(
  engine: Engine,
  options: Partial<SampleOptions> = {},
  servers = { mariadb, postgres },
): Promise<SampleInstance> {
  return sampleOn(engine, servers, scratch.path, counter++, options);
}

function sshArgs(transport: Transport): string[] {
  return transport === 'local' ? [] : sshArgsFor(sshd);
}

/**
 * Runs a backup of the instance into a fresh backup dir, recording every name that appears
 * in that dir while it runs (the run's working directory appears before the bulk copy).
 */
async function backupWatched(
  instance: SampleInstance,
  args: string[],
  options: Parameters<typeof runBackupCli>[1],
): Promise<{ run: CliRun; backupDir: string; appeared: string[] }> {
  const backupDir = join(instance.root, 'backups');
  mkdirSync(backupDir, { recursive: true });
  const appeared = new Set<string>();
  const watcher = watch(backupDir, (_event, name) => appeared.add(String(name)));
  try {
    const run = await runBackupCli(
      ['--owncloud-dir', instance.installDir, '--backup-dir', backupDir, ...args],
      options,
    );
    // Events the kernel queued before the run ended are delivered on the next turns.
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 0));
    return { run, backupDir, appeared: [...appeared] };
  } finally {
    watcher.close();
  }
}

/** What a run stopped by the preflight must guarantee: nothing was touched, nothing copied. */
function expectStoppedBeforeAnything(
  instance: SampleInstance,
  outcome: { run: CliRun; backupDir: string; appeared: string[] },
  secrets: string[],
): string {
  const { run } = outcome;
  expect(run.exitCode, explain(run)).toBe(1);
  expect(run.stderr).not.toMatch(/\n\s+at .*\(.*:\d+:\d+\)/); // no stack trace
  expect(instance.occCalls()).toEqual([]); // maintenance mode never even looked at
  expect(instance.readConfig().maintenance).toBe(false);
  expect(outcome.appeared).toEqual([]); // no working directory: no file copy began
  expect(readdirSync(outcome.backupDir)).toEqual([]);
  expect(run.stdout).not.toContain('Files (bulk copy');
  expect(run.leaks).toEqual([]);
  for (const secret of secrets) expect(`${run.stdout}${run.stderr}`).not.toContain(secret);
  return errorLine(run);
}

describe('a SQLite database file that is not there', () => {
  it.each(['local', 'ssh'] as const)(
    'a wrong db-name is named, before maintenance mode, and nothing is created in the data directory (%s)',
    async (transport) => {
      const instance = await sample('sqlite');
      const before = await snapshotTree(instance.dataDir);
      const outcome = await backupWatched(
        instance,
        ['--db-name', 'no-such-db', ...sshArgs(transport)],
        { secrets: [] },
      );
      const error = expectStoppedBeforeAnything(instance, outcome, []);
      expect(error).toBe(
        `owncloud-backup: error: The database check failed (nothing was changed yet): The SQLite database file '${instance.dataDir}/no-such-db.db' does not exist: check dbname and datadirectory in config.php (or the db-name and data-dir inputs).`,
      );
      expect(existsSync(join(instance.dataDir, 'no-such-db.db'))).toBe(false);
      expect(diffTrees(before, await snapshotTree(instance.dataDir))).toEqual([]);
      instance.remove();
    },
  );

  it('a data-dir without the database is named, and nothing is created in it', async () => {
    const instance = await sample('sqlite');
    // Another data directory (marked as one), without the instance's database in it.
    const otherData = join(instance.root, 'other-data');
    mkdirSync(otherData, { mode: 0o770 });
    writeFileSync(join(otherData, '.ocdata'), '');
    for (const path of [otherData, join(otherData, '.ocdata')])
      chownSync(path, instance.owner.uid, instance.owner.gid);
    const before = await snapshotTree(otherData);
    const beforeLive = await snapshotTree(instance.dataDir);
    const outcome = await backupWatched(instance, ['--data-dir', otherData], { secrets: [] });
    const error = expectStoppedBeforeAnything(instance, outcome, []);
    const file = `${otherData}/${String(instance.config.dbname)}.db`;
    expect(error).toContain(`The SQLite database file '${file}' does not exist`);
    expect(diffTrees(before, await snapshotTree(otherData))).toEqual([]);
    expect(diffTrees(beforeLive, await snapshotTree(instance.dataDir))).toEqual([]);
    instance.remove();
  });

  it.each([
    ['a text file', 'not a database\n', 'is not an SQLite 3 database'],
    ['an empty file', '', 'is empty (0 bytes)'],
  ])(
    '%s where the database should be is refused, before maintenance mode',
    async (_label, content, message) => {
      const instance = await sample('sqlite');
      const file = join(instance.dataDir, 'impostor.db');
      writeFileSync(file, content);
      chownSync(file, instance.owner.uid, instance.owner.gid);
      const before = await snapshotTree(instance.dataDir);
      const outcome = await backupWatched(instance, ['--db-name', 'impostor'], { secrets: [] });
      const error = expectStoppedBeforeAnything(instance, outcome, []);
      expect(error).toContain(`'${file}' ${message}`);
      expect(diffTrees(before, await snapshotTree(instance.dataDir))).toEqual([]);
      instance.remove();
    },
  );

  it('a WAL-mode database is dumped read-only as its owner and restores to the same rows', async () => {
    const instance = await sample('sqlite');
    const file = join(instance.dataDir, `${String(instance.config.dbname)}.db`);
    execFileSync(requireTool('sqlite3'), [file, 'PRAGMA journal_mode=WAL;']);
    expect(
      execFileSync(requireTool('sqlite3'), [file, 'PRAGMA journal_mode;'], {
        encoding: 'utf8',
      }).trim(),
    ).toBe('wal');
    const outcome = await backupWatched(instance, [], { secrets: [] });
    expect(outcome.run.exitCode, explain(outcome.run)).toBe(0);
    const backup = finishedBackup(outcome.backupDir);
    const restored = await restoreDump(
      archivePath(backup, 'database'),
      backup.manifest,
      instance.root,
      {},
    );
    expect(await expectSameDatabase(instance.database, restored)).toBeGreaterThan(100);
    // Reading a WAL database needs its -shm/-wal files: made by the owner, never by root.
    for (const suffix of ['-wal', '-shm']) {
      const stats = statSync(`${file}${suffix}`, { throwIfNoEntry: false });
      if (stats) expect([stats.uid, stats.gid]).toEqual([instance.owner.uid, instance.owner.gid]);
    }
    instance.remove();
  });
});

describe.each([
  ['mysql', 'local'],
  ['mysql', 'ssh'],
  ['pgsql', 'local'],
  ['pgsql', 'ssh'],
] as const)('the %s database is checked before anything changes (%s)', (engine, transport) => {
  it('a wrong password stops the run before the bulk copy and maintenance mode', async () => {
    const instance = await sample(engine);
    const wrong = `wrong ${hostilePassword()}`;
    const secrets = [instance.dbPassword, wrong];
    const outcome = await backupWatched(instance, sshArgs(transport), {
      secrets,
      env: { OWNCLOUD_BACKUP_DB_PASSWORD: wrong },
    });
    const error = expectStoppedBeforeAnything(instance, outcome, secrets);
    const user = String(instance.config.dbuser);
    expect(error).toBe(
      engine === 'mysql'
        ? `owncloud-backup: error: The database check failed (nothing was changed yet): MySQL refused user '${user}' (access denied): wrong password or missing rights on '${String(instance.config.dbname)}'.`
        : `owncloud-backup: error: The database check failed (nothing was changed yet): PostgreSQL refused user '${user}' (password authentication failed).`,
    );
    instance.remove();
  });

  it('a stopped server stops the run before the bulk copy and maintenance mode', async () => {
    // A server of its own, stopped once the instance's database is in it.
    const own =
      engine === 'mysql'
        ? { mariadb: await startMariaDb(), postgres }
        : { mariadb, postgres: await startPostgres() };
    const server = engine === 'mysql' ? own.mariadb : own.postgres;
    const instance = await sample(engine, {}, own);
    await server.stop();
    const outcome = await backupWatched(instance, sshArgs(transport), {
      secrets: [instance.dbPassword],
    });
    const error = expectStoppedBeforeAnything(instance, outcome, [instance.dbPassword]);
    expect(error).toBe(
      engine === 'mysql'
        ? `owncloud-backup: error: The database check failed (nothing was changed yet): Could not reach the MySQL server ${server.host}:${server.port} (is it running?).`
        : `owncloud-backup: error: The database check failed (nothing was changed yet): Could not reach the PostgreSQL server ${server.host}:${server.port} (is it running?), or it closed the connection.`,
    );
    instance.remove();
  });
});

describe('a host without the database client the check needs', () => {
  it('is told so before the bulk copy and maintenance mode', async () => {
    // A host whose PATH has what the backup uses there, mysqldump among it, but no mysql.
    const bin = join(scratch.path, 'host-bin-without-mysql');
    mkdirSync(bin);
    for (const tool of [
      'sh',
      'id',
      'stat',
      'test',
      'php',
      'du',
      'runuser',
      'head',
      'env',
      'tar',
      'mktemp',
      'flock',
      'cat',
    ])
      symlinkSync(execFileSync('which', [tool], { encoding: 'utf8' }).trim(), join(bin, tool));
    symlinkSync(requireTool('mariadb-dump'), join(bin, 'mysqldump'));
    const limited = await startSshd({ sessionPath: bin });
    try {
      const instance = await sample('mysql');
      const outcome = await backupWatched(
        instance,
        [
          '--host',
          limited.host,
          '--port',
          String(limited.port),
          '--ssh-key-file',
          limited.privateKeyPath,
          '--known-hosts-file',
          limited.knownHostsPath,
        ],
        { secrets: [instance.dbPassword] },
      );
      const error = expectStoppedBeforeAnything(instance, outcome, [instance.dbPassword]);
      expect(error).toBe(
        `owncloud-backup: error: root@${limited.host}:${limited.port} has no mysql to check the mysql database before the backup: install it there.`,
      );
      instance.remove();
    } finally {
      await limited.stop();
    }
  });
});

describe('a database server that accepts and never answers (dump-timeout)', () => {
  it('is found by the check, before the bulk copy and maintenance mode', async () => {
    const instance = await sample('mysql');
    const silent = createServer(() => {}); // accepts, then says nothing, ever
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as AddressInfo).port;
    try {
      const outcome = await backupWatched(
        instance,
        ['--db-host', '127.0.0.1', '--db-port', String(port)],
        { secrets: [instance.dbPassword] },
      );
      const error = expectStoppedBeforeAnything(instance, outcome, [instance.dbPassword]);
      // The client gives up on the handshake after its own 15 s connect-timeout.
      expect(error).toBe(
        `owncloud-backup: error: The database check failed (nothing was changed yet): Could not reach the MySQL server 127.0.0.1:${port} (is it running?).`,
      );
    } finally {
      silent.close();
    }
  });

  it('stops a dump that goes silent inside the maintenance window, and restores it', async () => {
    const instance = await sample('mysql');
    const lock = await holdDumpLock(instance, lockTargetOf('mysql', { mariadb, postgres }));
    try {
      const outcome = await backupWatched(instance, ['--dump-timeout', '2'], {
        secrets: [instance.dbPassword],
      });
      expect(outcome.run.exitCode, explain(outcome.run)).toBe(1);
      expect(errorLine(outcome.run)).toBe(
        'owncloud-backup: error: The database dump produced no output for 2 s and was stopped (dump-timeout): is the database server answering?',
      );
      expect(occSwitches(instance)).toEqual([
        'www-data maintenance:mode --on',
        'www-data maintenance:mode --off',
      ]);
      expect(instance.readConfig().maintenance).toBe(false);
      expect(readdirSync(outcome.backupDir)).toEqual([]);
    } finally {
      await lock.release();
    }
  });
});

describe('a MySQL password longer than an option-file line', () => {
  it.each(['local', 'ssh'] as const)(
    'works, and never appears in a command line or a message (%s)',
    async (transport) => {
      // About 5,000 bytes of shell syntax, quotes and backslashes: past the 4 KiB line.
      let password = hostilePassword();
      while (Buffer.byteLength(password) < 5000) password += ` ${hostilePassword()}`;
      const instance = await sample('mysql', { dbPassword: password });
      // The dump waits on a table lock until the watcher has seen its command line: seen on
      // a busy machine too, however short the dump.
      const lock = await holdDumpLock(instance, lockTargetOf('mysql', { mariadb, postgres }));
      let released: Promise<void> | undefined;
      const release = () => (released ??= lock.release());
      const outcome = await backupWatched(instance, sshArgs(transport), {
        secrets: [password, password.slice(-60), password.slice(4080, 4140)],
        onDump: release,
      }).finally(release);
      const { run } = outcome;
      expect(run.exitCode, explain(run)).toBe(0);
      expect(run.dumpSeen).toBe(true);
      expect(run.leaks).toEqual([]);
      for (const part of [password.slice(0, 40), password.slice(-40)])
        expect(`${run.stdout}${run.stderr}`).not.toContain(part);
      const backup = finishedBackup(outcome.backupDir);
      expect(JSON.stringify(backup.manifest)).not.toContain(password.slice(0, 40));
      const restored = await restoreDump(
        archivePath(backup, 'database'),
        backup.manifest,
        instance.root,
        { mariadb },
      );
      expect(await expectSameDatabase(instance.database, restored)).toBeGreaterThan(100);
      instance.remove();
    },
  );
});

describe('a PostgreSQL database name that reads like a connection string', () => {
  it.each(['local', 'ssh'] as const)(
    'is dumped as that database, and the dump restores to the same rows (%s)',
    async (transport) => {
      // Read as a connection string, this names another (empty) database on the same server.
      const name = `dbname=postgres application_name='oc ${counter} o\\'q x'`;
      const instance = await sample('pgsql', { dbName: name });
      expect(instance.config.dbname).toBe(name);
      const outcome = await backupWatched(instance, sshArgs(transport), {
        secrets: [instance.dbPassword],
      });
      expect(outcome.run.exitCode, explain(outcome.run)).toBe(0);
      const backup = finishedBackup(outcome.backupDir);
      const restored = await restoreDump(
        archivePath(backup, 'database'),
        backup.manifest,
        instance.root,
        { postgres },
      );
      expect(await expectSameDatabase(instance.database, restored)).toBeGreaterThan(100);
      instance.remove();
    },
  );
});
