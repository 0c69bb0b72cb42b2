// Exact row counts of the instance's tables (those with its table prefix), taken with the
// engine's own client and the dump's credentials: the backup records them in the manifest,
// and a restore compares the restored database with them through the same functions.
import type { DatabaseEngine, DumpContext } from '../database/index.ts';
import { BackupError, InterruptedError } from '../errors.ts';
import { guardedCommand, secretLine } from '../host/guarded.ts';
import type { Host } from '../host/host.ts';
import { stderrTail } from '../host/process.ts';

/** How long a count may run: `seconds`, counted from when `after` settles when given. */
export interface CountTimeout {
  seconds: number;
  /**
   * The dump running beside the count: it watches the server for silence itself, and a
   * count prints nothing until it is done, so the count's own clock starts once it ended.
   */
  after?: Promise<unknown>;
}

/**
 * Counts the rows of every prefixed table of the instance's database on the host, in one
 * client invocation. Stopped through the signal, or by the timeout when given.
 */
export async function countRows(
  host: Host,
  engine: DatabaseEngine,
  context: DumpContext,
  signal?: AbortSignal,
  timeout?: CountTimeout,
): Promise<Record<string, number>> {
  const command = engine.rowCountsCommand(context);
  const abort = new AbortController();
  const cancel = () => abort.abort();
  signal?.addEventListener('abort', cancel, { once: true });
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  let ended = false;
  const arm = () => {
    if (ended || !timeout) return;
    timer = setTimeout(() => {
      timedOut = true;
      abort.abort();
    }, timeout.seconds * 1000);
  };
  if (timeout?.after) void timeout.after.then(arm, arm);
  else arm();
  let result;
  try {
    result = await host.run(guardedCommand(command.argv, command.delivery), {
      input: secretLine(command.secret),
      keepStdinOpen: true,
      signal: abort.signal,
    });
  } finally {
    ended = true;
    clearTimeout(timer);
    signal?.removeEventListener('abort', cancel);
  }
  if (signal?.aborted) throw new InterruptedError();
  const what = `Counting the rows of the ${engine.type} database's tables`;
  if (timedOut)
    throw new BackupError(
      `${what} went on for ${timeout!.seconds} s${timeout!.after ? ' after the dump ended' : ''} and was stopped (dump-timeout): is the database server answering?`,
    );
  const transport = host.transportFailure(result);
  if (transport) throw new BackupError(`${what} failed: ${transport}`);
  if (result.exitCode === 127 && /not found/i.test(result.stderr))
    throw new BackupError(
      `${host.label} has no ${command.program} to count the rows of the ${engine.type} database: install it there.`,
    );
  if (result.exitCode !== 0) {
    const cause =
      engine.explainFailure(result.stderr, context.connection) ??
      (stderrTail(result.stderr) || 'no message');
    throw new BackupError(
      `${what} (${command.program}) failed with exit code ${result.exitCode}: ${cause}`,
    );
  }
  try {
    return engine.parseRowCounts(result.stdout);
  } catch (error) {
    throw new BackupError(
      `${what} (${command.program}) gave unexpected output: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}
