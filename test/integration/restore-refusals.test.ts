// What a restore refuses before it changes anything: server code of another version (for a
// package install's backup), a damaged backup, a tool missing on the host, a database it
// cannot reach. Each says why in one line, exits 1, and leaves the instance byte for byte
// and row for row as it was, maintenance mode included, with no moved-aside container.
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  symlinkSync,
  writeFileSync,
  writeSync,
  closeSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMariaDb, type MariaDbServer } from '../harness/mariadb.ts';
import { startPostgres, type PostgresServer } from '../harness/postgres.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import { runBackupCli, runRestoreCli, type CliRun } from '../support/backup-run.ts';
import { errorLine, explain } from '../support/cli-checks.ts';
import { sampleOn, type Engine } from '../support/instances.ts';
import {
  archivePath,
  changeInstance,
  expectSameState,
  finishedBackup,
  instanceState,
  type InstanceState,
} from '../support/restore.ts';
import type { Manifest } from '../../src/manifest.ts';
import type { SampleInstance } from '../sample/instance.ts';

let mariadb: MariaDbServer;
let postgres: PostgresServer;
const scratch = makeScratchDir('restore-refusals');
chmodSync(scratch.path, 0o755);
let counter = 0;

beforeAll(async () => {
  [mariadb, postgres] = await Promise.all([startMariaDb(), startPostgres()]);
});
afterAll(async () => {
  await Promise.all([mariadb?.stop(), postgres?.stop()]);
  scratch.remove();
});

interface Prepared {
  instance: SampleInstance;
  backup: { dir: string; manifest: Manifest };
  before: InstanceState;
  occCalls: number;
}

/** A backup of a sample instance, then the instance changed: the state a refusal must keep. */
async function prepared(engine: Engine, backupArgs: string[] = []): Promise<Prepared> {
  const id = counter++;
  const instance = await sampleOn(engine, { mariadb, postgres }, scratch.path, id);
  const backupDir = join(scratch.path, `backups-${id}`);
  mkdirSync(backupDir);
  const run = await runBackupCli(
    ['--owncloud-dir', instance.installDir, '--backup-dir', backupDir, ...backupArgs],
    { secrets: [instance.dbPassword] },
  );
  expect(run.exitCode, explain(run)).toBe(0);
  const backup = finishedBackup(backupDir);
  await changeInstance(instance);
  return {
    instance,
    backup,
    before: await instanceState(instance, backup.manifest),
    occCalls: instance.occCalls().length,
  };
}

/** Refused with exit 1, and nothing on the target changed. */
async function expectRefusedUnchanged(p: Prepared, run: CliRun): Promise<string> {
  expect(run.exitCode, explain(run)).toBe(1);
  expect(run.leaks).toEqual([]);
  expect(run.stderr).not.toMatch(/\n\s+at /);
  expectSameState(await instanceState(p.instance, p.backup.manifest), p.before);
  expect(p.instance.readConfig().maintenance).toBe(true);
  const switches = p.instance
    .occCalls()
    .slice(p.occCalls)
    .filter((c) => c.args[0] !== 'status' && !c.args.join(' ').startsWith('config:system:get'))
    .filter((c) => !(c.args[0] === 'maintenance:mode' && c.args.length === 1));
  expect(switches).toEqual([]);
  const containers = execFileSync(
    'find',
    [p.instance.root, '-name', '.owncloud-restore-previous-*'],
    {
      encoding: 'utf8',
    },
  );
  expect(containers).toBe('');
  return errorLine(run);
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function restoreArgs(p: Prepared): string[] {
  return [p.backup.dir, '--owncloud-dir', p.instance.installDir];
}

describe('server code of another version (a package install: the code is not in the backup)', () => {
  function otherVersion(p: Prepared): void {
    writeFileSync(
      join(p.instance.installDir, 'version.php'),
      "<?php\n$OC_Version = [10, 14, 0, 3];\n$OC_VersionString = '10.14.0';\n",
    );
  }

  it('is refused, naming both versions', async () => {
    const p = await prepared('sqlite', ['--install-type', 'package']);
    expect(p.backup.manifest.source.installType).toBe('package');
    otherVersion(p);
    p.before = await instanceState(p.instance, p.backup.manifest);
    const run = await runRestoreCli(restoreArgs(p), { secrets: [] });
    expect(await expectRefusedUnchanged(p, run)).toBe(
      `owncloud-backup: error: The server code in ${p.instance.installDir} is version 10.14.0.3, the backup is of version ${p.backup.manifest.instance.version}: install ${p.backup.manifest.instance.version}, or restore anyway with allow-version-mismatch (then run occ upgrade yourself). Nothing was changed.`,
    );
    p.instance.remove();
  });

  it('proceeds with --allow-version-mismatch, and warns', async () => {
    const p = await prepared('sqlite', ['--install-type', 'package']);
    otherVersion(p);
    const run = await runRestoreCli([...restoreArgs(p), '--allow-version-mismatch'], {
      secrets: [],
    });
    expect(run.exitCode, explain(run)).toBe(0);
    expect(run.stderr).toContain(
      `The server code in ${p.instance.installDir} is version 10.14.0.3, the backup is of version ${p.backup.manifest.instance.version}; restoring anyway (allow-version-mismatch).`,
    );
    // Restored: the user added after the backup is gone; the code (not in the backup) stays.
    const prefix = String(p.instance.config.dbtableprefix);
    const users = await p.instance.database.tableRows(`${prefix}users`);
    expect(users.join('\n')).not.toContain('mallory');
    expect(
      execFileSync('cat', [join(p.instance.installDir, 'version.php')], { encoding: 'utf8' }),
    ).toContain('10, 14, 0, 3');
    p.instance.remove();
  });
});

describe('a damaged backup', () => {
  it('is refused by the verification, before anything on the target is looked at', async () => {
    const p = await prepared('sqlite');
    const archive = archivePath(p.backup, 'files');
    const fd = openSync(archive, 'r+');
    const byte = Buffer.alloc(1);
    const at = Math.floor(p.backup.manifest.archives.find((a) => a.role === 'files')!.size / 2);
    readSync(fd, byte, 0, 1, at);
    byte[0] = byte[0]! ^ 0xff;
    writeSync(fd, byte, 0, 1, at);
    closeSync(fd);
    const run = await runRestoreCli(restoreArgs(p), { secrets: [] });
    const line = await expectRefusedUnchanged(p, run);
    const name = escape(archive.split('/').pop()!);
    expect(line).toMatch(
      new RegExp(
        `^owncloud-backup: error: The backup ${escape(p.backup.dir)} is damaged; nothing was changed on the target\\. ${name}: sha256 is [0-9a-f]{64}, manifest says ${p.backup.manifest.archives.find((a) => a.role === 'files')!.sha256}; ${name}: decompresses with errors`,
      ),
    );
    expect(p.instance.occCalls().length).toBe(p.occCalls);
    p.instance.remove();
  });
});

describe('a tool missing on the host', () => {
  /** A PATH holding every program of this one, but the ones named. */
  function pathWithout(...missing: string[]): string {
    const dir = join(scratch.path, `path-${counter++}`);
    mkdirSync(dir);
    const linked = new Set<string>();
    for (const from of (process.env.PATH ?? '').split(':').filter(Boolean)) {
      let names: string[];
      try {
        names = readdirSync(from);
      } catch {
        continue;
      }
      for (const name of names) {
        if (missing.includes(name) || linked.has(name)) continue;
        linked.add(name);
        symlinkSync(join(from, name), join(dir, name));
      }
    }
    for (const name of missing) expect(linked.has(name)).toBe(false);
    return dir;
  }

  it.each([
    ['sqlite', 'sqlite3', 'sqlite3'],
    ['pgsql', 'psql', 'psql'],
    ['mysql', 'mariadb mysql', 'mariadb or mysql'],
  ] as const)('%s without %s: refused, naming it', async (engine, removed, named) => {
    const p = await prepared(engine);
    const run = await runRestoreCli(restoreArgs(p), {
      secrets: [p.instance.dbPassword],
      env: { PATH: pathWithout(...removed.split(' ')) },
    });
    expect(await expectRefusedUnchanged(p, run)).toBe(
      `owncloud-backup: error: this machine (${hostname()}) lacks ${named}, which the restore needs: install it there. Nothing was changed.`,
    );
    p.instance.remove();
  });
});

describe('a database the restore cannot reach', () => {
  async function closedPort(): Promise<number> {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    await new Promise((r) => server.close(r));
    return port;
  }

  it.each(['mysql', 'pgsql'] as const)(
    '%s: a port nothing listens on is refused by the preflight',
    async (engine) => {
      const p = await prepared(engine);
      const port = await closedPort();
      const run = await runRestoreCli(
        [...restoreArgs(p), '--db-host', '127.0.0.1', '--db-port', String(port)],
        { secrets: [p.instance.dbPassword] },
      );
      const line = await expectRefusedUnchanged(p, run);
      expect(line).toMatch(
        /^owncloud-backup: error: The database check failed \(nothing was changed\): /,
      );
      const server = engine === 'mysql' ? 'MySQL' : 'PostgreSQL';
      expect(line).toContain(
        `Could not reach the ${server} server 127.0.0.1:${port} (is it running?)`,
      );
      p.instance.remove();
    },
  );

  it.each(['mysql', 'pgsql'] as const)(
    '%s: a wrong password (env OWNCLOUD_BACKUP_DB_PASSWORD) is refused by the preflight',
    async (engine) => {
      const p = await prepared(engine);
      const wrong = 'not the password 1234';
      const run = await runRestoreCli(restoreArgs(p), {
        secrets: [p.instance.dbPassword, wrong],
        env: { OWNCLOUD_BACKUP_DB_PASSWORD: wrong },
      });
      const line = await expectRefusedUnchanged(p, run);
      expect(line).toMatch(
        /^owncloud-backup: error: The database check failed \(nothing was changed\): /,
      );
      const user = String(p.instance.config.dbuser);
      expect(line).toContain(
        engine === 'mysql'
          ? `MySQL refused user '${user}' (access denied): wrong password or missing rights on '${String(p.instance.config.dbname)}'.`
          : `PostgreSQL refused user '${user}' (password authentication failed).`,
      );
      expect(line).not.toContain(wrong);
      p.instance.remove();
    },
  );
});
