// MySQL and MariaDB: mysqldump --single-transaction (mariadb-dump where mysqldump is gone).
import { mysqlOptionValue, type SecretDelivery } from '../host/guarded.ts';
import { stderrTail } from '../host/process.ts';
import type { DatabaseConnection } from '../instance.ts';
import {
  ENCRYPTION_SETTINGS,
  parseRowCountLines,
  prefixHex,
  type CheckCommand,
  type DatabaseEngine,
  type DumpTool,
  type LoadContext,
} from './engine.ts';

/**
 * The longest `password=...` line an option file may hold: the client reads option files
 * in 4 KiB lines, so a longer line is cut and its tail read as an option of its own
 * (measured: 4,094 bytes pass with MariaDB 10.11). Kept below that, for other builds.
 */
export const OPTION_LINE_LIMIT = 4000;

/**
 * How the password reaches the client: a `[client]` option file on fd 3 (the option must
 * come first in argv), or, for a password too long for an option-file line, MYSQL_PWD in
 * the client's environment only.
 */
function passwordDelivery(password: string): {
  options: string[];
  delivery: SecretDelivery;
  secret: string;
} {
  const value = mysqlOptionValue(password);
  if (Buffer.byteLength(`password=${value}`) <= OPTION_LINE_LIMIT)
    return {
      options: ['--defaults-extra-file=/dev/fd/3'],
      delivery: 'mysql-option-file',
      secret: value,
    };
  return { options: [], delivery: 'mysql-pwd', secret: password };
}

/** Where the server is and who logs in: the same for the dump and the check. */
function connectionOptions(connection: DatabaseConnection): string[] {
  const argv: string[] = [];
  if (connection.host) argv.push(`--host=${connection.host}`);
  else if (!connection.socket) argv.push('--host=localhost');
  if (connection.port !== undefined) argv.push(`--port=${connection.port}`);
  if (connection.socket) argv.push(`--socket=${connection.socket}`);
  argv.push(`--user=${connection.user}`);
  return argv;
}

/** The command-line client that comes with the dump tool (mariadb beside mariadb-dump). */
function clientOf(tool: DumpTool): string {
  return tool.program === 'mariadb-dump' ? 'mariadb' : 'mysql';
}

function serverName(connection: DatabaseConnection): string {
  return `${connection.host ?? connection.socket ?? 'localhost'}${connection.port ? `:${connection.port}` : ''}`;
}

function explainFailure(stderr: string, connection: DatabaseConnection): string | undefined {
  if (/Access denied/i.test(stderr))
    return `MySQL refused user '${connection.user}' (access denied): wrong password or missing rights on '${connection.name}'.`;
  if (/Unknown database/i.test(stderr)) return `MySQL has no database '${connection.name}'.`;
  // A lost connection during the handshake is a server that never answered.
  if (
    /Can't connect|Unknown MySQL server host|handshake|initial communication packet/i.test(stderr)
  )
    return `Could not reach the MySQL server ${serverName(connection)} (is it running?).`;
  // Reached, then lost: the session was killed or the server went down while it worked.
  if (/Lost connection|server has gone away/i.test(stderr))
    return `The MySQL server ${serverName(connection)} closed the connection while it was in use (the session was killed, or the server stopped).`;
  return undefined;
}

/** A MySQL identifier, backquoted. Pure. */
export function mysqlIdentifier(name: string): string {
  return `\`${name.replaceAll('`', '``')}\``;
}

/** A MySQL string literal (the scripts set a sql_mode in which backslash escapes hold). Pure. */
export function mysqlString(value: string): string {
  return `'${value.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
}

/** Every script starts from a known sql_mode: backslash escapes on, strict. */
const KNOWN_MODE = "SET SESSION sql_mode = 'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION';";

/** The client run with a connection's credentials on one database (or none: the admin). */
function clientCommand(
  client: string,
  connection: DatabaseConnection,
  database: string | undefined,
): CheckCommand {
  const { options, delivery, secret } = passwordDelivery(connection.password);
  const argv = [
    client,
    ...options,
    '--batch',
    '--skip-column-names',
    '--connect-timeout=15',
    `--default-character-set=${connection.utf8mb4 ? 'utf8mb4' : 'utf8'}`,
    ...connectionOptions(connection),
    ...(database !== undefined ? ['--', database] : []),
  ];
  return { program: client, argv, delivery, secret };
}

/** The client running one statement in the instance's database (batch output, no header). */
function queryCommand(program: string, connection: DatabaseConnection, sql: string): CheckCommand {
  const { options, delivery, secret } = passwordDelivery(connection.password);
  const argv = [
    program,
    ...options,
    '--batch',
    '--skip-column-names',
    '--connect-timeout=15',
    ...connectionOptions(connection),
    `--execute=${sql}`,
    '--',
    connection.name,
  ];
  return { program, argv, delivery, secret };
}

function adminConnection({ connection, admin }: LoadContext): DatabaseConnection {
  return { ...connection, user: admin!.user, password: admin!.password };
}

/**
 * Where the instance's user logs in from, for the accounts the admin creates: the socket
 * (and `localhost`) means 'localhost'; a loopback address is seen as 'localhost' or the
 * address itself; any other server sees the web server's address, so any host.
 */
function accountHosts(connection: DatabaseConnection): string[] {
  const host = connection.host;
  if (!host || host === 'localhost') return ['localhost'];
  if (host === '127.0.0.1' || host === '::1') return ['localhost', host];
  return ['%'];
}

/** Drops every object of one type whose name starts with the prefix, in one statement. */
function dropAllOf(kind: 'VIEW' | 'TABLE', prefix: string): string {
  const type = kind === 'VIEW' ? 'VIEW' : 'BASE TABLE';
  return [
    `SET @names = (SELECT GROUP_CONCAT(CONCAT('\`', REPLACE(table_name, '\`', '\`\`'), '\`')) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = '${type}' AND LEFT(table_name, CHAR_LENGTH(${mysqlString(prefix)})) = ${mysqlString(prefix)});`,
    `SET @drop = IF(@names IS NULL, 'DO 0', CONCAT('DROP ${kind} ', @names));`,
    'PREPARE owncloud_restore_drop FROM @drop;',
    'EXECUTE owncloud_restore_drop;',
    'DEALLOCATE PREPARE owncloud_restore_drop;',
  ].join('\n');
}

/**
 * Counts every prefixed base table of the current database in one statement: the server
 * builds `SELECT 'HEXNAME', COUNT(*) FROM \`name\` UNION ALL ...` (backticks in a name
 * doubled) and runs it as a prepared statement. The prefix is compared byte by byte (no LIKE
 * pattern, no collation); GROUP_CONCAT's default limit of 1 KiB would cut the statement.
 */
export function rowCountsSql(tablePrefix: string): string {
  const prefix = `X'${prefixHex(tablePrefix)}'`;
  return [
    'SET SESSION group_concat_max_len = 67108864',
    "SET @owncloud_backup_counts = (SELECT GROUP_CONCAT(CONCAT('SELECT ''', HEX(table_name), ''', COUNT(*) FROM `', REPLACE(table_name, '`', '``'), '`') ORDER BY table_name SEPARATOR ' UNION ALL ') FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' AND " +
      `LEFT(CAST(table_name AS BINARY), LENGTH(${prefix})) = ${prefix})`,
    "SET @owncloud_backup_counts = COALESCE(@owncloud_backup_counts, 'SELECT 1, 1 FROM DUAL WHERE FALSE')",
    'PREPARE owncloud_backup_counts FROM @owncloud_backup_counts',
    'EXECUTE owncloud_backup_counts',
    'DEALLOCATE PREPARE owncloud_backup_counts',
  ].join('; ');
}

/** The encryption settings from appconfig, hex columns (see ENCRYPTION_SETTINGS). */
export function encryptionStateSql(tablePrefix: string): string {
  const wanted = ENCRYPTION_SETTINGS.map(
    ([app, key]) => `(appid = '${app}' AND configkey = '${key}')`,
  );
  return `SELECT HEX(appid), HEX(configkey), IFNULL(HEX(configvalue), '') FROM ${mysqlIdentifier(`${tablePrefix}appconfig`)} WHERE ${wanted.join(' OR ')}`;
}

/**
 * Every encrypted file cache row, in fileid order: separate columns (the batch output
 * escapes a tab inside a value, not the tabs between columns), names in hex, '' for NULL.
 */
export function encryptedFilesSql(tablePrefix: string): string {
  const t = (name: string) => mysqlIdentifier(`${tablePrefix}${name}`);
  return (
    "SELECT HEX(s.id), HEX(f.path), f.fileid, f.encrypted, IFNULL(f.size, ''), IFNULL(f.unencrypted_size, ''), IFNULL(HEX(m.mimetype), '') " +
    `FROM ${t('filecache')} f JOIN ${t('storages')} s ON s.numeric_id = f.storage LEFT JOIN ${t('mimetypes')} m ON m.id = f.mimetype ` +
    'WHERE f.encrypted <> 0 ORDER BY f.fileid'
  );
}

export const mysql: DatabaseEngine = {
  type: 'mysql',
  programs: ['mysqldump', 'mariadb-dump'],
  restoreHint:
    'mysql -e "CREATE DATABASE \\`{dbName}\\` CHARACTER SET {charset} COLLATE {charset}_general_ci" && set -o pipefail && {decompress} -dc {dump} | mysql {db}',

  dumpCommand({ connection, tool }) {
    const { options, delivery, secret } = passwordDelivery(connection.password);
    const argv = [
      tool.program,
      ...options,
      '--single-transaction',
      '--no-tablespaces',
      '--hex-blob',
      `--default-character-set=${connection.utf8mb4 ? 'utf8mb4' : 'utf8'}`,
      ...connectionOptions(connection),
      '--',
      connection.name,
    ];
    return { argv, delivery, secret };
  },

  checkCommand({ connection, tool }) {
    return queryCommand(clientOf(tool), connection, 'SELECT 1');
  },

  checkProblem(result, { connection, tool }) {
    if (result.exitCode === 0 && result.stdout.trim() === '1') return undefined;
    return (
      explainFailure(result.stderr, connection) ??
      `${clientOf(tool)} could not query '${connection.name}' on the MySQL server ${serverName(connection)} (exit ${result.exitCode}): ${stderrTail(result.stderr) || 'no message'}`
    );
  },

  checkTail(tail) {
    return /-- Dump completed/.test(tail)
      ? undefined
      : "the dump does not end with mysqldump's '-- Dump completed' line: it was cut short";
  },

  explainFailure,

  clients: ['mariadb', 'mysql'],

  scriptCommand({ connection, client }) {
    return clientCommand(client, connection, connection.name);
  },

  identifier: mysqlIdentifier,

  textFromHex: (hex) => `CONVERT(X'${hex}' USING utf8mb4)`,

  loadCommand({ connection, client }) {
    const { argv, delivery, secret } = clientCommand(client, connection, connection.name);
    return { argv, delivery, secret };
  },

  resetStep(context) {
    const { connection, client, admin } = context;
    if (admin) {
      const charset = connection.utf8mb4 ? 'utf8mb4' : 'utf8';
      const accounts = accountHosts(connection).map(
        (from) => `${mysqlString(connection.user)}@${mysqlString(from)}`,
      );
      const db = mysqlIdentifier(connection.name);
      return {
        command: clientCommand(client, adminConnection(context), undefined),
        sql: [
          KNOWN_MODE,
          `DROP DATABASE IF EXISTS ${db};`,
          `CREATE DATABASE ${db} CHARACTER SET ${charset} COLLATE ${charset}_general_ci;`,
          // An existing account keeps its password; a missing one (a new host) is created.
          ...accounts.flatMap((account) => [
            `CREATE USER IF NOT EXISTS ${account} IDENTIFIED BY ${mysqlString(connection.password)};`,
            `GRANT ALL PRIVILEGES ON ${db}.* TO ${account};`,
          ]),
          '',
        ].join('\n'),
        summary: `dropped and recreated the database '${connection.name}' (${charset}) as ${admin.user}`,
      };
    }
    return {
      command: clientCommand(client, connection, connection.name),
      sql: [
        KNOWN_MODE,
        'SET SESSION group_concat_max_len = 67108864;',
        'SET FOREIGN_KEY_CHECKS = 0;',
        dropAllOf('VIEW', connection.tablePrefix),
        dropAllOf('TABLE', connection.tablePrefix),
        '',
      ].join('\n'),
      summary: `emptied the database '${connection.name}' as its user ${connection.user} (every table and view starting with '${connection.tablePrefix}' dropped; no db-admin-user given)`,
    };
  },

  adminCheckCommand(context) {
    const command = clientCommand(context.client, adminConnection(context), undefined);
    return { ...command, argv: [...command.argv, '--execute=SELECT 1'] };
  },
  rowCountsCommand({ connection, tool }) {
    return queryCommand(clientOf(tool), connection, rowCountsSql(connection.tablePrefix));
  },

  parseRowCounts: parseRowCountLines,

  encryptionStateCommand({ connection, tool }) {
    return queryCommand(clientOf(tool), connection, encryptionStateSql(connection.tablePrefix));
  },

  encryptedFilesCommand({ connection, tool }) {
    const command = queryCommand(
      clientOf(tool),
      connection,
      encryptedFilesSql(connection.tablePrefix),
    );
    // --quick: row by row, instead of the whole result held in the client's memory first.
    const at = command.argv.indexOf('--batch');
    command.argv.splice(at + 1, 0, '--quick');
    return command;
  },

  throwawayPrograms: [
    { role: 'server', names: ['mariadbd', 'mysqld'] },
    { role: 'init', names: ['mariadb-install-db', 'mysql_install_db'], optional: true },
    { role: 'client', names: ['mariadb', 'mysql'] },
  ],
  throwawayDirs: ['/usr/sbin', '/usr/libexec', '/usr/local/mysql/bin', '/usr/local/bin'],
  throwawaySetup: throwawayServer,

  homeStoragesCommand({ connection, tool }) {
    const table = mysqlIdentifier(`${connection.tablePrefix}storages`);
    return queryCommand(
      clientOf(tool),
      connection,
      `SELECT HEX(id) FROM ${table} WHERE LEFT(id, 6) = 'home::' ORDER BY id`,
    );
  },
};

/** MariaDB's first dump line since 10.5.25: a command for its own client that MySQL's refuses. */
const SANDBOX_LINE = /^\/\*M?!999999\\- enable the sandbox mode \*\/$/;

/**
 * A throwaway MariaDB or MySQL server on a private socket only (no TCP), without grant
 * tables: nobody but this user (and root) can reach the socket in its 0700 directory, so no
 * password is needed. MariaDB's data directory comes from mariadb-install-db, MySQL 8's
 * from `mysqld --initialize-insecure`. Pure.
 */
export function throwawayServer(input: Parameters<DatabaseEngine['throwawaySetup']>[0]) {
  const { programs, serverVersion, dir, database, root } = input;
  const server = programs.server!;
  const client = programs.client!;
  const mariadb = /MariaDB/i.test(serverVersion);
  const version = /\bVer\s+(\S+)/.exec(serverVersion)?.[1] ?? serverVersion.trim();
  const dataDir = `${dir}/data`;
  const socket = `${dir}/mysqld.sock`;
  const asRoot = root ? ['--user=root'] : [];
  let init: string[][];
  let missing: string | undefined;
  if (!mariadb)
    init = [
      [
        server,
        '--no-defaults',
        '--initialize-insecure',
        `--datadir=${dataDir}`,
        `--tmpdir=${dir}`,
        ...asRoot,
      ],
    ];
  else if (programs.init)
    init = [
      [
        programs.init,
        '--no-defaults',
        `--datadir=${dataDir}`,
        '--auth-root-authentication-method=socket',
        '--skip-test-db',
        // Passed on to the bootstrapping server: its temporary tables stay in the private dir.
        `--tmpdir=${dir}`,
        ...asRoot,
      ],
    ];
  else {
    init = [];
    missing = 'mariadb-install-db/mysql_install_db';
  }
  const clientLogin = [client, '--no-defaults', `--socket=${socket}`, '--user=root', '--batch'];
  const charset = database.utf8mb4 ? 'utf8mb4' : 'utf8';
  return {
    server: `${server.split('/').pop()} ${version}${mariadb && !/MariaDB/i.test(version) ? ' (MariaDB)' : ''}`,
    init,
    ...(missing ? { missing } : {}),
    serverArgv: [
      server,
      '--no-defaults',
      `--datadir=${dataDir}`,
      `--socket=${socket}`,
      `--pid-file=${dir}/mysqld.pid`,
      `--tmpdir=${dir}`,
      '--skip-networking',
      '--skip-grant-tables',
      '--skip-log-bin',
      '--skip-performance-schema',
      '--innodb-buffer-pool-size=64M',
      ...(mariadb ? [] : ['--mysqlx=OFF']),
      ...asRoot,
    ],
    ready: [...clientLogin, '--skip-column-names', '--execute=SELECT 1'],
    prepare: {
      argv: clientLogin,
      sql: `CREATE DATABASE restore_test CHARACTER SET ${charset} COLLATE ${charset}_general_ci;\n`,
    },
    connection: {
      type: 'mysql' as const,
      name: 'restore_test',
      socket,
      user: 'root',
      password: '',
      tablePrefix: database.tablePrefix,
      utf8mb4: database.utf8mb4,
    },
    client,
    tool: { program: client.endsWith('/mariadb') ? 'mariadb-dump' : 'mysqldump', version: '' },
    ...(mariadb ? {} : { dropLines: SANDBOX_LINE }),
  };
}
