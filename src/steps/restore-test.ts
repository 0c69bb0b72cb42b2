// Proof that a backup restores: on the runner (never on the ownCloud host), the dump is
// loaded into a throwaway database server this tool starts itself on a private socket in a
// private 0700 directory, every prefixed table's rows are counted and compared with the
// counts recorded inside the maintenance window, and the files archive is listed for
// config.php, the data directory's marker and every user's files/. The engine module says
// how its server is started (throwawaySetup); this step runs it and always stops it.
import { accessSync, chownSync, constants, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DatabaseEngine } from '../database/index.ts';
import {
  homeStorageUsers,
  parseHexLines,
  type ThrowawayRole,
  type ThrowawaySetup,
} from '../database/engine.ts';
import { describeError, InterruptedError } from '../errors.ts';
import { guardedCommand, secretLine } from '../host/guarded.ts';
import type { Host } from '../host/host.ts';
import { LocalHost } from '../host/local.ts';
import { runProcess, stderrTail, streamProcess } from '../host/process.ts';
import type { DatabaseType } from '../settings.ts';
import { tarOnArchive, type ArchiveFile } from './compress.ts';
import { StepProgress } from '../progress.ts';
import { LAYOUT } from './files.ts';
import { loadDump, rowCountDifferences } from './restore-database.ts';
import { countRows } from './row-counts.ts';

/**
 * Directories searched for the server programs after PATH, instead of the engine's usual
 * ones (e.g. /usr/lib/postgresql/VERSION/bin), separated by ':'; empty: PATH only.
 */
export const SERVER_DIRS_ENV = 'OWNCLOUD_BACKUP_SERVER_DIRS';

/** What the manifest records of the restore test. */
export interface RestoreTestRecord {
  result: 'passed' | 'failed' | 'skipped';
  /** In words: what was proven, what differed, or why it did not run. */
  reason: string;
  /** Tables whose rows were counted and compared. */
  tables: number;
  rows: number;
  /** Users whose files/ directory the archive was checked for. */
  users: number;
  seconds: number;
  /** The server program and its version the dump was loaded into, e.g. `mariadbd 10.11.6`. */
  server?: string;
}

/** What the test needs of a backup: its dump, its files archive, what the manifest recorded. */
export interface RestoreTestSubject {
  dump: ArchiveFile;
  filesArchive: ArchiveFile;
  database: {
    type: DatabaseType;
    user: string;
    tablePrefix: string;
    utf8mb4: boolean;
    rowCounts: Record<string, number>;
    /** The dump tool's version line, as the manifest records it. */
    dumpToolVersion?: string;
  };
}

/** What a listing of the files archive showed, for the restore test. */
export interface ArchiveFacts {
  configPhp: boolean;
  marker: boolean;
  /** Users with a `data/USER/files/` directory. */
  userFiles: Set<string>;
}

const CONFIG_MEMBER = `${LAYOUT.install}/config/config.php`;

/** Collects ArchiveFacts from archive member names as tar lists them, one at a time. */
export class ListingFacts implements ArchiveFacts {
  configPhp = false;
  marker = false;
  userFiles = new Set<string>();

  add(name: string): void {
    if (name === CONFIG_MEMBER) this.configPhp = true;
    else if (name === `${LAYOUT.data}/.ocdata` || name === `${LAYOUT.data}/.ncdata`)
      this.marker = true;
    else {
      const user = new RegExp(`^${LAYOUT.data}/([^/]+)/files/?$`).exec(name);
      if (user) this.userFiles.add(user[1]!);
    }
  }
}

/** What the archive lacks, in words (pure). */
export function archiveProblems(facts: ArchiveFacts, users: string[]): string[] {
  const problems: string[] = [];
  if (!facts.configPhp) problems.push(`the files archive has no ${CONFIG_MEMBER}`);
  if (!facts.marker)
    problems.push(`the files archive has no ${LAYOUT.data}/.ocdata (or .ncdata) marker`);
  const missing = users.filter((user) => !facts.userFiles.has(user));
  if (missing.length > 0)
    problems.push(
      `the files archive has no files/ directory for ${missing.length === 1 ? 'user' : 'users'} ${missing.join(', ')} (a home storage in the database)`,
    );
  return problems;
}

/**
 * The directories searched after PATH: the engine's usual ones, or those the environment
 * names; a `*` in one is a version, newest first (pure, given the directory listings).
 */
export function searchDirs(
  engine: Pick<DatabaseEngine, 'throwawayDirs'>,
  env: NodeJS.ProcessEnv,
  list: (dir: string) => string[],
): string[] {
  const path = (env.PATH ?? '').split(delimiter).filter(Boolean);
  const extra =
    env[SERVER_DIRS_ENV] !== undefined
      ? env[SERVER_DIRS_ENV].split(delimiter).filter(Boolean)
      : engine.throwawayDirs.flatMap((pattern) => expandVersionDir(pattern, list));
  return [...new Set([...path, ...extra])];
}

/** A directory pattern with one `*` (a version), matches newest first (pure, given `list`). */
export function expandVersionDir(pattern: string, list: (dir: string) => string[]): string[] {
  const star = pattern.indexOf('*');
  if (star < 0) return [pattern];
  const parent = pattern.slice(0, pattern.lastIndexOf('/', star));
  const head = pattern.slice(parent.length + 1, star);
  const rest = pattern.slice(star + 1);
  const tail = rest.split('/')[0]!;
  const versions = list(parent)
    .filter((name) => name.startsWith(head) && name.endsWith(tail))
    .map((name) => name.slice(head.length, name.length - tail.length))
    .filter((version) => /^\d+(?:\.\d+)*$/.test(version));
  versions.sort((a, b) => compareVersions(b, a));
  return versions.map((version) => `${parent}/${head}${version}${rest}`);
}

function compareVersions(a: string, b: string): number {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * Finds each role's program: the first name found, looked for in the server's directory
 * first (initdb beside its postgres), then in `dirs` in order. Pure, given `exists`.
 */
export function findPrograms(
  roles: readonly ThrowawayRole[],
  dirs: string[],
  exists: (path: string) => boolean,
): { programs: Record<string, string> } | { missing: string } {
  const programs: Record<string, string> = {};
  for (const { role, names, optional } of roles) {
    const order = programs.server ? [dirname(programs.server), ...dirs] : dirs;
    const found = names
      .map((name) => order.map((dir) => join(dir, name)).find(exists))
      .find((path) => path !== undefined);
    if (found) programs[role] = found;
    else if (!optional) return { missing: names.join('/') };
  }
  return { programs };
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** This machine, with the throwaway server's directories first on PATH (the clients' names). */
function runnerWithPath(dirs: string[]): Host {
  const local = new LocalHost();
  const env = { PATH: [...dirs, process.env.PATH ?? ''].join(delimiter) };
  return {
    label: local.label,
    account: local.account,
    run: (argv, options) => local.run(argv, { ...options, env: { ...options?.env, ...env } }),
    stream: (argv, options) => local.stream(argv, { ...options, env: { ...options?.env, ...env } }),
    transportFailure: () => undefined,
    close: () => local.close(),
  };
}

/** The longest unix socket path (sun_path holds 108 bytes with its NUL), less the socket's name. */
const SOCKET_DIR_LIMIT = 107 - '/.s.PGSQL.5432'.length;

/**
 * A new private (0700) directory for the throwaway server: under TMPDIR, or under /tmp when
 * TMPDIR is too deep for a unix socket path.
 */
function privateDir(): string {
  const name = 'owncloud-backup-restore-test-XXXXXX';
  const base = join(tmpdir(), name).length <= SOCKET_DIR_LIMIT ? tmpdir() : '/tmp';
  return mkdtempSync(join(base, name.slice(0, -6)));
}

/** A start-up problem: the test cannot run here (skipped), it says nothing about the backup. */
class CannotStart extends Error {}

/** An unprivileged account to run a server that refuses root: postgres, else nobody. */
async function serviceAccount(): Promise<{ uid: number; gid: number }> {
  for (const name of ['postgres', 'nobody']) {
    const uid = await runProcess(['id', '-u', name]);
    const gid = await runProcess(['id', '-g', name]);
    if (uid.exitCode === 0 && gid.exitCode === 0)
      return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  }
  throw new CannotStart('the runner is root and has no postgres or nobody account to run it as');
}

interface RunningServer {
  stop(): Promise<void>;
}

/** Runs the init commands and starts the server, waiting until it accepts clients. */
async function startServer(
  setup: ThrowawaySetup,
  dir: string,
  prefix: string[],
  signal: AbortSignal,
): Promise<RunningServer | undefined> {
  for (const argv of setup.init) {
    const result = await runProcess([...prefix, ...argv], { signal, cwd: dir });
    if (signal.aborted) throw new InterruptedError();
    if (result.exitCode !== 0)
      throw new CannotStart(
        `${argv[0]!.split('/').pop()} failed (exit ${result.exitCode}): ${stderrTail(result.stderr, 3) || stderrTail(result.stdout, 3) || 'no message'}`,
      );
  }
  if (!setup.serverArgv) return undefined;
  const stopping = new AbortController();
  const stop = () => stopping.abort();
  signal.addEventListener('abort', stop, { once: true });
  let log = '';
  const server = streamProcess([...prefix, ...setup.serverArgv], {
    signal: stopping.signal,
    cwd: dir,
    onStderr: (text) => (log = (log + text).slice(-8192)),
  });
  server.stdout.resume();
  let exited: number | undefined;
  const done = server.done.then((result) => {
    exited = result.exitCode;
  });
  const running: RunningServer = {
    async stop() {
      stopping.abort();
      await done;
      signal.removeEventListener('abort', stop);
    },
  };
  const deadline = performance.now() + 120_000;
  for (;;) {
    if (signal.aborted) {
      await running.stop();
      throw new InterruptedError();
    }
    if (exited !== undefined) {
      // Its last words may still be on their way.
      await sleep(100);
      throw new CannotStart(
        `${setup.server} exited while starting (exit ${exited}): ${stderrTail(log, 3) || 'no message'}`,
      );
    }
    const ready = await runProcess(setup.ready!, { timeoutMs: 10_000 });
    if (ready.exitCode === 0) break;
    if (performance.now() > deadline) {
      await running.stop();
      throw new CannotStart(`${setup.server} did not accept clients within 120 s`);
    }
    await sleep(50);
  }
  if (setup.prepare) {
    const prepared = await runProcess(setup.prepare.argv, { input: setup.prepare.sql });
    if (prepared.exitCode !== 0) {
      await running.stop();
      throw new CannotStart(
        `preparing the throwaway database failed: ${stderrTail(prepared.stderr, 3) || 'no message'}`,
      );
    }
  }
  return running;
}

/** Lists the files archive, collecting what the test checks. */
async function listArchive(file: ArchiveFile, signal: AbortSignal) {
  const facts = new ListingFacts();
  const tar = tarOnArchive(file, ['--list', '--file=-'], { signal });
  let partial = '';
  for await (const chunk of tar.stdout) {
    const lines = (partial + (chunk as Buffer).toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    lines.forEach((line) => facts.add(line));
  }
  if (partial !== '') facts.add(partial);
  const listed = await tar.done;
  if (signal.aborted) throw new InterruptedError();
  if (!listed.ok) throw new Error(`listing the files archive failed: ${listed.problem}`);
  return facts;
}

/** The line a skipped test prints and records. */
export function skippedLine(reason: string): string {
  return `restore test skipped: ${reason}`;
}

/**
 * Runs the restore test. Never throws for what it finds (a failed check is a 'failed'
 * record; a runner without the server programs, or one that cannot start them, 'skipped');
 * throws InterruptedError when the signal fires. The server is stopped and its directory
 * removed in every case.
 */
export async function runRestoreTest(
  engine: DatabaseEngine,
  subject: RestoreTestSubject,
  options: {
    signal: AbortSignal;
    /** What an earlier pass over the files archive (verify's) collected: no second read. */
    facts?: ArchiveFacts;
    env?: NodeJS.ProcessEnv;
    log?: (line: string) => void;
  },
): Promise<RestoreTestRecord> {
  const started = performance.now();
  const { signal } = options;
  const env = options.env ?? process.env;
  const elapsed = () => Math.round(performance.now() - started) / 1000;
  const empty = { tables: 0, rows: 0, users: 0 };
  if (typeof subject.database.rowCounts !== 'object' || subject.database.rowCounts === null)
    return {
      result: 'skipped',
      reason: 'the manifest records no row counts to compare with (a backup from an older version)',
      ...empty,
      seconds: elapsed(),
    };
  const dirs = searchDirs(engine, env, listDir);
  const found = findPrograms(engine.throwawayPrograms, dirs, executable);
  if ('missing' in found)
    return {
      result: 'skipped',
      reason: `no ${found.missing} on the runner`,
      ...empty,
      seconds: elapsed(),
    };
  const { programs } = found;
  const root = process.getuid?.() === 0;
  const versionOut = await runProcess([programs.server!, '--version'], { signal });
  const serverVersion = stderrTail(versionOut.stdout, 1) || stderrTail(versionOut.stderr, 1);
  const tooOld =
    subject.database.dumpToolVersion !== undefined
      ? engine.throwawayVersionProblem?.(serverVersion, subject.database.dumpToolVersion)
      : undefined;
  if (tooOld) return { result: 'skipped', reason: tooOld, ...empty, seconds: elapsed() };
  const dir = privateDir();
  const setup = engine.throwawaySetup({
    programs,
    serverVersion,
    dir,
    database: subject.database,
    root,
  });
  const record = (
    result: RestoreTestRecord['result'],
    reason: string,
    counts = empty,
  ): RestoreTestRecord => ({
    result,
    reason,
    ...counts,
    seconds: elapsed(),
    server: setup.server,
  });
  if (setup.missing) {
    rmSync(dir, { recursive: true, force: true });
    return { ...record('skipped', `no ${setup.missing} on the runner`), server: setup.server };
  }
  let server: RunningServer | undefined;
  try {
    let prefix: string[] = [];
    if (root && engine.type === 'pgsql') {
      // initdb and postgres refuse root: the private directory is the service account's.
      const account = await serviceAccount();
      chownSync(dir, account.uid, account.gid);
      prefix = [
        'setpriv',
        `--reuid=${account.uid}`,
        `--regid=${account.gid}`,
        '--clear-groups',
        '--',
      ];
    }
    try {
      server = await startServer(setup, dir, prefix, signal);
    } catch (error) {
      // A server stopped by the interruption fails its start-up: that is the interruption.
      if (signal.aborted) throw new InterruptedError();
      if (error instanceof CannotStart)
        return record('skipped', `could not start ${setup.server}: ${error.message}`);
      throw error;
    }
    options.log?.(`Throwaway ${setup.server} started; loading the dump.`);
    const host = runnerWithPath([...new Set(Object.values(programs).map((p) => dirname(p)))]);
    const me = userInfo().username;
    const context = { connection: setup.connection, tool: setup.tool, account: me, owner: me };
    const problems: string[] = [];
    let counts = empty;
    try {
      await loadDump({
        host,
        engine,
        context: { ...context, client: setup.client },
        dump: subject.dump,
        ...(setup.dropLines ? { dropLines: setup.dropLines } : {}),
        signal,
        progress: new StepProgress('Restore test load', {
          intervalSeconds: 3600,
          now: () => performance.now(),
          emit: () => {},
        }),
        root: [],
      });
      const counted = await countRows(host, engine, context, signal);
      const differences = rowCountDifferences(subject.database.rowCounts, counted);
      if (differences.length > 0)
        problems.push(`the restored database differs: ${differences.join('; ')}`);
      const users = homeStorageUsers(parseHexLines(await homeStorages(host, engine, context)));
      counts = {
        tables: Object.keys(counted).length,
        rows: Object.values(counted).reduce((sum, n) => sum + n, 0),
        users: users.length,
      };
      const facts = options.facts ?? (await listArchive(subject.filesArchive, signal));
      problems.push(...archiveProblems(facts, users));
    } catch (error) {
      if (signal.aborted || error instanceof InterruptedError) throw new InterruptedError();
      problems.push(describeError(error));
    }
    // A verdict reached while being stopped says nothing about the backup.
    if (signal.aborted) throw new InterruptedError();
    if (problems.length > 0) return record('failed', problems.join('; '), counts);
    return record(
      'passed',
      `the dump loads into ${setup.server} with the ${counts.tables} tables and ${counts.rows} rows recorded; the files archive holds config.php, the data directory marker and the files/ of ${counts.users} ${counts.users === 1 ? 'user' : 'users'} with a home storage`,
      counts,
    );
  } finally {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The home storage query's output (hex ids), run on the throwaway database. */
async function homeStorages(
  host: Host,
  engine: DatabaseEngine,
  context: Parameters<DatabaseEngine['homeStoragesCommand']>[0],
): Promise<string> {
  const command = engine.homeStoragesCommand(context);
  const result = await host.run(guardedCommand(command.argv, command.delivery), {
    input: secretLine(command.secret),
    keepStdinOpen: true,
  });
  if (result.exitCode !== 0)
    throw new Error(
      `reading the home storages from the restored database failed: ${stderrTail(result.stderr, 2) || `exit ${result.exitCode}`}`,
    );
  return result.stdout;
}

/** One line for the log and the summaries. */
export function restoreTestLine(record: RestoreTestRecord): string {
  if (record.result === 'skipped') return skippedLine(record.reason);
  return `restore test ${record.result} (${record.seconds.toFixed(1)} s${record.server ? `, ${record.server}` : ''}): ${record.reason}`;
}
