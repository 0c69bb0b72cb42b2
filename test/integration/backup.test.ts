// Backing up an ownCloud host end to end with the real command, against real servers:
// the backup restores to the same rows and the same files, maintenance mode is ON while
// the dump runs and back to its prior state afterwards, and no process ever shows the
// database password in its command line.
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/manifest.ts';
import { startMariaDb, type MariaDbServer } from '../harness/mariadb.ts';
import { startPostgres, type PostgresServer } from '../harness/postgres.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import { createNetworkHost } from '../harness/netns.ts';
import { startSshd, type SshServer } from '../harness/sshd.ts';
import type { SampleInstance, SampleOptions } from '../sample/instance.ts';
import { lockTargetOf, sampleOn, type Engine } from '../support/instances.ts';
import {
  holdDumpLock,
  runBackupCli,
  waitUntilNoDumpRuns,
  type CliRun,
} from '../support/backup-run.ts';
import {
  archivePath,
  expectSameDatabase,
  expectSameFiles,
  finishedBackup,
  restoreDump,
  unpackFiles,
  withoutMtime,
} from '../support/restore.ts';
import { diffTrees, snapshotTree } from '../support/tree.ts';
import { explain, errorLine, occSwitches, sshArgs as sshArgsFor } from '../support/cli-checks.ts';

let mariadb: MariaDbServer;
let postgres: PostgresServer;
let sshd: SshServer;
const scratch = makeScratchDir('backup-test');
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

function sample(engine: Engine, options: Partial<SampleOptions> = {}): Promise<SampleInstance> {
  return sampleOn(engine, { mariadb, postgres }, scratch.path, counter++, options);
}

function serverOf(engine: Engine) {
  return lockTargetOf(engine, { mariadb, postgres });
}

function sshArgs(server: SshServer = sshd): string[] {
  return sshArgsFor(server);
}

function backupDirFor(instance: SampleInstance): string {
  const dir = join(instance.root, `backups $(id) 'x'`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

function expectNoInjection(instance: SampleInstance): void {
  for (const dir of ['/', '/root', '/tmp', instance.root, instance.installDir, scratch.path])
    expect(existsSync(join(dir, 'pwned')), `${dir}/pwned`).toBe(false);
}

describe.each([
  ['sqlite', 'local'],
  ['sqlite', 'ssh'],
  ['mysql', 'local'],
  ['mysql', 'ssh'],
  ['pgsql', 'local'],
  ['pgsql', 'ssh'],
] as const)('a backup of an ownCloud instance on %s (%s)', (engine, transport) => {
  it('restores to the same rows and files, with maintenance mode ON during the dump only', async () => {
    const instance = await sample(engine);
    const backupDir = backupDirFor(instance);
    const lock = await holdDumpLock(instance, serverOf(engine));
    let maintenanceDuringDump: unknown;
    const run = await runBackupCli(
      [
        '--owncloud-dir',
        instance.installDir,
        '--backup-dir',
        backupDir,
        ...(transport === 'ssh' ? sshArgs() : []),
      ],
      {
        secrets: [instance.dbPassword],
        onDump: async () => {
          maintenanceDuringDump = instance.readConfig().maintenance;
          await lock.release();
        },
      },
    );
    expect(run.exitCode, explain(run)).toBe(0);
    expect(run.dumpSeen).toBe(true);
    expect(maintenanceDuringDump).toBe(true);
    expect(run.processesSeen).toBeGreaterThan(100);
    expect(run.leaks).toEqual([]);
    expect(`${run.stdout}${run.stderr}`).not.toContain(instance.dbPassword);
    expect(instance.readConfig().maintenance).toBe(false);
    expect(occSwitches(instance)).toEqual([
      'www-data maintenance:mode --on',
      'www-data maintenance:mode --off',
    ]);
    expectNoInjection(instance);

    // One finished, dated backup directory, and nothing else.
    const entries = readdirSync(backupDir);
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatch(/^owncloud-backup-\d{8}-\d{6}$/);
    const dir = join(backupDir, entries[0]!);
    expect(run.stdout).toContain(`Backup complete: ${dir}`);
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;
    const day = entries[0]!.slice(16, 24);
    expect(readdirSync(dir).sort()).toEqual([
      'SHA256SUMS',
      'manifest.json',
      `owncloud-dbbackup_${day}.bak.zst`,
      `owncloud-files-delta_${day}.tar.zst`,
      `owncloud-files_${day}.tar.zst`,
    ]);
    for (const archive of manifest.archives) {
      const bytes = readFileSync(join(dir, archive.name));
      expect(archive.size).toBe(bytes.length);
      expect(archive.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    }
    expect(manifest.instance).toEqual({
      product: 'owncloud',
      version: '10.15.0.2',
      instanceId: instance.config.instanceid,
      theme: 'mytheme',
    });
    expect(manifest.database.type).toBe(engine);
    expect(manifest.database.dumpTool).toMatch(
      engine === 'mysql'
        ? /^(mysqldump|mariadb-dump)$/
        : engine === 'pgsql'
          ? /^pg_dump$/
          : /^sqlite3$/,
    );
    expect(manifest.source.transport).toBe(transport);
    expect(manifest.maintenance).toMatchObject({
      managed: true,
      priorState: false,
      switchedByUs: true,
    });
    expect(manifest.maintenance.seconds).toBeGreaterThan(0);
    expect(JSON.stringify(manifest)).not.toContain(instance.dbPassword);

    // Restore, and compare.
    const restoreDir = join(instance.root, 'restore');
    const database = await restoreDump(
      join(dir, manifest.archives.find((a) => a.role === 'database')!.name),
      manifest,
      instance.root,
      { mariadb, postgres },
    );
    expect(await expectSameDatabase(instance.database, database)).toBeGreaterThan(100);
    unpackFiles(join(dir, manifest.archives.find((a) => a.role === 'files')!.name), restoreDir);
    expect(await expectSameFiles(instance, restoreDir, manifest)).toBeGreaterThan(60);
    instance.remove();
  });
});

describe('maintenance mode as the administrator left it', () => {
  it('stays on, untouched, when it was on before the backup', async () => {
    const instance = await sample('sqlite', { maintenance: true });
    const run = await runBackupCli(
      ['--owncloud-dir', instance.installDir, '--backup-dir', backupDirFor(instance)],
      { secrets: [] },
    );
    expect(run.exitCode, explain(run)).toBe(0);
    expect(instance.readConfig().maintenance).toBe(true);
    expect(occSwitches(instance)).toEqual([]);
    expect(run.stdout).toContain('maintenance mode: was on already, left on');
    instance.remove();
  });

  it('is not touched at all with --maintenance-mode false', async () => {
    const instance = await sample('sqlite');
    const run = await runBackupCli(
      [
        '--owncloud-dir',
        instance.installDir,
        '--backup-dir',
        backupDirFor(instance),
        '--maintenance-mode',
        'false',
      ],
      { secrets: [] },
    );
    expect(run.exitCode, explain(run)).toBe(0);
    expect(instance.occCalls()).toEqual([]);
    instance.remove();
  });
});

describe('a failed backup', () => {
  /** Runs a backup expected to fail; checks what every failure must guarantee. */
  async function failingBackup(
    instance: SampleInstance,
    args: string[],
    options: Parameters<typeof runBackupCli>[1],
  ): Promise<{ run: CliRun; error: string }> {
    const backupDir = backupDirFor(instance);
    const run = await runBackupCli(
      ['--owncloud-dir', instance.installDir, '--backup-dir', backupDir, ...args],
      options,
    );
    expect(run.exitCode, explain(run)).not.toBe(0);
    expect(run.leaks).toEqual([]);
    expect(run.stderr).not.toMatch(/\n\s+at .*\(.*:\d+:\d+\)/); // no stack trace
    // Every failure here happens in the maintenance window: maintenance mode was switched on
    // for the dump and back off (its prior state) afterwards; no partial backup is left.
    expect(occSwitches(instance)).toEqual([
      'www-data maintenance:mode --on',
      'www-data maintenance:mode --off',
    ]);
    const calls = instance.occCalls();
    expect(calls.at(-1)).toMatchObject({ maintenanceAfter: false });
    expect(instance.readConfig().maintenance).toBe(false);
    expect(readdirSync(backupDir)).toEqual([]);
    expectNoInjection(instance);
    return { run, error: errorLine(run) };
  }

  it.each(['mysql', 'pgsql'] as const)('detects a %s dump killed mid-way', async (engine) => {
    const instance = await sample(engine);
    const lock = await holdDumpLock(instance, serverOf(engine));
    const { error } = await failingBackup(instance, sshArgs(), {
      secrets: [instance.dbPassword],
      onDump: async (_cli, dump) => {
        expect(instance.readConfig().maintenance).toBe(true);
        process.kill(dump.pid, 'SIGKILL');
        await lock.release();
      },
    });
    expect(error).toMatch(/The database dump .*(failed with exit code|not complete)/);
  });

  it('stops before touching the instance when the backup directory lacks the space', async () => {
    const instance = await sample('sqlite');
    const small = join(instance.root, 'small disk');
    mkdirSync(small);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', small]);
    try {
      const run = await runBackupCli(
        ['--owncloud-dir', instance.installDir, '--backup-dir', small],
        { secrets: [] },
      );
      expect(run.exitCode, explain(run)).toBe(1);
      expect(errorLine(run)).toMatch(
        /^owncloud-backup: error: Not enough space in .*small disk: this backup needs about [\d.]+ MiB \(the archives, as large as the files when they do not compress\), [\d.]+ MiB is free\. Free space or choose another backup-dir\.$/,
      );
      expect(instance.occCalls()).toEqual([]);
      expect(readdirSync(small)).toEqual([]);
    } finally {
      execFileSync('umount', [small]);
    }
  });

  it('detects a locked SQLite database although sqlite3 exits 0', async () => {
    const instance = await sample('sqlite');
    const lock = await holdDumpLock(instance);
    try {
      const { error } = await failingBackup(instance, [], { secrets: [] });
      expect(error).toMatch(
        /sqlite3 rolled the dump back because of errors \(is the database locked\?\)|locked/,
      );
    } finally {
      await lock.release();
    }
  });

  it.each(['SIGINT', 'SIGTERM'] as const)(
    'stops, restores maintenance mode and leaves no dump running on %s',
    async (signal) => {
      const instance = await sample('mysql');
      const lock = await holdDumpLock(instance, serverOf('mysql'));
      const { run, error } = await failingBackup(instance, sshArgs(), {
        secrets: [instance.dbPassword],
        onDump: (cli) => {
          expect(instance.readConfig().maintenance).toBe(true);
          cli.kill(signal);
        },
      });
      try {
        expect(run.exitCode).toBe(130);
        expect(error).toMatch(/interrupted/i);
        expect(occSwitches(instance)).toEqual([
          'www-data maintenance:mode --on',
          'www-data maintenance:mode --off',
        ]);
        // The dump still waits for the lock, so only the watchdog can have stopped it.
        expect(await waitUntilNoDumpRuns(5000)).toEqual([]);
      } finally {
        await lock.release();
      }
    },
  );
});

describe('preflight', () => {
  it('stops before touching the instance when the host lacks a program the backup needs', async () => {
    // A host whose PATH has every program the backup uses there, except tar.
    const bin = join(scratch.path, 'host-bin-without-tar');
    mkdirSync(bin);
    for (const tool of [
      'sh',
      'id',
      'stat',
      'test',
      'php',
      'sqlite3',
      'du',
      'mktemp',
      'runuser',
      'head',
      'env',
      'sudo',
      'flock',
    ])
      symlinkSync(execFileSync('which', [tool], { encoding: 'utf8' }).trim(), join(bin, tool));
    const limited = await startSshd({ sessionPath: bin });
    try {
      const instance = await sample('sqlite');
      const backupDir = backupDirFor(instance);
      const run = await runBackupCli(
        ['--owncloud-dir', instance.installDir, '--backup-dir', backupDir, ...sshArgs(limited)],
        { secrets: [] },
      );
      expect(run.exitCode, explain(run)).toBe(1);
      expect(errorLine(run)).toBe(
        `owncloud-backup: error: root@${limited.host}:${limited.port} lacks tar: install it there.`,
      );
      expect(instance.occCalls()).toEqual([]);
      expect(readdirSync(backupDir)).toEqual([]);
    } finally {
      await limited.stop();
    }
  });
});

describe('a cut SSH link', () => {
  it('fails within seconds, and maintenance mode is restored once the host is reachable again', async () => {
    const network = createNetworkHost();
    const remote = await startSshd({ network });
    const instance = await sample('sqlite');
    const lock = await holdDumpLock(instance);
    let cutAt = 0;
    try {
      const backupDir = backupDirFor(instance);
      const run = await runBackupCli(
        [
          '--owncloud-dir',
          instance.installDir,
          '--backup-dir',
          backupDir,
          ...sshArgs(remote),
          '--ssh-keepalive',
          '1',
        ],
        {
          secrets: [],
          onDump: () => {
            expect(instance.readConfig().maintenance).toBe(true);
            network.cut();
            cutAt = Date.now();
            setTimeout(() => network.restore(), 9000);
          },
        },
      );
      expect(run.exitCode, explain(run)).toBe(1);
      expect(errorLine(run)).toMatch(
        // The dump, the files delta, the row count and the encryption settings share the
        // link: whichever notices first.
        /(The database dump failed|Copying files from \S+ failed \(rsync exit \d+\)|Counting the rows of the sqlite database's tables failed|Reading the encryption settings of the sqlite database failed): The SSH connection to root@10\.231\.\d+\.2:\d+ (was lost|timed out)/,
      );
      // Keepalives noticed the dead link while it was still down (it comes back after 9 s):
      // restoring maintenance mode was first tried, and retried, before the link returned.
      expect(run.stderr, explain(run)).toContain(
        'Could not switch maintenance mode off yet (attempt 1)',
      );
      expect(instance.readConfig().maintenance).toBe(false);
      expect(occSwitches(instance)).toEqual([
        'www-data maintenance:mode --on',
        'www-data maintenance:mode --off',
      ]);
      expect(readdirSync(backupDir)).toEqual([]);
      expect(Date.now() - cutAt).toBeLessThan(60_000);
    } finally {
      await lock.release();
      await remote.stop();
      network.stop();
    }
  });
});

describe('what goes into the files archive', () => {
  it('leaves out what --exclude names, and nothing else', async () => {
    const instance = await sample('sqlite');
    const backupDir = backupDirFor(instance);
    const run = await runBackupCli(
      [
        '--owncloud-dir',
        instance.installDir,
        '--backup-dir',
        backupDir,
        '--exclude',
        '*/thumbnails/',
        '--compression',
        'gzip',
      ],
      { secrets: [] },
    );
    expect(run.exitCode, explain(run)).toBe(0);
    const backup = finishedBackup(backupDir);
    const archive = archivePath(backup, 'files');
    expect(archive).toMatch(/\.tar\.gz$/);
    const restored = join(instance.root, 'restore');
    unpackFiles(archive, restored);
    // Everything but the thumbnails (and the live SQLite file) is there, byte for byte.
    for (const user of instance.users)
      expect(existsSync(join(instance.dataDir, user, 'thumbnails'))).toBe(true);
    const leftOut = new Set(backup.manifest.files.leftOut);
    const expected = await snapshotTree(instance.dataDir, {
      exclude: (p) => leftOut.has(p) || /(^|\/)thumbnails(\/|$)/.test(p),
    });
    expect(diffTrees(expected, await snapshotTree(join(restored, 'data')))).toEqual([]);
    instance.remove();
  });

  it("takes config.php's datadirectory with a trailing slash as the same directory", async () => {
    const instance = await sample('sqlite');
    const text = readFileSync(instance.configPath, 'utf8');
    const quoted = `'datadirectory' => '${instance.dataDir.replaceAll("'", "\\'")}'`;
    expect(text).toContain(quoted);
    writeFileSync(instance.configPath, text.replace(quoted, quoted.replace(/'$/, "//'")));
    const backupDir = backupDirFor(instance);
    const run = await runBackupCli(
      ['--owncloud-dir', instance.installDir, '--backup-dir', backupDir],
      { secrets: [] },
    );
    expect(run.exitCode, explain(run)).toBe(0);
    const backup = finishedBackup(backupDir);
    const { manifest } = backup;
    expect(manifest.source.dataDir).toBe(instance.dataDir);
    expect(manifest.files.leftOut[0]).toBe(`${String(instance.config.dbname)}.db`);
    const restored = join(instance.root, 'restore');
    unpackFiles(archivePath(backup, 'files'), restored);
    expect(existsSync(join(restored, 'data', `${String(instance.config.dbname)}.db`))).toBe(false);
    instance.remove();
  });

  it('holds the whole installation for a tarball install, data directory once', async () => {
    const instance = await sample('sqlite');
    const backupDir = backupDirFor(instance);
    const run = await runBackupCli(
      [
        '--owncloud-dir',
        instance.installDir,
        '--backup-dir',
        backupDir,
        '--install-type',
        'tarball',
        '--extra-paths',
        '/etc/hostname',
      ],
      { secrets: [] },
    );
    expect(run.exitCode, explain(run)).toBe(0);
    const backup = finishedBackup(backupDir);
    const restored = join(instance.root, 'restore');
    unpackFiles(archivePath(backup, 'files'), restored);
    // The whole installation, server code included, but its data dir only once (as data/).
    const installation = withoutMtime(
      await snapshotTree(instance.installDir, { exclude: (p) => p === 'data' }),
      'config/config.php',
    );
    expect(
      diffTrees(
        installation,
        withoutMtime(await snapshotTree(join(restored, 'owncloud')), 'config/config.php'),
      ),
    ).toEqual([]);
    expect(readdirSync(join(restored, 'owncloud'))).toContain('core');
    await expectSameFiles(instance, restored, backup.manifest, { installation: 'whole' });
    expect(readFileSync(join(restored, 'extra', 'etc', 'hostname'), 'utf8')).toBe(
      readFileSync('/etc/hostname', 'utf8'),
    );
    instance.remove();
  });

  it('backs up a Nextcloud instance with its data directory outside the installation', async () => {
    const instance = await sample('sqlite', { flavour: 'nextcloud', dataDirOutside: true });
    const backupDir = backupDirFor(instance);
    const run = await runBackupCli(
      ['--owncloud-dir', instance.installDir, '--backup-dir', backupDir, ...sshArgs()],
      { secrets: [] },
    );
    expect(run.exitCode, explain(run)).toBe(0);
    const backup = finishedBackup(backupDir);
    const { manifest } = backup;
    expect(manifest.instance.product).toBe('nextcloud');
    expect(manifest.files.leftOut).toContain(`${String(instance.config.dbname)}.db`);
    const restored = join(instance.root, 'restore');
    unpackFiles(archivePath(backup, 'files'), restored);
    await expectSameFiles(instance, restored, manifest);
    const database = await restoreDump(
      archivePath(backup, 'database'),
      manifest,
      instance.root,
      {},
    );
    await expectSameDatabase(instance.database, database);
    instance.remove();
  });
});

describe('command line input', () => {
  it('refuses a password on the command line, naming the safe alternatives', async () => {
    const run = await runBackupCli(['--db-password', 'secret-in-argv'], { secrets: [] });
    expect(run.exitCode).toBe(2);
    expect(errorLine(run)).toContain(
      'Refusing --db-password: a password on the command line is visible to every user of this machine. Use the environment variable OWNCLOUD_BACKUP_DB_PASSWORD or --db-password-file.',
    );
  });

  it('says which directory is not an ownCloud installation', async () => {
    const dir = join(scratch.path, 'not owncloud');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'index.php'), '');
    const run = await runBackupCli(['--owncloud-dir', dir, '--backup-dir', scratch.path], {
      secrets: [],
    });
    expect(run.exitCode).toBe(2);
    expect(errorLine(run)).toBe(
      `owncloud-backup: error: owncloud-dir '${dir}' has no config/config.php on this machine (${(await import('node:os')).hostname()}): is it an ownCloud installation?`,
    );
  });
});
