// The shape every database engine module has (one module per engine, same functions).
import type { DatabaseConnection } from '../instance.ts';
import type { SecretDelivery } from '../host/guarded.ts';
import type { ProcessResult } from '../host/process.ts';
import type { DatabaseAdmin, DatabaseType } from '../settings.ts';
import { BackupError } from '../errors.ts';

export interface DumpTool {
  /** The program on the host, e.g. `mysqldump`, `mariadb-dump`, `pg_dump`, `sqlite3`. */
  program: string;
  /** Its own version line. */
  version: string;
}

export interface DumpCommand {
  /** The dump's argv on the host (before wrapping): no secret in it. */
  argv: string[];
  /** How the password reaches the dump program. */
  delivery: SecretDelivery;
  /** The secret sent on stdin ('' for none), already in the form the delivery expects. */
  secret: string;
}

export interface CheckCommand extends DumpCommand {
  /** The program the check needs on the host (named when the host lacks it). */
  program: string;
}

export interface DumpContext {
  connection: DatabaseConnection;
  tool: DumpTool;
  /** The account the session runs as on the host, and the instance's owner. */
  account: string;
  owner: string;
}

/** What a restore's database commands need. */
export interface LoadContext {
  connection: DatabaseConnection;
  /** The engine's command-line client found on the host (one of `clients`). */
  client: string;
  account: string;
  owner: string;
  /** An account that may drop and create databases; without it the instance's user works. */
  admin?: DatabaseAdmin;
}

/** The step that leaves an empty database for the dump: a command, and SQL for its stdin. */
export interface ResetStep {
  command: CheckCommand;
  sql: string;
  /** For the log: what it does, e.g. "dropped and recreated 'owncloud' as root". */
  summary: string;
}

export interface DatabaseEngine {
  readonly type: DatabaseType;
  /** Programs to look for on the host, best first. */
  readonly programs: readonly string[];
  /**
   * Shell commands that load the dump into a new database, for the manifest; buildManifest fills
   * in {decompress}, {dump}, {db}, {dbName}, {dbUser}, {charset} and {dbFile}.
   */
  readonly restoreHint: string;
  dumpCommand(context: DumpContext): DumpCommand;
  /**
   * A cheap check run before anything changes on the host, with the dump's own credentials
   * and secret delivery: can the dump reach and read the database?
   */
  checkCommand(context: DumpContext): CheckCommand;
  /** Why the dump could not run, judged from the check's result; undefined when it can. */
  checkProblem(result: ProcessResult, context: DumpContext): string | undefined;
  /** A problem with a finished dump judged by its last bytes, or undefined when it is complete. */
  checkTail(tail: string): string | undefined;
  /** A marker that means failure wherever it appears in the dump (engines that report errors inline). */
  readonly errorMarker?: string;
  /** The cause of a failed dump in words, from the program's stderr. */
  explainFailure(stderr: string, connection: DatabaseConnection): string | undefined;
  // --- Restore -----------------------------------------------------------------------------
  /** Client programs that load a dump, best first. */
  readonly clients: readonly string[];
  /** A command that runs the SQL on its stdin in the instance's database, as its user. */
  loadCommand(context: LoadContext): DumpCommand;
  /**
   * Leaves the instance's database empty for the dump: dropped and recreated by the admin
   * (with the instance's user and rights, when missing), or, without an admin, emptied of
   * every table, view and sequence of the instance's prefix by the instance's own user.
   */
  resetStep(context: LoadContext): ResetStep;
  /** A cheap check that the admin account can log in (preflight). */
  adminCheckCommand(context: LoadContext): CheckCommand;
  /**
   * Lines to drop from a dump loaded by another database user than the one it was taken
   * from (ownership statements naming the old user); undefined when none need to go.
   */
  foreignOwnerLine?: RegExp;
  /**
   * One client invocation that prints an exact `COUNT(*)` of every table whose name starts
   * with the instance's table prefix, one `HEXNAME<TAB>COUNT` line each (rowCountLines), with
   * the dump's credentials and secret delivery: what a restored database is compared with.
   */
  rowCountsCommand(context: DumpContext): CheckCommand;
  /** Table name → rows, from the row count command's output. */
  parseRowCounts(stdout: string): Record<string, number>;
  // --- SQL of our own (the file cache of single restored files) --------------------------
  /**
   * A command that runs the SQL on its stdin in the instance's database as its user,
   * stopping at the first error, and prints each result row's values tab-separated.
   */
  scriptCommand(context: LoadContext): CheckCommand;
  /** A quoted identifier. Pure. */
  identifier(name: string): string;
  /** An expression for the text whose UTF-8 bytes these hex digits are (no quoting to get wrong). Pure. */
  textFromHex(hex: string): string;
}

/**
 * The table prefix as hex digits of its UTF-8 bytes: each engine turns them back into a string
 * in SQL, so no prefix (quotes, backslashes, `_` or `%`) can change the query or match as a pattern.
 */
export function prefixHex(prefix: string): string {
  return Buffer.from(prefix, 'utf8').toString('hex').toUpperCase();
}

/**
 * Parses row count lines: the table name as hex digits of its UTF-8 bytes (so a name with a
 * tab, a line break or a backslash survives every client's output escaping), a tab, the count.
 */
export function parseRowCountLines(stdout: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const line of stdout.split('\n')) {
    const text = line.replace(/\r$/, '');
    if (text.trim() === '') continue;
    const match = /^((?:[0-9A-Fa-f]{2})+)\t(\d+)$/.exec(text);
    if (!match)
      throw new BackupError(
        `Unexpected line in the table row counts (expected HEXNAME<TAB>COUNT): '${text.slice(0, 200)}'`,
      );
    const table = Buffer.from(match[1]!, 'hex').toString('utf8');
    counts[table] = Number(match[2]);
  }
  return counts;
}
