// The database side of a restore, for any engine: the client found on the host, SQL run
// with the secret on stdin, the backup's dump streamed from here into the client, the current
// database saved aside on the host, and how restored row counts are judged.
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { DatabaseEngine } from '../database/index.ts';
import type { LoadContext } from '../database/engine.ts';
import { BackupError, InterruptedError, LinkError } from '../errors.ts';
import { guardedCommand, guardedInputCommand, secretLine, writingTo } from '../host/guarded.ts';
import { mustRun, reached, type Host } from '../host/host.ts';
import { stderrTail, type ProcessResult } from '../host/process.ts';
import type { DatabaseConnection } from '../instance.ts';
import type { StepProgress } from '../progress.ts';
import type { Instance } from './discover.ts';
import { openArchive, type ArchiveFile, type OpenedArchive } from './compress.ts';
import { missingOnHost } from './preflight.ts';
import { recordingPid } from './previous-state.ts';

/** Drops whole lines matching a pattern from a text stream (line by line, memory flat). */
class LineFilter extends Transform {
  private partial = '';
  dropped = 0;
  private readonly pattern: RegExp;
  constructor(pattern: RegExp) {
    super();
    this.pattern = pattern;
  }
  override _transform(chunk: Buffer, _encoding: string, callback: () => void) {
    const lines = (this.partial + chunk.toString('latin1')).split('\n');
    this.partial = lines.pop()!;
    const kept = lines.filter((line) => {
      if (!this.pattern.test(line)) return true;
      this.dropped++;
      return false;
    });
    if (kept.length > 0) this.push(Buffer.from(`${kept.join('\n')}\n`, 'latin1'));
    callback();
  }
  override _flush(callback: () => void) {
    if (this.partial !== '' && !this.pattern.test(this.partial))
      this.push(Buffer.from(this.partial, 'latin1'));
    callback();
  }
}

/** The engine's client on the host: the first of its programs found. */
export async function findClient(host: Host, engine: DatabaseEngine): Promise<string | undefined> {
  const missing = await missingOnHost(host, [...engine.clients]);
  return engine.clients.find((c) => !missing.includes(c));
}

/** Runs SQL through a client with its secret on stdin (first line), never in argv. */
export async function runSql(
  host: Host,
  command: { argv: string[]; delivery: Parameters<typeof guardedInputCommand>[1]; secret: string },
  sql: string,
  doing: string,
  engine: DatabaseEngine,
  connection: DatabaseConnection,
  /** Interrupts it (the restore's own reset); a rollback's reset is shielded instead. */
  signal?: AbortSignal,
): Promise<void> {
  const result = reached(
    host,
    await host.run(guardedInputCommand(command.argv, command.delivery), {
      input: secretLine(command.secret) + sql,
      ...(signal ? { signal } : { shielded: true }),
    }),
  );
  if (signal?.aborted) throw new InterruptedError('The restore was interrupted.');
  if (result.exitCode !== 0)
    throw new BackupError(
      `${doing} failed (exit ${result.exitCode}): ${engine.explainFailure(result.stderr, connection) ?? (stderrTail(withoutStatements(result.stderr)) || 'no message')}`,
    );
}

/**
 * A client's complaint without the statement it quotes: the SQL sent on stdin may hold a
 * password as a quoted literal (escaped, so the secrets registry would not recognise it).
 * psql quotes it on `LINE n:` lines (with a caret line below), MySQL after `near '`. Pure.
 */
export function withoutStatements(stderr: string): string {
  return stderr
    .split('\n')
    .filter((line) => !/^LINE \d+:/.test(line) && !/^\s*\^\s*$/.test(line))
    .map((line) =>
      line.replace(/near '.*' at line (\d+)/, 'near (the statement is not shown) at line $1'),
    )
    .join('\n');
}

/** A quick query with the given command (preflight), in the engine's own words when it fails. */
export async function checkLogin(
  host: Host,
  command: ReturnType<DatabaseEngine['adminCheckCommand']>,
): Promise<ProcessResult> {
  return reached(
    host,
    await host.run(guardedCommand(command.argv, command.delivery), {
      input: secretLine(command.secret),
      keepStdinOpen: true,
      timeoutMs: 60_000,
    }),
  );
}

/** A dump that is not an archive file here: named for messages, opened as a plaintext stream. */
export interface DumpStream {
  label: string;
  open(signal: AbortSignal): OpenedArchive;
}

/** Streams the backup's dump from here into the engine's client on the host. */
export async function loadDump(options: {
  host: Host;
  engine: DatabaseEngine;
  context: LoadContext;
  dump: ArchiveFile | DumpStream;
  dropLines?: RegExp;
  signal: AbortSignal;
  progress: StepProgress;
  root: string[];
  /** Where the client on the host records its pid (see stepPidFile). */
  pidFile?: string;
}): Promise<{ bytes: number; dropped: number }> {
  const { host, engine, context } = options;
  const command = engine.loadCommand(context);
  const client = options.pidFile ? recordingPid(options.pidFile, command.argv) : command.argv;
  const loader = host.stream([...options.root, ...guardedInputCommand(client, command.delivery)], {
    feedStdin: true,
    signal: options.signal,
  });
  loader.stdout.resume();
  const dump = options.dump;
  const decompress = 'open' in dump ? dump.open(options.signal) : openArchive(dump, options.signal);
  let bytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      options.progress.update({ bytes });
      callback(null, chunk);
    },
  });
  const filter = options.dropLines ? new LineFilter(options.dropLines) : undefined;
  loader.stdin.write(secretLine(command.secret));
  const feeding = pipeline(
    filter
      ? [decompress.stdout, counter, filter, loader.stdin]
      : [decompress.stdout, counter, loader.stdin],
  ).catch((error: unknown) => error);
  const [result, unpacked] = await Promise.all([loader.done, decompress.done]);
  await feeding;
  if (options.signal.aborted) throw new InterruptedError('The restore was interrupted.');
  const transport = host.transportFailure(result);
  if (transport) throw new LinkError(`Loading the database dump failed: ${transport}`);
  if (!unpacked.ok)
    throw new BackupError(
      `Reading ${'open' in dump ? dump.label : dump.path}: ${unpacked.problem}`,
    );
  if (result.exitCode !== 0)
    throw new BackupError(
      `Loading the database dump (${context.client}) failed with exit code ${result.exitCode}: ${engine.explainFailure(result.stderr, context.connection) ?? (stderrTail(result.stderr) || 'no message')}`,
    );
  return { bytes, dropped: filter?.dropped ?? 0 };
}

/**
 * The engine's commands name their client by the dump tool it comes with (mariadb beside
 * mariadb-dump, mysql beside mysqldump): the dump tool that goes with a client found.
 */
export function toolOf(
  engine: DatabaseEngine,
  client: string,
): { program: string; version: string } {
  if (engine.type !== 'mysql') return { program: client, version: '' };
  return { program: client === 'mariadb' ? 'mariadb-dump' : 'mysqldump', version: '' };
}

/** Where two table → rows maps differ, in words (pure). */
export function rowCountDifferences(
  recorded: Record<string, number>,
  counted: Record<string, number>,
): string[] {
  const differences: string[] = [];
  for (const [table, rows] of Object.entries(recorded)) {
    if (!(table in counted)) differences.push(`${table} is missing (${rows} rows at backup time)`);
    else if (counted[table] !== rows)
      differences.push(`${table} has ${counted[table]} rows, the backup counted ${rows}`);
  }
  for (const table of Object.keys(counted))
    if (!(table in recorded)) differences.push(`${table} was not in the backup`);
  return differences;
}

/** The current database, dumped into a file on the host, and checked complete. */
export async function dumpAside(
  host: Host,
  root: string[],
  engine: DatabaseEngine,
  current: Instance,
  path: string,
  signal: AbortSignal,
): Promise<void> {
  const missing = await missingOnHost(host, [...engine.programs]);
  const program = engine.programs.find((p) => !missing.includes(p));
  if (!program)
    throw new BackupError(
      `${host.label} has no ${engine.programs.join(' or ')} to save the current database first.`,
    );
  const command = engine.dumpCommand({
    connection: current.database,
    tool: { program, version: '' },
    account: host.account,
    owner: current.owner,
  });
  const result = reached(
    host,
    await host.run([...root, ...guardedCommand(writingTo(path, command.argv), command.delivery)], {
      input: secretLine(command.secret),
      keepStdinOpen: true,
      signal,
    }),
  );
  if (result.exitCode !== 0)
    throw new BackupError(
      `Saving the current database before the restore failed (exit ${result.exitCode}): ${engine.explainFailure(result.stderr, current.database) ?? (stderrTail(result.stderr) || 'no message')}`,
    );
  const tail = await mustRun(
    host,
    [...root, 'tail', '-c', '4096', '--', path],
    'Reading the saved database',
  );
  const problem = engine.checkTail(tail.stdout);
  if (problem) throw new BackupError(`The saved current database is not complete: ${problem}.`);
}
