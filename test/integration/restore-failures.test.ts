// A failed restore leaves the old instance intact: for each failure injected during a
// restore (the database session killed during the load, SIGINT in each phase, the disk full
// during the extraction), the instance afterwards equals its state BEFORE the restore (the
// changed state, not the backup's): every file, every row, config.php and maintenance mode;
// no moved-aside container is left behind; the command exits non-zero and says what failed
// and that the previous state is back. Every moment is held deterministically (occ-hold for
// occ calls, a gate on the real tool's stdin for tar and the database clients).
import { execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMariaDb, type MariaDbServer } from '../harness/mariadb.ts';
import { startPostgres, type PostgresServer } from '../harness/postgres.ts';
import { createNetworkHost } from '../harness/netns.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import { startSshd } from '../harness/sshd.ts';
import {
  holdDumpLock,
  runBackupCli,
  runRestoreCli,
  type CliOptions,
  type CliRun,
} from '../support/backup-run.ts';
import { errorLine, explain, sshArgs } from '../support/cli-checks.ts';
import { lockTargetOf, sampleOn, type Engine } from '../support/instances.ts';
import { holdOccAt } from '../support/occ-hold.ts';
import {
  changeInstance,
  expectSameState,
  finishedBackup,
  instanceState,
  type InstanceState,
} from '../support/restore.ts';
import { ownProcesses } from '../support/processes.ts';
import { gateTool, type ToolGate } from '../support/tool-gate.ts';
import type { Manifest } from '../../src/manifest.ts';
import type { SampleInstance } from '../sample/instance.ts';

let mariadb: MariaDbServer;
let postgres: PostgresServer;
const scratch = makeScratchDir('restore-failures');
chmodSync(scratch.path, 0o755);
let counter = 0;

beforeAll(async () => {
  [mariadb, postgres] = await Promise.all([startMariaDb(), startPostgres()]);
});
afterAll(async () => {
  await Promise.all([mariadb?.stop(), postgres?.stop()]);
  scratch.remove();
});

const servers = () => ({ mariadb, postgres });

/** An instance, its backup, and the state it is in just before the restore (changed since). */
interface Prepared {
  instance: SampleInstance;
  backup: { dir: string; manifest: Manifest };
  before: InstanceState;
  fingerprint: unknown;
  maintenance: boolean;
  /** config.php's bytes before the restore. */
  configText: string;
}

async function prepared(
  engine: Engine,
  options: { parent?: string; maintenanceOff?: boolean } = {},
): Promise<Prepared> {
  const id = counter++;
  const instance = await sampleOn(engine, servers(), options.parent ?? scratch.path, id);
  const backupDir = join(scratch.path, `backups-${id}`);
  mkdirSync(backupDir);
  const run = await runBackupCli(
    ['--owncloud-dir', instance.installDir, '--backup-dir', backupDir],
    { secrets: [instance.dbPassword] },
  );
  expect(run.exitCode, explain(run)).toBe(0);
  const backup = finishedBackup(backupDir);
  await changeInstance(instance);
  if (options.maintenanceOff) occ(instance, ['maintenance:mode', '--off']);
  const config = instance.readConfig();
  const before = await instanceState(instance, backup.manifest);
  // The changed state really differs from the backup's: a restore that did nothing would not pass.
  expect(before.rows.get(`${String(config.dbtableprefix)}users`)!.join('\n')).toContain('mallory');
  return {
    instance,
    backup,
    before,
    fingerprint: config['data-fingerprint'],
    maintenance: config.maintenance === true,
    configText: readFileSync(instance.configPath, 'utf8'),
  };
}

function occ(instance: SampleInstance, args: string[]): void {
  execFileSync('runuser', [
    '-u',
    instance.owner.name,
    '--',
    'php',
    join(instance.installDir, 'occ'),
    ...args,
  ]);
}

/** Moved-aside containers anywhere under the instance (there must be none after a rollback). */
function containersUnder(dir: string): string[] {
  return execFileSync('find', [dir, '-name', '.owncloud-restore-previous-*'], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean);
}

/**
 * What the restore started that still runs: a tar or client it did not stop would go on
 * writing into the state just put back. (The gates' own shells are left out: the test ends them.)
 */
function stillRunning(p: Prepared): string[] {
  return ownProcesses
    .list()
    .filter((x) => x.argv[0] !== '/bin/sh' && x.argv[0] !== 'sleep')
    .map((x) => x.argv.join(' '))
    .filter(
      (line) =>
        line.includes(p.instance.root) || line.includes(' --file=-') || line.includes(p.backup.dir),
    );
}

/** The instance is as it was before the restore, in every part the restore touches. */
async function expectPreviousState(p: Prepared, run: CliRun): Promise<void> {
  expect(run.exitCode, explain(run)).not.toBe(0);
  expect(run.leaks).toEqual([]);
  expect(stillRunning(p)).toEqual([]);
  expect(containersUnder(p.instance.root)).toEqual([]);
  expectSameState(await instanceState(p.instance, p.backup.manifest), p.before);
  const config = p.instance.readConfig();
  expect(config.maintenance === true).toBe(p.maintenance);
  expect(config['data-fingerprint']).toEqual(p.fingerprint);
  expect(readFileSync(p.instance.configPath, 'utf8')).toBe(p.configText);
}

const ROLLED_BACK =
  'The previous state is back: files, database and maintenance mode as they were before the restore.';

function restoreArgs(p: Prepared): string[] {
  return [p.backup.dir, '--owncloud-dir', p.instance.installDir];
}

/** Starts the restore, waits for a hold to be reached (failing if the run ends first), acts. */
async function restoreHeldAt(
  p: Prepared,
  hold: { reached(isDone?: () => boolean): Promise<number>; release(): void },
  act: (cli: ChildProcess, heldPid: number) => Promise<void> | void,
  options: Partial<CliOptions> & { args?: string[] } = {},
): Promise<CliRun> {
  let cli: ChildProcess | undefined;
  let ended = false;
  const { args = [], ...cliOptions } = options;
  const running = runRestoreCli([...restoreArgs(p), ...args], {
    secrets: [p.instance.dbPassword],
    ...cliOptions,
    onSpawn: (child) => {
      cli = child;
      child.once('close', () => (ended = true));
    },
  });
  try {
    const pid = await hold.reached(() => ended);
    await act(cli!, pid);
  } catch (error) {
    hold.release();
    throw new Error(`${String(error)}\n${explain(await running)}`, { cause: error });
  } finally {
    hold.release();
  }
  return running;
}

interface Hold {
  reached(isDone?: () => boolean): Promise<number>;
  release(): void;
}

function occHold(instance: SampleInstance, args: string): Hold {
  const hold = holdOccAt(instance, args);
  return {
    release: () => hold.release(),
    async reached(isDone) {
      const pid = await Promise.race([
        hold.reached(),
        (async () => {
          while (!isDone?.()) await new Promise((r) => setTimeout(r, 20));
          return -2;
        })(),
      ]);
      if (pid === -2) throw new Error(`occ ${args} was never held: the run ended first`);
      return pid;
    },
  };
}

/** The gate for the engine's client while it loads the backup's dump (half of it passed). */
function loadGate(p: Prepared): ToolGate {
  const half = Math.floor(p.backup.manifest.database.dumpBytes / 2);
  const type = p.backup.manifest.database.type;
  if (type === 'pgsql') return gateTool(scratch.path, 'psql', ['--single-transaction'], half);
  if (type === 'mysql') return gateTool(scratch.path, 'mariadb', [], half);
  return gateTool(scratch.path, 'sqlite3', ['-bail'], half);
}

/** The gate for tar on the host while it extracts the files archive (half of it passed). */
function tarGate(p: Prepared): ToolGate {
  const archive = p.backup.manifest.archives.find((a) => a.role === 'files')!;
  return gateTool(scratch.path, 'tar', ['--extract', '--file=-'], Math.floor(archive.size / 2));
}

describe('the database session killed during the load', () => {
  it('pgsql: the loading backend terminated; the previous database is loaded back', async () => {
    const p = await prepared('pgsql');
    const gate = loadGate(p);
    const name = String(p.instance.config.dbname);
    const run = await restoreHeldAt(
      p,
      gate,
      async () => {
        // The client has sent the half it was given (inside its one transaction, often in a
        // COPY) and the server waits for more.
        const session = `FROM pg_stat_activity WHERE datname = '${name}' AND pid <> pg_backend_pid()`;
        await until(
          async () =>
            (
              await postgres.query(`SELECT count(*) ${session} AND wait_event = 'ClientRead';`)
            ).trim() === '1',
        );
        const killed = await postgres.query(`SELECT count(pg_terminate_backend(pid)) ${session};`);
        expect(killed.trim()).toBe('1');
      },
      { env: { PATH: gate.path } },
    );
    await expectPreviousState(p, run);
    expect(run.exitCode).toBe(1);
    expect(errorLine(run)).toMatch(
      new RegExp(
        `^owncloud-backup: error: Loading the database dump \\(psql\\) failed with exit code \\d+: Could not reach the PostgreSQL server \\S+ \\(is it running\\?\\), or it closed the connection\\. ${escape(ROLLED_BACK)}$`,
      ),
    );
    p.instance.remove();
  });

  it('mysql: the loading connection killed; the previous database is loaded back', async () => {
    const p = await prepared('mysql');
    const gate = loadGate(p);
    const user = String(p.instance.config.dbuser);
    const name = String(p.instance.config.dbname);
    const run = await restoreHeldAt(
      p,
      gate,
      async () => {
        // The client has loaded tables from the half it was given and waits for more.
        const session = `FROM information_schema.processlist WHERE user = '${user}'`;
        await until(async () => {
          const tables = await mariadb.query(
            `SELECT count(*) FROM information_schema.tables WHERE table_schema = '${name}';`,
          );
          const idle = await mariadb.query(`SELECT count(*) ${session} AND command = 'Sleep';`);
          return Number(tables.trim()) > 0 && idle.trim() === '1';
        });
        const ids = (await mariadb.query(`SELECT id ${session};`)).trim().split('\n');
        expect(ids).toHaveLength(1);
        await mariadb.query(`KILL CONNECTION ${ids[0]};`);
      },
      { env: { PATH: gate.path } },
    );
    await expectPreviousState(p, run);
    expect(run.exitCode).toBe(1);
    expect(errorLine(run)).toMatch(
      new RegExp(
        `^owncloud-backup: error: Loading the database dump \\(mariadb\\) failed with exit code \\d+: The MySQL server \\S+ closed the connection while it was in use \\(the session was killed, or the server stopped\\)\\. ${escape(ROLLED_BACK)}$`,
      ),
    );
    p.instance.remove();
  });
});

/** Polls a condition about a held moment (the hold keeps it; no time limit but the test's). */
async function until(condition: () => Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((r) => setTimeout(r, 20));
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

const INTERRUPTED = `^owncloud-backup: error: The restore was interrupted\\. ${escape(ROLLED_BACK)}$`;

function expectInterrupted(run: CliRun, signal: NodeJS.Signals = 'SIGINT'): void {
  expect(run.exitCode, explain(run)).toBe(130);
  expect(errorLine(run)).toMatch(new RegExp(INTERRUPTED));
  expect(run.stderr).toContain(
    `${signal}: stopping; the previous state is put back before exiting.`,
  );
}

describe('SIGINT (and SIGTERM) in each phase puts the previous state back and exits 130', () => {
  it('right after maintenance mode went on (it was off before the restore: off again)', async () => {
    const p = await prepared('sqlite', { maintenanceOff: true });
    expect(p.maintenance).toBe(false);
    const run = await restoreHeldAt(p, occHold(p.instance, 'maintenance:mode --on'), (cli) => {
      expect(p.instance.readConfig().maintenance).toBe(true);
      cli.kill('SIGINT');
    });
    expectInterrupted(run);
    await expectPreviousState(p, run);
    const switches = p.instance
      .occCalls()
      .map((c) => c.args.join(' '))
      .filter((a) => a.startsWith('maintenance:mode --'));
    expect(switches.slice(-2)).toEqual(['maintenance:mode --on', 'maintenance:mode --off']);
    p.instance.remove();
  });

  it('while the current database is saved aside (pgsql, the dump held by a lock)', async () => {
    const p = await prepared('pgsql');
    const lock = await holdDumpLock(p.instance, lockTargetOf('pgsql', servers()));
    let sawDump = false;
    let run: CliRun;
    try {
      run = await runRestoreCli(restoreArgs(p), {
        secrets: [p.instance.dbPassword],
        onDump: (cli) => {
          sawDump = true;
          cli.kill('SIGINT');
        },
      });
    } finally {
      await lock.release();
    }
    expect(sawDump).toBe(true);
    expectInterrupted(run);
    await expectPreviousState(p, run);
    p.instance.remove();
  });

  for (const [engine, signal] of [
    ['sqlite', 'SIGINT'],
    ['mysql', 'SIGINT'],
    ['sqlite', 'SIGTERM'],
  ] as [Engine, NodeJS.Signals][])
    it(`${engine}: ${signal} during the file extraction (tar held halfway through the archive)`, async () => {
      const p = await prepared(engine);
      const gate = tarGate(p);
      const run = await restoreHeldAt(p, gate, (cli) => void cli.kill(signal), {
        env: { PATH: gate.path },
      });
      expectInterrupted(run, signal);
      await expectPreviousState(p, run);
      p.instance.remove();
    });

  for (const engine of ['sqlite', 'mysql', 'pgsql'] as Engine[])
    it(`${engine}: during the database load (the client held halfway through the dump)`, async () => {
      const p = await prepared(engine);
      const gate = loadGate(p);
      const run = await restoreHeldAt(p, gate, (cli) => void cli.kill('SIGINT'), {
        env: { PATH: gate.path },
      });
      expectInterrupted(run);
      await expectPreviousState(p, run);
      p.instance.remove();
    });

  it('during the finish (occ maintenance:data-fingerprint held)', async () => {
    const p = await prepared('mysql');
    const run = await restoreHeldAt(
      p,
      occHold(p.instance, 'maintenance:data-fingerprint'),
      (cli) => {
        cli.kill('SIGINT');
      },
    );
    expectInterrupted(run);
    await expectPreviousState(p, run);
    p.instance.remove();
  });
});

describe('the disk full on the host', () => {
  /** A small file system holding the whole instance (installation and data directory). */
  function smallDisk(megabytes: number): { path: string; unmount: () => void } {
    const path = join(scratch.path, `disk-${counter++}`);
    mkdirSync(path);
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${megabytes}m`, 'tmpfs', path]);
    chmodSync(path, 0o755);
    return { path, unmount: () => execFileSync('umount', ['--lazy', path]) };
  }

  it('refused by the preflight when the restored copy clearly does not fit; nothing changed', async () => {
    const disk = smallDisk(32);
    try {
      const p = await prepared('sqlite', { parent: disk.path });
      // Something else took the disk: a quarter of what the restored files need is left.
      const stats = statfsSync(disk.path);
      const leave = Math.floor(p.backup.manifest.files.bytes / 4);
      execFileSync('fallocate', [
        '-l',
        String(stats.bavail * stats.bsize - leave),
        join(disk.path, 'filler'),
      ]);
      const callsBefore = p.instance.occCalls().length;
      const run = await runRestoreCli(restoreArgs(p), { secrets: [] });
      expect(run.exitCode, explain(run)).toBe(1);
      expect(errorLine(run)).toMatch(
        new RegExp(
          `^owncloud-backup: error: Not enough space on this machine \\(\\S+\\) for ${escape(p.instance.dataDir)}: the restore needs [\\d.]+ [KMG]?i?B \\(the previous state stays on disk beside it\\), [\\d.]+ [KMG]?i?B are free\\. Nothing was changed\\.$`,
        ),
      );
      expect(p.instance.occCalls().length).toBe(callsBefore);
      await expectPreviousState(p, run);
      p.instance.remove();
    } finally {
      disk.unmount();
    }
  });

  it('filling up during the extraction: tar fails, the previous state is back', async () => {
    const disk = smallDisk(24);
    try {
      const p = await prepared('sqlite', { parent: disk.path });
      const gate = tarGate(p);
      const filler = join(disk.path, 'filler');
      const run = await restoreHeldAt(
        p,
        gate,
        () => {
          // Another job eats the space the preflight saw free.
          const stats = statfsSync(disk.path);
          execFileSync('fallocate', ['-l', String(stats.bavail * stats.bsize), filler]);
        },
        { env: { PATH: gate.path } },
      );
      execFileSync('rm', ['-f', filler]);
      expect(run.exitCode, explain(run)).toBe(1);
      expect(errorLine(run)).toMatch(
        new RegExp(
          `^owncloud-backup: error: No space left on device on this machine \\(\\S+\\) while restoring the files: .*No space left on device.*\\. ${escape(ROLLED_BACK)}$`,
        ),
      );
      await expectPreviousState(p, run);
      p.instance.remove();
    } finally {
      disk.unmount();
    }
  });
});

describe('the SSH link cut during the file extraction', () => {
  it('reconnects once the link is back, stops the tar left on the host, and puts the previous state back', async () => {
    const p = await prepared('sqlite');
    const gate = tarGate(p);
    const network = createNetworkHost();
    const remote = await startSshd({ network, sessionPath: gate.path });
    try {
      const run = await restoreHeldAt(
        p,
        gate,
        async (cli) => {
          // The link dies while tar on the host is halfway through the archive, and comes
          // back once the restore has noticed and is trying to reconnect.
          let said = '';
          const reconnecting = new Promise<void>((resolve) =>
            cli.stderr!.on('data', (chunk: Buffer) => {
              said += chunk.toString();
              if (said.includes('reconnecting (attempt')) resolve();
            }),
          );
          network.cut();
          await reconnecting;
          network.restore();
        },
        { args: [...sshArgs(remote), '--ssh-keepalive', '1'] },
      );
      expect(run.exitCode, explain(run)).toBe(1);
      expect(errorLine(run)).toMatch(
        new RegExp(
          `^owncloud-backup: error: Restoring the files failed: The SSH connection to root@10\\.231\\.\\d+\\.2:\\d+ (was lost|timed out).*\\. ${escape(ROLLED_BACK)}$`,
        ),
      );
      expect(run.stderr).toContain(
        'The link to the host failed while putting the previous state back',
      );
      // The tar the dead link left on the host was stopped before anything was put back.
      await expectPreviousState(p, run);
    } finally {
      gate.release();
      await remote.stop();
      network.stop();
    }
    p.instance.remove();
  });
});
