// SQLite: `sqlite3 DB .dump`, as ownCloud's documentation says, but read-only: opened
// read-write, sqlite3 creates an empty database where the file is missing (in the live
// data directory) and dumps it as a success. sqlite3 exits 0 even when the database is
// locked, writing an ERROR comment and `ROLLBACK; -- due to errors`: the dump is judged by
// its content, not the exit code.
import { asUser } from '../host/host.ts';
import { stderrTail } from '../host/process.ts';
import {
  ENCRYPTION_SETTINGS,
  parseRowCountLines,
  prefixHex,
  type DatabaseEngine,
} from './engine.ts';

/**
 * What the database file is, as the instance's owner sees it, without opening it as a
 * database (so no lock held by ownCloud can stall the check): one word on stdout.
 * Every SQLite 3 database file starts with the 16 bytes `SQLite format 3\0`.
 */
const CLASSIFY_FILE = `
if [ ! -e "$1" ]; then echo missing
elif [ ! -f "$1" ]; then echo not-a-file
elif [ ! -r "$1" ]; then echo unreadable
elif [ ! -s "$1" ]; then echo empty
elif [ "$(head -c 15 -- "$1")" = "SQLite format 3" ]; then echo sqlite
else echo other
fi
`.trim();

const CHECK_NAMES =
  'check dbname and datadirectory in config.php (or the db-name and data-dir inputs)';

/**
 * SQLite has no dynamic SQL: the first sqlite3 builds the counting statement
 * (`SELECT 'HEXNAME' || char(9) || count(*) FROM "name" UNION ALL ...`, double quotes in a
 * name doubled) and the second runs it. $1 the program, $2 the database file, $3 the query
 * that builds the statement; both read-only, waiting for a lock as the dump does.
 */
const COUNT_ROWS = `
sql=$("$1" -readonly -bail -batch -noheader -cmd '.timeout 5000' "$2" "$3") || exit
printf '%s\\n' "$sql" | "$1" -readonly -bail -batch -noheader -cmd '.timeout 5000' "$2"
`.trim();

/** The query that writes the counting statement for the tables with this prefix. */
export function rowCountsSql(tablePrefix: string): string {
  const prefix = `CAST(X'${prefixHex(tablePrefix)}' AS TEXT)`;
  return (
    "SELECT group_concat('SELECT ''' || hex(name) || ''' || char(9) || count(*) FROM \"' || replace(name, '\"', '\"\"') || '\"', ' UNION ALL ') || ';' " +
    "FROM (SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' " +
    `AND substr(name, 1, length(${prefix})) = ${prefix} ORDER BY name)`
  );
}

/** An identifier, double-quoted. */
function identifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** A table of the instance, double-quoted. */
function table(tablePrefix: string, name: string): string {
  return identifier(tablePrefix + name);
}

/** The encryption settings from appconfig, one hex line each (see ENCRYPTION_SETTINGS). */
export function encryptionStateSql(tablePrefix: string): string {
  const wanted = ENCRYPTION_SETTINGS.map(
    ([app, key]) => `(appid = '${app}' AND configkey = '${key}')`,
  );
  return (
    "SELECT hex(appid) || char(9) || hex(configkey) || char(9) || ifnull(hex(configvalue), '') " +
    `FROM ${table(tablePrefix, 'appconfig')} WHERE ${wanted.join(' OR ')};`
  );
}

/** Every encrypted file cache row, one tab-separated line each, in fileid order. */
export function encryptedFilesSql(tablePrefix: string): string {
  return (
    "SELECT hex(s.id) || char(9) || hex(f.path) || char(9) || f.fileid || char(9) || f.encrypted || char(9) || ifnull(f.size, '') || char(9) || ifnull(f.unencrypted_size, '') || char(9) || ifnull(hex(m.mimetype), '') " +
    `FROM ${table(tablePrefix, 'filecache')} f JOIN ${table(tablePrefix, 'storages')} s ON s.numeric_id = f.storage ` +
    `LEFT JOIN ${table(tablePrefix, 'mimetypes')} m ON m.id = f.mimetype WHERE f.encrypted <> 0 ORDER BY f.fileid;`
  );
}

/** sqlite3 running one query read-only, as the instance's owner (as the dump). */
function readOnlyQuery(
  { connection, tool, account, owner }: Parameters<DatabaseEngine['dumpCommand']>[0],
  sql: string,
) {
  const argv = asUser(account, owner, [
    tool.program,
    '-readonly',
    '-bail',
    '-batch',
    '-noheader',
    '-cmd',
    '.timeout 5000',
    connection.file!,
    sql,
  ]);
  return { program: tool.program, argv, delivery: 'none' as const, secret: '' };
}

export const sqlite: DatabaseEngine = {
  type: 'sqlite',
  programs: ['sqlite3'],
  restoreHint: '(set -o pipefail && umask 027 && {decompress} -dc {dump} | sqlite3 -bail {dbFile})',
  errorMarker: '/**** ERROR:',

  dumpCommand({ connection, tool, account, owner }) {
    // As the instance's owner, so the -shm/-wal files a WAL database needs for reading are
    // not created as root; read-only, so nothing else is ever created or changed.
    const argv = asUser(account, owner, [
      tool.program,
      '-readonly',
      '-bail',
      '-cmd',
      '.timeout 5000',
      connection.file!,
      '.dump',
    ]);
    return { argv, delivery: 'none', secret: '' };
  },

  checkCommand({ connection, account, owner }) {
    const argv = asUser(account, owner, ['sh', '-c', CLASSIFY_FILE, 'sh', connection.file!]);
    return { program: 'sh', argv, delivery: 'none', secret: '' };
  },

  checkProblem(result, { connection, owner }) {
    const file = `'${connection.file!}'`;
    switch (result.stdout.trim()) {
      case 'sqlite':
        return undefined;
      case 'missing':
        return `The SQLite database file ${file} does not exist: ${CHECK_NAMES}.`;
      case 'not-a-file':
        return `The SQLite database ${file} is not a regular file: ${CHECK_NAMES}.`;
      case 'unreadable':
        return `The SQLite database file ${file} is not readable by ${owner}, the instance's owner.`;
      case 'empty':
        return `The SQLite database file ${file} is empty (0 bytes), not the instance's database: ${CHECK_NAMES}.`;
      case 'other':
        return `The file ${file} is not an SQLite 3 database (it lacks the 'SQLite format 3' header): ${CHECK_NAMES}.`;
      default:
        return `Could not check the SQLite database file ${file} (exit ${result.exitCode}): ${stderrTail(result.stderr) || 'no message'}`;
    }
  },

  checkTail(tail) {
    if (tail.includes('ROLLBACK; -- due to errors'))
      return 'sqlite3 rolled the dump back because of errors (is the database locked?)';
    return /COMMIT;\s*$/.test(tail)
      ? undefined
      : "the dump does not end with 'COMMIT;': it was cut short";
  },

  explainFailure(stderr) {
    if (/database is locked/i.test(stderr))
      return 'The SQLite database is locked by another process.';
    if (/unable to open|no such file/i.test(stderr))
      return 'sqlite3 could not open the database file.';
    if (/not a database|malformed/i.test(stderr))
      return 'The SQLite database file is damaged (not a database, or malformed).';
    return undefined;
  },

  clients: ['sqlite3'],

  scriptCommand({ connection, client, account, owner }) {
    // As the web server's user: the database file and its journal are the instance's own.
    const argv = asUser(account, owner, [
      client,
      '-bail',
      '-batch',
      '-noheader',
      '-separator',
      '\t',
      connection.file!,
    ]);
    return { program: client, argv, delivery: 'none', secret: '' };
  },

  identifier,

  textFromHex: (hex) => `CAST(X'${hex}' AS TEXT)`,

  loadCommand({ connection, client, account, owner }) {
    // As the web server's user, so the new database file is the instance's own.
    const argv = asUser(account, owner, [client, '-bail', connection.file!]);
    return { argv, delivery: 'none', secret: '' };
  },

  resetStep({ connection, account, owner }) {
    const file = connection.file!;
    // A new file: the old one and its journals (a -wal from before would be replayed into it).
    const argv = asUser(account, owner, [
      'rm',
      '-f',
      '--',
      file,
      `${file}-wal`,
      `${file}-shm`,
      `${file}-journal`,
    ]);
    return {
      command: { program: 'rm', argv, delivery: 'none', secret: '' },
      sql: '',
      summary: `a new database file ${file}`,
    };
  },

  adminCheckCommand({ client }) {
    return { program: client, argv: ['true'], delivery: 'none', secret: '' };
  },
  rowCountsCommand({ connection, tool, account, owner }) {
    // As the instance's owner and read-only, as the dump (a WAL database needs its -shm file).
    const argv = asUser(account, owner, [
      'sh',
      '-c',
      COUNT_ROWS,
      'sh',
      tool.program,
      connection.file!,
      rowCountsSql(connection.tablePrefix),
    ]);
    return { program: tool.program, argv, delivery: 'none', secret: '' };
  },

  parseRowCounts: parseRowCountLines,

  encryptionStateCommand(context) {
    return readOnlyQuery(context, encryptionStateSql(context.connection.tablePrefix));
  },

  encryptedFilesCommand(context) {
    return readOnlyQuery(context, encryptedFilesSql(context.connection.tablePrefix));
  },

  // No server: a new database file in the private directory is the throwaway database.
  throwawayPrograms: [{ role: 'server', names: ['sqlite3'] }],
  throwawayDirs: [],

  throwawaySetup({ programs, serverVersion, dir, database }) {
    const program = programs.server!;
    return {
      server: `${program.split('/').pop()} ${serverVersion}`.trim(),
      init: [],
      connection: {
        type: 'sqlite',
        name: 'restore-test',
        user: '',
        password: '',
        tablePrefix: database.tablePrefix,
        utf8mb4: false,
        file: `${dir}/restore-test.db`,
      },
      client: program,
      tool: { program, version: serverVersion },
    };
  },

  homeStoragesCommand(context) {
    return readOnlyQuery(
      context,
      `SELECT hex(id) FROM ${table(context.connection.tablePrefix, 'storages')} WHERE substr(id, 1, 6) = 'home::' ORDER BY id`,
    );
  },
};
