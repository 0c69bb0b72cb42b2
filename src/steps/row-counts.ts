// Exact row counts of the instance's tables (those with its table prefix), taken with the
// engine's own client and the dump's credentials: the backup records them in the manifest,
// and a restore compares the restored database with them through the same functions.
import type { DatabaseEngine, DumpContext } from '../database/index.ts';
import type { Host } from '../host/host.ts';
import { queryOnHost, type QueryTimeout } from './client-query.ts';

/**
 * Counts the rows of every prefixed table of the instance's database on the host, in one
 * client invocation. Stopped through the signal, or by the timeout when given.
 */
export async function countRows(
  host: Host,
  engine: DatabaseEngine,
  context: DumpContext,
  signal?: AbortSignal,
  timeout?: QueryTimeout,
): Promise<Record<string, number>> {
  return queryOnHost(host, engine, context, engine.rowCountsCommand(context), {
    purpose: {
      what: `Counting the rows of the ${engine.type} database's tables`,
      need: `count the rows of the ${engine.type} database`,
    },
    parse: (stdout) => engine.parseRowCounts(stdout),
    signal,
    timeout,
  });
}
