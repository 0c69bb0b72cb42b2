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
  /**
   * One client invocation that prints the encryption settings of `<prefix>appconfig`
   * (ENCRYPTION_SETTINGS), one `HEXAPP<TAB>HEXKEY<TAB>HEXVALUE` line each
   * (parseEncryptionSettings), with the dump's credentials and secret delivery.
   */
  encryptionStateCommand(context: DumpContext): CheckCommand;
  /**
   * One client invocation that prints every `<prefix>filecache` row with `encrypted <> 0`
   * (its storage's string id joined from `<prefix>storages`), one line each in fileid order,
   * streamed row by row (parseEncryptedFileLine), with the dump's credentials.
   */
  encryptedFilesCommand(context: DumpContext): CheckCommand;
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
  // --- Restore test (a throwaway server on the runner) ---------------------------------
  /**
   * The programs a throwaway server needs on the runner, in the order they are looked for:
   * each role with its names, best first. The first role is the one a skipped test names.
   */
  readonly throwawayPrograms: readonly ThrowawayRole[];
  /**
   * Directories searched after PATH, e.g. `/usr/lib/postgresql/* /bin` (without the space):
   * a `*` stands for a version, tried newest first.
   */
  readonly throwawayDirs: readonly string[];
  /** How to start a throwaway server from the programs found, in a private directory. Pure. */
  throwawaySetup(input: ThrowawayInput): ThrowawaySetup;
  /**
   * Why a throwaway server of this version cannot be expected to load a dump made by this
   * dump tool (a newer major version writes statements an older server does not know), or
   * undefined. Pure.
   */
  throwawayVersionProblem?(serverVersion: string, dumpToolVersion: string): string | undefined;
  /**
   * One client invocation that prints, one hex line each, the user of every home storage
   * (`home::USER` in the storages table): the users whose `files/` the archive must hold.
   */
  homeStoragesCommand(context: DumpContext): CheckCommand;
}

export interface ThrowawayRole {
  /** What the program is for: 'server' (always first), 'init', 'client'. */
  role: string;
  names: readonly string[];
  /** Not needed after all for some servers (mysqld --initialize-insecure needs no install-db). */
  optional?: boolean;
}

export interface ThrowawayInput {
  /** Role → the absolute path of the program found. */
  programs: Record<string, string>;
  /** The server's `--version` line ('' for SQLite, which has no server). */
  serverVersion: string;
  /** A private (0700) directory for the data, the socket and the logs. */
  dir: string;
  /** The database of the backup: its table prefix, its user (the owner in a PostgreSQL dump). */
  database: { user: string; tablePrefix: string; utf8mb4: boolean };
  /** The runner runs as root (MariaDB must be told; PostgreSQL refuses root). */
  root: boolean;
}

export interface ThrowawaySetup {
  /** For the record: the server program and its version, e.g. `mariadbd 10.11.6-MariaDB`. */
  server: string;
  /** Commands run before the server starts (initdb, install-db). */
  init: string[][];
  /** A program the server needs that the runner lacks (names a skipped test). */
  missing?: string;
  /** The server's argv; undefined for SQLite (a file is all it needs). */
  serverArgv?: string[];
  /** A command that succeeds once the server accepts clients. */
  ready?: string[];
  /** Statements that prepare the empty database (as the server's superuser), run by `ready`'s client. */
  prepare?: { argv: string[]; sql: string };
  /** The connection the engine's load and count commands use. */
  connection: DatabaseConnection;
  /** The client that loads the dump (loadCommand's `client`), and the tool the counts name it by. */
  client: string;
  tool: DumpTool;
  /** Lines of the dump the throwaway server's client cannot take (another flavour's commands). */
  dropLines?: RegExp;
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

// --- Server-side encryption ----------------------------------------------------------------

/** The app config keys that say whether and how the instance encrypts (app, key). */
export const ENCRYPTION_SETTINGS = [
  ['core', 'encryption_enabled'],
  ['core', 'default_encryption_module'],
  ['encryption', 'useMasterKey'],
  ['encryption', 'masterKeyId'],
] as const;

/** The instance's server-side encryption, as its app config says. */
export interface EncryptionState {
  /** core/encryption_enabled is 'yes' (what ownCloud's encryption manager checks). */
  enabled: boolean;
  /** core/default_encryption_module, e.g. OC_DEFAULT_MODULE. */
  module?: string;
  /** encryption/useMasterKey '1': one master key; otherwise a key pair per user. */
  mode?: 'master-key' | 'per-user-key';
  /** encryption/masterKeyId, in master-key mode. */
  masterKeyId?: string;
}

/** A file cache entry of an encrypted file, as the backup's index records it. */
export interface EncryptedFileEntry {
  /** The storage's string id, e.g. `home::alice`. */
  storage: string;
  /** The path inside the storage, e.g. `files/Documents/a.txt`. */
  path: string;
  fileid: number;
  /** The encryption version ownCloud keeps in `encrypted` (a counter, not a flag). */
  encrypted: number;
  /** ownCloud 10 keeps the plain-text size of an encrypted file here. */
  size: number | null;
  unencrypted_size: number | null;
  mimetype: string | null;
  /** Only when the storage id's bytes are not UTF-8 (then `storage` is lossy): its bytes in hex. */
  storageHex?: string;
  /** Only when the path's bytes are not UTF-8 (then `path` is lossy): its bytes in hex. */
  pathHex?: string;
}

const hexText = (hex: string) => Buffer.from(hex, 'hex').toString('utf8');

/** Text from hex digits of its UTF-8 bytes; undefined when they are not valid UTF-8. */
function exactText(hex: string): string | undefined {
  const bytes = Buffer.from(hex, 'hex');
  const text = bytes.toString('utf8');
  return Buffer.from(text, 'utf8').equals(bytes) ? text : undefined;
}

/**
 * Parses the encryption settings: `HEXAPP<TAB>HEXKEY<TAB>HEXVALUE` lines (hex of UTF-8, so
 * any value survives every client's escaping; an empty value field for NULL).
 */
export function parseEncryptionSettings(stdout: string): EncryptionState {
  const values = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const text = line.replace(/\r$/, '');
    if (text.trim() === '') continue;
    const match = /^((?:[0-9A-Fa-f]{2})+)\t((?:[0-9A-Fa-f]{2})+)\t((?:[0-9A-Fa-f]{2})*)$/.exec(
      text,
    );
    if (!match)
      throw new BackupError(
        `Unexpected line in the encryption settings (expected HEXAPP<TAB>HEXKEY<TAB>HEXVALUE): '${text.slice(0, 200)}'`,
      );
    values.set(`${hexText(match[1]!)}/${hexText(match[2]!)}`, hexText(match[3]!));
  }
  if (values.get('core/encryption_enabled') !== 'yes') return { enabled: false };
  const module = values.get('core/default_encryption_module');
  const masterKey = values.get('encryption/useMasterKey') === '1';
  const masterKeyId = values.get('encryption/masterKeyId');
  return {
    enabled: true,
    ...(module ? { module } : {}),
    mode: masterKey ? 'master-key' : 'per-user-key',
    ...(masterKey && masterKeyId ? { masterKeyId } : {}),
  };
}

function wholeNumber(field: string, what: string, nullable: true): number | null;
function wholeNumber(field: string, what: string, nullable: false): number;
function wholeNumber(field: string, what: string, nullable: boolean): number | null {
  if (nullable && field === '') return null;
  if (!/^-?\d+$/.test(field) || !Number.isSafeInteger(Number(field)))
    throw new BackupError(`${what} '${field.slice(0, 40)}' is not a whole number`);
  return Number(field);
}

/**
 * Parses one line of the encrypted files query: `HEXSTORAGE<TAB>HEXPATH<TAB>FILEID<TAB>
 * ENCRYPTED<TAB>SIZE<TAB>UNENCRYPTED_SIZE<TAB>HEXMIMETYPE` (names as hex of their bytes;
 * an empty field for NULL). Undefined for a blank line. A storage or path whose bytes are
 * not UTF-8 is also kept exactly, in `storageHex`/`pathHex`.
 */
export function parseEncryptedFileLine(line: string): EncryptedFileEntry | undefined {
  const text = line.replace(/\r$/, '');
  if (text.trim() === '') return undefined;
  const fields = text.split('\t');
  const hex = /^(?:[0-9A-Fa-f]{2})*$/;
  if (
    fields.length !== 7 ||
    !hex.test(fields[0]!) ||
    !hex.test(fields[1]!) ||
    !hex.test(fields[6]!)
  )
    throw new BackupError(
      `Unexpected line in the encrypted files (expected 7 tab-separated fields: storage, path, fileid, encrypted, size, unencrypted_size, mimetype, names in hex): '${text.slice(0, 200)}'`,
    );
  const [storageHex, pathHex, fileid, encrypted, size, unencrypted, mimetype] = fields as [
    string,
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const storage = exactText(storageHex);
  const path = exactText(pathHex);
  return {
    storage: storage ?? hexText(storageHex),
    path: path ?? hexText(pathHex),
    fileid: wholeNumber(fileid, 'fileid', false),
    encrypted: wholeNumber(encrypted, 'encrypted', false),
    size: wholeNumber(size, 'size', true),
    unencrypted_size: wholeNumber(unencrypted, 'unencrypted_size', true),
    mimetype: mimetype === '' ? null : hexText(mimetype),
    ...(storage === undefined ? { storageHex: storageHex.toLowerCase() } : {}),
    ...(path === undefined ? { pathHex: pathHex.toLowerCase() } : {}),
  };
}

/** A hex line each: the decoded values (the home storage query's output). */
export function parseHexLines(stdout: string): string[] {
  return stdout
    .split('\n')
    .map((line) => line.replace(/\r$/, '').trim())
    .filter((line) => line !== '')
    .map((line) => {
      if (!/^(?:[0-9A-Fa-f]{2})*$/.test(line))
        throw new BackupError(`Unexpected line (expected hex digits): '${line.slice(0, 200)}'`);
      return Buffer.from(line, 'hex').toString('utf8');
    });
}

/** The users of home storages (`home::USER`), from their storage ids. Pure. */
export function homeStorageUsers(ids: string[]): string[] {
  return ids
    .filter((id) => id.startsWith('home::'))
    .map((id) => id.slice('home::'.length))
    .sort();
}
