// Running the real `owncloud-backup` command (the committed bundle, as users run it) while
// watching the test's own processes (the command, the servers the test started, and what
// they run): no command line may hold a secret, and at the moment the dump program runs,
// the test can look at the instance (maintenance mode ON?). Programs elsewhere on the
// machine are never looked at.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { makeScratchDir } from '../harness/scratch.ts';
import { requireTool } from '../harness/tools.ts';
import type { SampleInstance } from '../sample/instance.ts';
import { ownProcesses, type OwnProcess } from './processes.ts';

export const CLI = resolve(import.meta.dirname, '..', '..', 'dist', 'cli', 'index.js');

/** argv[0] names of the dump programs, per engine. */
export const DUMP_PROGRAMS = ['mysqldump', 'mariadb-dump', 'pg_dump', 'sqlite3'];

export type ProcessSighting = OwnProcess;

/** The test's own processes now (and orphans of earlier runs that still run). */
function commandLines(): ProcessSighting[] {
  return ownProcesses.list();
}

export interface WatchOptions {
  /** Strings no process's command line may contain while the run goes on. */
  secrets: string[];
  /** Called once the run's process is started (to interrupt or kill it at a moment of the test's choosing). */
  onSpawn?: (run: ChildProcess) => void;
  /** Called once, when a dump program's process first appears (to look, interrupt or kill). */
  onDump?: (run: ChildProcess, dump: ProcessSighting) => Promise<void> | void;
}

export interface WatchedRun {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Command lines (of the test's processes) seen holding one of the secrets: must stay empty. */
  leaks: string[];
  /** How many processes the watcher looked at: proves it was watching. */
  processesSeen: number;
  dumpSeen: boolean;
}

/** Waits for a started process to end, checking every process's command line meanwhile. */
export async function watchRun(child: ChildProcess, options: WatchOptions): Promise<WatchedRun> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const leaks = new Set<string>();
  let processesSeen = 0;
  let dumpSeen = false;
  let dumpHandled: Promise<void> | undefined;
  let done = false;

  const scan = () => {
    for (const sighting of commandLines()) {
      processesSeen++;
      const line = sighting.argv.join(' ');
      for (const secret of options.secrets) if (secret && line.includes(secret)) leaks.add(line);
      const program = sighting.argv[0]?.split('/').pop() ?? '';
      if (!dumpSeen && DUMP_PROGRAMS.includes(program) && sighting.argv.length > 2) {
        dumpSeen = true;
        dumpHandled = Promise.resolve(options.onDump?.(child, sighting));
      }
    }
  };
  const watcher = (async () => {
    while (!done) {
      scan();
      await new Promise((r) => setTimeout(r, 3));
    }
  })();

  const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>(
    (resolveExit) => child.once('close', (code, sig) => resolveExit([code, sig])),
  );
  done = true;
  await watcher;
  await dumpHandled;
  return { exitCode, signal, stdout, stderr, leaks: [...leaks], processesSeen, dumpSeen };
}

export type CliRun = WatchedRun;

let tempDir: string | undefined;

/** A TMPDIR for the command under test that any user can write (sticky, as /tmp). */
function cliTempDir(): string {
  if (tempDir) return tempDir;
  tempDir = makeScratchDir('cli-tmp').path;
  chmodSync(tempDir, 0o1777);
  return tempDir;
}

let publicCopy: { node: string; cli: string } | undefined;

/**
 * Node and the CLI bundle where any user can run them: the checkout may sit in a directory
 * only root can enter, and the bundle needs nothing beside it but dist/package.json.
 */
export function cliForAnyUser(): { node: string; cli: string } {
  if (publicCopy) return publicCopy;
  const dir = makeScratchDir('cli-copy').path;
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'cli'), { mode: 0o755 });
  copyFileSync(process.execPath, join(dir, 'node'));
  chmodSync(join(dir, 'node'), 0o755);
  copyFileSync(CLI, join(dir, 'cli', 'index.js'));
  copyFileSync(join(dirname(CLI), '..', 'package.json'), join(dir, 'package.json'));
  for (const file of ['cli/index.js', 'package.json']) chmodSync(join(dir, file), 0o644);
  publicCopy = { node: join(dir, 'node'), cli: join(dir, 'cli', 'index.js') };
  return publicCopy;
}

export type CliOptions = WatchOptions & {
  env?: Record<string, string>;
  cwd?: string;
  user?: string;
};

/** Runs `owncloud-backup backup ARGS` (the bundle) while watching every process. */
export async function runBackupCli(args: string[], options: CliOptions): Promise<CliRun> {
  return runToolCli('backup', args, options);
}

/** Runs `owncloud-backup restore ARGS` (the bundle) while watching every process. */
export async function runRestoreCli(args: string[], options: CliOptions): Promise<CliRun> {
  return runToolCli('restore', args, options);
}

/** Runs `owncloud-backup COMMAND ARGS` (the bundle) while watching every process. */
export async function runToolCli(
  command: string,
  args: string[],
  options: CliOptions,
): Promise<CliRun> {
  // As another system user when asked (a runner that is not root), through setpriv.
  const argv = [
    ...(options.user
      ? [
          requireTool('setpriv'),
          `--reuid=${options.user}`,
          `--regid=${options.user}`,
          '--init-groups',
        ]
      : []),
    ...(options.user ? [cliForAnyUser().node, cliForAnyUser().cli] : [process.execPath, CLI]),
    command,
    ...args,
  ];
  const cli = spawn(argv[0]!, argv.slice(1), {
    cwd: options.cwd ?? '/',
    // The command's temporary files (its SSH control socket among them) live in this test
    // process's scratch space, so whatever a failed test leaves there dies with it.
    env: { ...process.env, TMPDIR: cliTempDir(), ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  options.onSpawn?.(cli);
  return watchRun(cli, options);
}

/**
 * Holds a lock that makes the dump wait (a write lock on oc_filecache, or an exclusive
 * SQLite transaction) until released: deterministic "while the dump runs" moments.
 */
export async function holdDumpLock(
  sample: SampleInstance,
  server?: { socket?: string; socketDir?: string; port?: number },
): Promise<{ release: () => Promise<void> }> {
  const config = sample.readConfig();
  const table = `${String(config.dbtableprefix)}filecache`;
  let argv: string[];
  let lock: string;
  let unlock: string;
  if (config.dbtype === 'sqlite3') {
    argv = [requireTool('sqlite3'), join(sample.dataDir, `${String(config.dbname)}.db`)];
    lock = "BEGIN EXCLUSIVE;\nSELECT 'locked';\n";
    unlock = 'COMMIT;\n.quit\n';
  } else if (config.dbtype === 'mysql') {
    argv = [
      requireTool('mariadb'),
      '--no-defaults',
      `--socket=${server!.socket}`,
      '-uroot',
      '-N',
      '-n',
      String(config.dbname),
    ];
    lock = `LOCK TABLES ${table} WRITE;\nSELECT 'locked';\n`;
    unlock = 'UNLOCK TABLES;\n';
  } else {
    argv = [
      requireTool('psql'),
      '-X',
      '-q',
      '-A',
      '-t',
      '-h',
      server!.socketDir!,
      '-p',
      String(server!.port),
      '-U',
      'postgres',
      '-d',
      String(config.dbname),
    ];
    lock = `BEGIN;\nLOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE;\nSELECT 'locked';\n`;
    unlock = 'COMMIT;\n';
  }
  const holder = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise((r) => holder.once('close', r));
  await new Promise<void>((resolveLocked, reject) => {
    let out = '';
    holder.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('locked')) resolveLocked();
    });
    holder.once('close', () => reject(new Error('the lock holder exited before it held the lock')));
    holder.stdin.write(lock);
  });
  return {
    release: async () => {
      holder.stdin.end(unlock);
      await exited;
    },
  };
}

/** Waits (up to timeoutMs) until no dump program runs; returns the command lines still running. */
export async function waitUntilNoDumpRuns(timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const running = commandLines()
      .filter((p) => DUMP_PROGRAMS.includes(p.argv[0]?.split('/').pop() ?? '') && p.argv.length > 2)
      .map((p) => p.argv.join(' '));
    if (running.length === 0 || Date.now() > deadline) return running;
    await new Promise((r) => setTimeout(r, 50));
  }
}
