// One query through the engine's client on the host, with the dump's credentials (secret
// on stdin, never argv): stopped by the run's signal or after `dump-timeout` seconds without
// output, its failures in the engine's words. Row counts and the encryption settings are such
// queries; the encryption index streams, and shares the timer and the judgement.
import type { DatabaseEngine, DumpContext } from '../database/index.ts';
import type { CheckCommand } from '../database/engine.ts';
import { BackupError, InterruptedError } from '../errors.ts';
import { guardedCommand, secretLine } from '../host/guarded.ts';
import type { Host } from '../host/host.ts';
import { stderrTail, type ProcessResult } from '../host/process.ts';

/** How long a query may go without output: `seconds`, counted from when `after` settles. */
export interface QueryTimeout {
  seconds: number;
  /**
   * The dump running beside the query: it watches the server for silence itself, and a
   * query may print nothing until it is done, so the query's own clock starts once it ended.
   */
  after?: Promise<unknown>;
}

/** A stop after `seconds` of silence, counted from when `after` settles (when given). */
export class SilenceTimer {
  fired = false;
  private timer: NodeJS.Timeout | undefined;
  private armed = false;
  private ended = false;
  private readonly ms: number;
  private readonly onFire: () => void;

  constructor(timeout: QueryTimeout | undefined, onFire: () => void) {
    this.ms = (timeout?.seconds ?? 0) * 1000;
    this.onFire = onFire;
    if (!timeout) return;
    const arm = () => {
      this.armed = true;
      this.touch();
    };
    if (timeout.after) void timeout.after.then(arm, arm);
    else arm();
  }

  touch(): void {
    if (!this.armed || this.ended) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.fired = true;
      this.onFire();
    }, this.ms);
  }

  stop(): void {
    this.ended = true;
    clearTimeout(this.timer);
  }
}

export function timedOutMessage(what: string, timeout: QueryTimeout): string {
  return `${what} went on for ${timeout.seconds} s without output${timeout.after ? ' after the dump ended' : ''} and was stopped (dump-timeout): is the database server answering?`;
}

/** What a query is, for its messages. */
export interface QueryPurpose {
  /** What it does, e.g. "Counting the rows of the mysql database's tables". */
  what: string;
  /** What the client is needed for, e.g. "count the rows of the mysql database". */
  need: string;
}

/** Why a finished client invocation failed, in words, or undefined when it succeeded. */
export function clientFailure(
  host: Host,
  engine: DatabaseEngine,
  context: DumpContext,
  command: CheckCommand,
  result: ProcessResult,
  purpose: QueryPurpose,
): string | undefined {
  const transport = host.transportFailure(result);
  if (transport) return `${purpose.what} failed: ${transport}`;
  if (result.exitCode === 127 && /not found/i.test(result.stderr))
    return `${host.label} has no ${command.program} to ${purpose.need}: install it there.`;
  if (result.exitCode !== 0) {
    const cause =
      engine.explainFailure(result.stderr, context.connection) ??
      (stderrTail(result.stderr) || 'no message');
    return `${purpose.what} (${command.program}) failed with exit code ${result.exitCode}: ${cause}`;
  }
  return undefined;
}

/** The message of output a client printed that its parser could not read. */
export function unexpectedOutput(purpose: QueryPurpose, command: CheckCommand, error: unknown) {
  return `${purpose.what} (${command.program}) gave unexpected output: ${error instanceof Error ? error.message : String(error)}`;
}

/**
 * Runs one query command on the host and parses its output. Stopped through the signal
 * (InterruptedError), or by the timeout when given.
 */
export async function queryOnHost<T>(
  host: Host,
  engine: DatabaseEngine,
  context: DumpContext,
  command: CheckCommand,
  options: {
    purpose: QueryPurpose;
    parse: (stdout: string) => T;
    signal?: AbortSignal | undefined;
    timeout?: QueryTimeout | undefined;
  },
): Promise<T> {
  const { purpose, signal, timeout } = options;
  const abort = new AbortController();
  const cancel = () => abort.abort();
  signal?.addEventListener('abort', cancel, { once: true });
  const silence = new SilenceTimer(timeout, cancel);
  let result;
  try {
    result = await host.run(guardedCommand(command.argv, command.delivery), {
      input: secretLine(command.secret),
      keepStdinOpen: true,
      signal: abort.signal,
    });
  } finally {
    silence.stop();
    signal?.removeEventListener('abort', cancel);
  }
  if (signal?.aborted) throw new InterruptedError();
  if (silence.fired) throw new BackupError(timedOutMessage(purpose.what, timeout!));
  const failure = clientFailure(host, engine, context, command, result, purpose);
  if (failure) throw new BackupError(failure);
  try {
    return options.parse(result.stdout);
  } catch (error) {
    throw new BackupError(unexpectedOutput(purpose, command, error));
  }
}
