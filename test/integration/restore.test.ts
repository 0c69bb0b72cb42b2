// `owncloud-backup restore`: a backup of a sample instance comes back over a changed
// instance (a file added, one deleted, one modified, a user row added, maintenance mode left
// on by an admin), for each engine; afterwards every file (bytes, owners, modes, ACLs,
// xattrs, hard links) and every row equal the state at backup time, and occ was told.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMariaDb, type MariaDbServer } from '../harness/mariadb.ts';
import { startPostgres, type PostgresServer } from '../harness/postgres.ts';
import { systemUser } from '../harness/accounts.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import { startSshd, type SshServer } from '../harness/sshd.ts';
import { mysqlDatabase, pgsqlDatabase, sqliteDatabase } from '../sample/database.ts';
import { readConfigPhp } from '../sample/instance.ts';
import { sshArgs } from '../support/cli-checks.ts';
import { runBackupCli, runRestoreCli, type CliRun } from '../support/backup-run.ts';
import { sampleOn, type Engine } from '../support/instances.ts';
import {
  changeInstance,
  expectSameState,
  finishedBackup,
  instanceState,
} from '../support/restore.ts';
import { diffTrees } from '../support/tree.ts';

let mariadb: MariaDbServer;
let postgres: PostgresServer;
const scratch = makeScratchDir('restore');
chmodSync(scratch.path, 0o755);
let counter = 0;

beforeAll(async () => {
  [mariadb, postgres] = await Promise.all([startMariaDb(), startPostgres()]);
});
afterAll(async () => {
  await Promise.all([mariadb?.stop(), postgres?.stop()]);
  scratch.remove();
});

/** The previous-state directories of restores under a directory. */
function containersUnder(dir: string): string[] {
  return execFileSync('find', [dir, '-name', '.owncloud-restore-previous-*', '-prune', '-print0'], {
    encoding: 'utf8',
  })
    .split('\0')
    .filter(Boolean);
}

function expectOk(run: CliRun): void {
  expect(run.exitCode, `${run.stdout}\n${run.stderr}`).toBe(0);
  expect(run.leaks).toEqual([]);
}

describe('restore onto the instance it was taken from (in place)', () => {
  for (const engine of ['sqlite', 'mysql', 'pgsql'] as Engine[])
    it(`${engine}: files, rows and the recorded maintenance state come back; the added file is gone`, async () => {
      const instance = await sampleOn(engine, { mariadb, postgres }, scratch.path, counter++);
      const backupDir = join(instance.root, 'backups');
      mkdirSync(backupDir);
      expectOk(
        await runBackupCli(['--owncloud-dir', instance.installDir, '--backup-dir', backupDir], {
          secrets: [instance.dbPassword],
        }),
      );
      const backup = finishedBackup(backupDir);
      const before = await instanceState(instance, backup.manifest);
      await changeInstance(instance);
      const changed = await instanceState(instance, backup.manifest);
      expect(diffTrees(before.data, changed.data)).not.toEqual([]);
      expect(changed.rows).not.toEqual(before.rows);
      const callsBefore = instance.occCalls().length;

      const run = await runRestoreCli([backup.dir, '--owncloud-dir', instance.installDir], {
        secrets: [instance.dbPassword],
      });
      expectOk(run);
      const after = await instanceState(instance, backup.manifest);
      expectSameState(after, before);
      expect(existsSync(join(instance.dataDir, 'alice', 'files', 'new after the backup.txt'))).toBe(
        false,
      );
      const fingerprint = instance.readConfig()['data-fingerprint'];
      expect(fingerprint).toMatch(/^[0-9a-f]{32}$/);
      expect(instance.readConfig().maintenance).toBe(false);
      const calls = instance
        .occCalls()
        .slice(callsBefore)
        .map((c) => c.args.join(' '));
      expect(calls).toContain('maintenance:data-fingerprint');
      expect(calls.at(-1)).toBe('maintenance:mode --off');
      // The closing check compared every table's rows with the backup's counts.
      const tables = Object.keys(backup.manifest.database.rowCounts!).length;
      expect(tables).toBe(before.tables.length);
      expect(run.stderr).toContain(`Row counts: ${tables} tables`);
      // The previous state is kept, and named.
      expect(run.stdout).toMatch(/previous state kept in .*\.owncloud-restore-previous-/);
      const containers = () => containersUnder(instance.root);
      expect(containers().length).toBeGreaterThan(0);
      const cleanup = await runRestoreCli(['--cleanup', '--owncloud-dir', instance.installDir], {
        secrets: [instance.dbPassword],
      });
      expectOk(cleanup);
      expect(cleanup.stdout).toMatch(/^Removed .*\.owncloud-restore-previous-/);
      expect(containers()).toEqual([]);
      expectSameState(await instanceState(instance, backup.manifest), before);
      // SQLite: a new database file, the web server user's.
      if (engine === 'sqlite') {
        const file = statSync(backup.manifest.database.file!);
        expect([file.uid, file.gid]).toEqual([instance.owner.uid, instance.owner.gid]);
      }
      instance.remove();
    });

  it('maintenance mode stays on when the administrator had it on before the backup', async () => {
    const instance = await sampleOn('sqlite', { mariadb, postgres }, scratch.path, counter++, {
      maintenance: true,
    });
    const backupDir = join(instance.root, 'backups');
    mkdirSync(backupDir);
    expectOk(
      await runBackupCli(['--owncloud-dir', instance.installDir, '--backup-dir', backupDir], {
        secrets: [instance.dbPassword],
      }),
    );
    const backup = finishedBackup(backupDir);
    expect(backup.manifest.maintenance.priorState).toBe(true);
    const callsBefore = instance.occCalls().length;
    const run = await runRestoreCli([backup.dir, '--owncloud-dir', instance.installDir], {
      secrets: [instance.dbPassword],
    });
    expectOk(run);
    expect(instance.readConfig().maintenance).toBe(true);
    const calls = instance
      .occCalls()
      .slice(callsBefore)
      .map((c) => c.args.join(' '));
    expect(calls).toContain('maintenance:data-fingerprint');
    expect(calls).not.toContain('maintenance:mode --off');
    expect(run.stdout).toContain('maintenance mode on (as before the backup)');
    instance.remove();
  });
});

/** A database account that may drop and create databases and users, reached like the instance. */
async function createAdmins(): Promise<{ mysql: string; pgsql: string }> {
  const password = `admin ${counter} 'q' "d" \\ $(id)`;
  const mysqlQuoted = `'${password.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
  // For each way a client reaches the server (as the harness creates the instances' users).
  for (const from of ['localhost', '127.0.0.1', '%'])
    await mariadb.query(
      `CREATE USER IF NOT EXISTS 'restore_admin'@'${from}'; ALTER USER 'restore_admin'@'${from}' IDENTIFIED BY ${mysqlQuoted}; GRANT ALL PRIVILEGES ON *.* TO 'restore_admin'@'${from}' WITH GRANT OPTION;`,
    );
  await postgres.query(
    `DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'restore_admin') THEN CREATE ROLE restore_admin LOGIN SUPERUSER; END IF; END $$; ALTER ROLE restore_admin PASSWORD '${password.replaceAll("'", "''")}';`,
  );
  return { mysql: password, pgsql: password };
}

describe('restore over SSH, with a database admin account', () => {
  let sshd: SshServer;
  let adminPassword: string;
  beforeAll(async () => {
    sshd = await startSshd();
    adminPassword = (await createAdmins()).mysql;
  });
  afterAll(async () => {
    await sshd?.stop();
  });

  for (const engine of ['sqlite', 'mysql', 'pgsql'] as Engine[])
    it(`${engine}: the database is dropped and recreated by the admin, and everything equals the backup`, async () => {
      const instance = await sampleOn(engine, { mariadb, postgres }, scratch.path, counter++);
      const backupDir = join(instance.root, 'backups');
      mkdirSync(backupDir);
      expectOk(
        await runBackupCli(
          ['--owncloud-dir', instance.installDir, '--backup-dir', backupDir, ...sshArgs(sshd)],
          { secrets: [instance.dbPassword] },
        ),
      );
      const backup = finishedBackup(backupDir);
      const before = await instanceState(instance, backup.manifest);
      await changeInstance(instance);
      const admin = engine === 'sqlite' ? [] : ['--db-admin-user', 'restore_admin'];
      // One of them removes the previous state at once.
      const discard = engine === 'pgsql' ? ['--discard-previous'] : [];
      const run = await runRestoreCli(
        [backup.dir, '--owncloud-dir', instance.installDir, ...sshArgs(sshd), ...admin, ...discard],
        {
          secrets: [instance.dbPassword, adminPassword],
          ...(engine === 'sqlite'
            ? {}
            : { env: { OWNCLOUD_BACKUP_DB_ADMIN_PASSWORD: adminPassword } }),
        },
      );
      expectOk(run);
      expectSameState(await instanceState(instance, backup.manifest), before);
      expect(instance.readConfig().maintenance).toBe(false);
      expect(containersUnder(instance.root).length > 0).toBe(engine !== 'pgsql');
      if (engine === 'pgsql') expect(run.stderr).toContain('Removed the previous state');
      const name = backup.manifest.database.name;
      if (engine === 'mysql') {
        expect(run.stderr).toContain(
          `dropped and recreated the database '${name}' (utf8mb4) as restore_admin`,
        );
        expect(
          await instance.database.query(
            `SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '${name}';`,
          ),
        ).toEqual([['utf8mb4', 'utf8mb4_general_ci']]);
      }
      if (engine === 'pgsql') {
        const user = backup.manifest.database.user;
        expect(run.stderr).toContain(
          `dropped and recreated the database '${name}' (UTF8, owned by ${user}) as restore_admin`,
        );
        expect(
          await instance.database.query(
            `SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding) FROM pg_database WHERE datname = '${name}';`,
          ),
        ).toEqual([[user, 'UTF8']]);
      }
      instance.remove();
    });
});

describe('restore onto a new host (disaster recovery)', () => {
  const webUser = 'ocb-restore-web';
  let adminPassword: string;
  beforeAll(async () => {
    adminPassword = (await createAdmins()).mysql;
    if (spawnSync('getent', ['passwd', webUser]).status !== 0)
      execFileSync('useradd', [
        '--system',
        '--no-create-home',
        '--shell',
        '/usr/sbin/nologin',
        webUser,
      ]);
  });

  for (const engine of ['sqlite', 'mysql', 'pgsql'] as Engine[])
    it(`${engine}: another directory, another database with new credentials, another web server user; B equals A`, async () => {
      const a = await sampleOn(engine, { mariadb, postgres }, scratch.path, counter++, {
        dataDirOutside: true,
      });
      const backupDir = join(a.root, 'backups');
      mkdirSync(backupDir);
      expectOk(
        await runBackupCli(
          ['--owncloud-dir', a.installDir, '--backup-dir', backupDir, '--install-type', 'tarball'],
          {
            secrets: [a.dbPassword],
          },
        ),
      );
      const backup = finishedBackup(backupDir);
      const stateOfA = await instanceState(a, backup.manifest);

      // Host B: nothing but an empty web root owned by its web server's user.
      const b = join(scratch.path, `new host ${counter}`);
      mkdirSync(b, { mode: 0o755 });
      const installDir = join(b, 'www', 'owncloud');
      const dataDir = join(b, 'srv', 'owncloud-data');
      mkdirSync(installDir, { recursive: true });
      const web = systemUser(webUser);
      execFileSync('chown', [`${web.uid}:${web.gid}`, installDir]);
      const newName = `owncloud_b_${counter}`;
      const newUser = `oc_b_${counter}`;
      const newPassword = `new ${counter} 'q' "d" $(id) \\`;
      const run = await runRestoreCli(
        [
          backup.dir,
          '--owncloud-dir',
          installDir,
          '--data-dir',
          dataDir,
          ...(engine === 'sqlite'
            ? ['--safety-copy', 'false']
            : ['--db-name', newName, '--db-user', newUser, '--db-admin-user', 'restore_admin']),
          '--owner',
          webUser,
        ],
        {
          secrets: [a.dbPassword, adminPassword, newPassword],
          env:
            engine === 'sqlite'
              ? {}
              : {
                  OWNCLOUD_BACKUP_DB_PASSWORD: newPassword,
                  OWNCLOUD_BACKUP_DB_ADMIN_PASSWORD: adminPassword,
                },
        },
      );
      expectOk(run);
      expect(run.stdout).toContain('(a new host)');
      // Without a safety copy (sqlite here) nothing is kept; with one, B's empty web root is.
      expect(containersUnder(b).length > 0).toBe(engine !== 'sqlite');
      if (engine === 'sqlite') expect(run.stdout).toContain('no previous state kept');
      const config = () => readConfigPhp(join(installDir, 'config', 'config.php'));
      const database =
        engine === 'sqlite'
          ? sqliteDatabase(join(dataDir, `${String(a.config.dbname)}.db`))
          : engine === 'mysql'
            ? mysqlDatabase(mariadb, newName)
            : pgsqlDatabase(postgres, newName);
      const stateOfB = await instanceState(
        { installDir, dataDir, database, readConfig: config },
        backup.manifest,
      );

      // Files: equal but for their owner, which is B's web server user everywhere.
      const owners = (state: typeof stateOfA) =>
        [...state.install.values(), ...state.data.values()].map((e) => `${e.uid}:${e.gid}`);
      expect(new Set(owners(stateOfB))).toEqual(new Set([`${web.uid}:${web.gid}`]));
      const withoutOwners = (tree: typeof stateOfA.install) =>
        new Map([...tree].map(([p, e]) => [p, { ...e, uid: 0, gid: 0 }]));
      expect(diffTrees(withoutOwners(stateOfA.install), withoutOwners(stateOfB.install))).toEqual(
        [],
      );
      expect(diffTrees(withoutOwners(stateOfA.data), withoutOwners(stateOfB.data))).toEqual([]);
      // config.php: A's, with the new values the restore was given, and said so.
      const changed =
        engine === 'sqlite'
          ? { datadirectory: dataDir }
          : { datadirectory: dataDir, dbname: newName, dbuser: newUser, dbpassword: newPassword };
      expect(stateOfB.config).toEqual({ ...stateOfA.config, ...changed });
      expect(run.stdout).toContain(`config.php changed: ${Object.keys(changed).join(', ')}`);
      // Every row, in a database the new user owns and reaches with the new password.
      expect(stateOfB.tables).toEqual(stateOfA.tables);
      expect(stateOfB.rows).toEqual(stateOfA.rows);
      if (engine === 'pgsql')
        expect(
          await database.query(
            `SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public';`,
          ),
        ).toEqual([[newUser]]);
      // A is untouched.
      expectSameState(await instanceState(a, backup.manifest), stateOfA);
      a.remove();
    });
});

describe('restore onto a host where the archive’s owner does not exist', () => {
  it('gives the files to the owner of the installation directory, and says so', async () => {
    // The instance's user exists while the backup runs, then is gone (another machine).
    const gone = `ocb-gone-${process.pid}`;
    execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', gone]);
    let removed = false;
    try {
      const a = await sampleOn('sqlite', { mariadb, postgres }, scratch.path, counter++, {
        owner: gone,
        dataDirOutside: true,
      });
      const { uid } = a.owner;
      const backupDir = join(a.root, 'backups');
      mkdirSync(backupDir);
      expectOk(
        await runBackupCli(
          ['--owncloud-dir', a.installDir, '--backup-dir', backupDir, '--install-type', 'tarball'],
          { secrets: [a.dbPassword] },
        ),
      );
      const backup = finishedBackup(backupDir);
      execFileSync('userdel', [gone]);
      removed = true;

      const b = join(scratch.path, `orphan host ${counter}`);
      const installDir = join(b, 'owncloud');
      mkdirSync(installDir, { recursive: true });
      execFileSync('chown', ['www-data:www-data', installDir]);
      const www = systemUser('www-data');
      const run = await runRestoreCli(
        [
          backup.dir,
          '--owncloud-dir',
          installDir,
          '--data-dir',
          join(b, 'data'),
          '--safety-copy',
          'false',
        ],
        { secrets: [a.dbPassword] },
      );
      expectOk(run);
      expect(run.stderr).toContain(
        `The restored files now belong to www-data (uid ${uid} of the archive does not exist here).`,
      );
      const owners = execFileSync('find', [installDir, join(b, 'data'), '-printf', '%u:%g\\n'], {
        encoding: 'utf8',
      });
      expect(new Set(owners.trim().split('\n'))).toEqual(new Set(['www-data:www-data']));
      expect(statSync(join(b, 'data', `${String(a.config.dbname)}.db`)).uid).toBe(www.uid);
      a.remove();
    } finally {
      if (!removed) spawnSync('userdel', [gone]);
    }
  });
});
