// PostgreSQL: the host's own pg_dump (its version matches the server), never prompting.
import { stderrTail } from '../host/process.ts';
import type { DatabaseConnection } from '../instance.ts';
import {
  ENCRYPTION_SETTINGS,
  parseRowCountLines,
  prefixHex,
  type CheckCommand,
  type DatabaseEngine,
  type LoadContext,
} from './engine.ts';

/**
 * The database name as libpq's `--dbname` option: libpq reads a bare name containing `=`
 * as a connection string (which could name another server), so the name always travels
 * as the one `dbname` value of a connection string, single-quoted with `\` and `'` escaped.
 */
export function dbnameOption(name: string): string {
  return `--dbname=dbname='${name.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
}

/** Environment and connection options shared by pg_dump and the check's psql. */
function connectionArgv(program: string, connection: DatabaseConnection): string[] {
  const argv = ['env', 'PGCONNECT_TIMEOUT=15', 'PGAPPNAME=owncloud-backup', program];
  argv.push('--no-password');
  const host = connection.socket ?? connection.host;
  if (host) argv.push(`--host=${host}`);
  if (connection.port !== undefined) argv.push(`--port=${connection.port}`);
  argv.push(`--username=${connection.user}`, dbnameOption(connection.name));
  return argv;
}

function serverName(connection: DatabaseConnection): string {
  return `${connection.socket ?? connection.host ?? 'on the default socket'}${connection.port ? `:${connection.port}` : ''}`;
}

function explainFailure(stderr: string, connection: DatabaseConnection): string | undefined {
  if (/password authentication failed|no password supplied/i.test(stderr))
    return `PostgreSQL refused user '${connection.user}' (password authentication failed).`;
  if (/database ".*" does not exist/i.test(stderr))
    return `PostgreSQL has no database '${connection.name}'.`;
  if (/permission denied/i.test(stderr))
    return `User '${connection.user}' may not read every table of '${connection.name}' (permission denied).`;
  if (
    /could not connect|Connection refused|timeout expired|server closed the connection|terminating connection/i.test(
      stderr,
    )
  )
    return `Could not reach the PostgreSQL server ${serverName(connection)} (is it running?), or it closed the connection.`;
  return undefined;
}

/** A PostgreSQL identifier, double-quoted. Pure. */
export function pgIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** A PostgreSQL string literal (the scripts set standard_conforming_strings on). Pure. */
export function pgString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** psql reading a script on stdin, stopping at the first error. */
function psqlCommand(connection: DatabaseConnection, extra: string[] = []): CheckCommand {
  const argv = [
    ...connectionArgv('psql', connection),
    '--no-psqlrc',
    '--quiet',
    '--set=ON_ERROR_STOP=1',
    '--output=/dev/null',
    ...extra,
  ];
  return { program: 'psql', argv, delivery: 'pgpassword', secret: connection.password };
}

/** psql running the given commands, printing bare values one row a line. */
function queryCommand(connection: DatabaseConnection, commands: string[]): CheckCommand {
  const argv = [
    ...connectionArgv('psql', connection),
    '--no-psqlrc',
    '--quiet',
    '--tuples-only',
    '--no-align',
    ...commands,
  ];
  return { program: 'psql', argv, delivery: 'pgpassword', secret: connection.password };
}

function adminConnection({ connection, admin }: LoadContext): DatabaseConnection {
  return { ...connection, name: 'postgres', user: admin!.user, password: admin!.password };
}

const KNOWN_SETTINGS = 'SET standard_conforming_strings = on;';

/**
 * Counts every prefixed base table of the current schema in one statement: query_to_xml runs
 * `SELECT count(*) FROM schema.name` for each (format's %I quotes the names), inside one
 * REPEATABLE READ transaction so that all counts see the same moment. The prefix travels as
 * hex and is compared as a string prefix (no LIKE pattern).
 */
export function rowCountsSql(tablePrefix: string): string {
  const prefix = `convert_from(decode('${prefixHex(tablePrefix)}', 'hex'), 'UTF8')`;
  return (
    "SELECT encode(convert_to(table_name, 'UTF8'), 'hex') || E'\\t' || " +
    "(xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I.%I', table_schema, table_name), false, true, '')))[1]::text " +
    "FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' " +
    `AND left(table_name, length(${prefix})) = ${prefix} ORDER BY table_name`
  );
}

const hexOf = (expression: string) => `encode(convert_to(${expression}, 'UTF8'), 'hex')`;

/** The encryption settings from appconfig, one hex line each (see ENCRYPTION_SETTINGS). */
export function encryptionStateSql(tablePrefix: string): string {
  const wanted = ENCRYPTION_SETTINGS.map(
    ([app, key]) => `(appid = '${app}' AND configkey = '${key}')`,
  );
  return (
    `SELECT ${hexOf('appid')} || E'\\t' || ${hexOf('configkey')} || E'\\t' || coalesce(${hexOf('configvalue')}, '') ` +
    `FROM ${pgIdentifier(`${tablePrefix}appconfig`)} WHERE ${wanted.join(' OR ')}`
  );
}

/** Every encrypted file cache row, one tab-separated line each, in fileid order. */
export function encryptedFilesSql(tablePrefix: string): string {
  const t = (name: string) => pgIdentifier(`${tablePrefix}${name}`);
  const fields = [
    hexOf('s.id'),
    hexOf('f.path'),
    'f.fileid::text',
    'f.encrypted::text',
    "coalesce(f.size::text, '')",
    "coalesce(f.unencrypted_size::text, '')",
    `coalesce(${hexOf('m.mimetype')}, '')`,
  ];
  return (
    `SELECT ${fields.join(" || E'\\t' || ")} ` +
    `FROM ${t('filecache')} f JOIN ${t('storages')} s ON s.numeric_id = f.storage LEFT JOIN ${t('mimetypes')} m ON m.id = f.mimetype ` +
    'WHERE f.encrypted <> 0 ORDER BY f.fileid'
  );
}

export const pgsql: DatabaseEngine = {
  type: 'pgsql',
  programs: ['pg_dump'],
  restoreHint:
    'runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -c "CREATE DATABASE \\"{dbName}\\" OWNER \\"{dbUser}\\" ENCODING \'UTF8\' TEMPLATE template0" && set -o pipefail && {decompress} -dc {dump} | runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d {db} >/dev/null',

  dumpCommand({ connection, tool }) {
    const argv = [...connectionArgv(tool.program, connection), '--format=plain'];
    return { argv, delivery: 'pgpassword', secret: connection.password };
  },

  checkCommand({ connection }) {
    // psql comes with pg_dump (one client package; Debian's wrapper picks the same version).
    return queryCommand(connection, ['--command=SELECT 1']);
  },

  checkProblem(result, { connection }) {
    if (result.exitCode === 0 && result.stdout.trim() === '1') return undefined;
    return (
      explainFailure(result.stderr, connection) ??
      `psql could not query '${connection.name}' on the PostgreSQL server ${serverName(connection)} (exit ${result.exitCode}): ${stderrTail(result.stderr) || 'no message'}`
    );
  },

  checkTail(tail) {
    return /-- PostgreSQL database dump complete/.test(tail)
      ? undefined
      : "the dump does not end with pg_dump's 'PostgreSQL database dump complete' line: it was cut short";
  },

  explainFailure,

  clients: ['psql'],
  // pg_dump names the owner of every object; loaded by another user, those lines must go.
  foreignOwnerLine: /^ALTER [A-Z ]+ \S.* OWNER TO \S+;$/,

  scriptCommand({ connection }) {
    return queryCommand(connection, ['--set=ON_ERROR_STOP=1', '--field-separator=\t']);
  },

  identifier: pgIdentifier,

  textFromHex: (hex) => `convert_from(decode('${hex}', 'hex'), 'UTF8')`,

  loadCommand({ connection }) {
    const { argv, delivery, secret } = psqlCommand(connection, ['--single-transaction']);
    return { argv, delivery, secret };
  },

  resetStep(context) {
    const { connection, admin } = context;
    if (admin) {
      const db = pgIdentifier(connection.name);
      const user = pgString(connection.user);
      return {
        command: psqlCommand(adminConnection(context)),
        sql: [
          KNOWN_SETTINGS,
          // WITH (FORCE) (PostgreSQL 13 and later) ends the sessions still open on it.
          "SELECT current_setting('server_version_num')::int >= 130000 AS owncloud_force \\gset",
          '\\if :owncloud_force',
          `DROP DATABASE IF EXISTS ${db} WITH (FORCE);`,
          '\\else',
          `DROP DATABASE IF EXISTS ${db};`,
          '\\endif',
          `SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', ${user}, ${pgString(connection.password)}) WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ${user}) \\gexec`,
          `CREATE DATABASE ${db} OWNER ${pgIdentifier(connection.user)} ENCODING 'UTF8' TEMPLATE template0;`,
          '',
        ].join('\n'),
        summary: `dropped and recreated the database '${connection.name}' (UTF8, owned by ${connection.user}) as ${admin.user}`,
      };
    }
    const prefix = pgString(connection.tablePrefix);
    return {
      command: psqlCommand(connection),
      sql: [
        KNOWN_SETTINGS,
        // Views first, then tables (their sequences go with them), then what is left.
        `SELECT format('DROP %s IF EXISTS %I.%I CASCADE', CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND left(c.relname, length(${prefix})) = ${prefix} ORDER BY CASE c.relkind WHEN 'v' THEN 0 WHEN 'm' THEN 1 WHEN 'S' THEN 3 ELSE 2 END, c.relname \\gexec`,
        '',
      ].join('\n'),
      summary: `emptied the database '${connection.name}' as its user ${connection.user} (every table, view and sequence starting with '${connection.tablePrefix}' dropped; no db-admin-user given)`,
    };
  },

  adminCheckCommand(context) {
    return queryCommand(adminConnection(context), ['--command=SELECT 1']);
  },
  rowCountsCommand({ connection }) {
    return queryCommand(connection, [
      '--set=ON_ERROR_STOP=1',
      '--command=BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
      `--command=${rowCountsSql(connection.tablePrefix)}`,
    ]);
  },

  parseRowCounts: parseRowCountLines,

  encryptionStateCommand({ connection }) {
    return queryCommand(connection, [
      '--set=ON_ERROR_STOP=1',
      `--command=${encryptionStateSql(connection.tablePrefix)}`,
    ]);
  },

  encryptedFilesCommand({ connection }) {
    // FETCH_COUNT: psql reads through a cursor, so the rows stream instead of being held whole.
    return queryCommand(connection, [
      '--set=ON_ERROR_STOP=1',
      '--set=FETCH_COUNT=10000',
      `--command=${encryptedFilesSql(connection.tablePrefix)}`,
    ]);
  },

  throwawayPrograms: [
    { role: 'server', names: ['postgres'] },
    { role: 'init', names: ['initdb'] },
    { role: 'client', names: ['psql'] },
  ],
  // Debian and Ubuntu keep the server programs of each major version apart; RHEL too.
  throwawayDirs: ['/usr/lib/postgresql/*/bin', '/usr/pgsql-*/bin', '/usr/local/pgsql/bin'],
  throwawaySetup: throwawayServer,

  throwawayVersionProblem(serverVersion, dumpToolVersion) {
    const major = (text: string) => /(\d+)(?:\.\d+)*/.exec(text)?.[1];
    const server = major(serverVersion);
    const dump = major(dumpToolVersion);
    if (!server || !dump || Number(server) >= Number(dump)) return undefined;
    return `the runner's postgres ${server} is older than the pg_dump ${dump} the dump was made with (install PostgreSQL ${dump} on the runner)`;
  },

  homeStoragesCommand({ connection }) {
    const table = pgIdentifier(`${connection.tablePrefix}storages`);
    return queryCommand(connection, [
      '--set=ON_ERROR_STOP=1',
      `--command=SELECT encode(convert_to(id, 'UTF8'), 'hex') FROM ${table} WHERE left(id, 6) = 'home::' ORDER BY id`,
    ]);
  },
};

/** The socket's port number: it only names the socket file in the private directory. */
const THROWAWAY_PORT = 5432;

/**
 * A throwaway PostgreSQL server on a private socket directory only (listen_addresses
 * empty: no TCP), trusting local connections: nobody but its owner (and root) can reach the
 * 0700 directory. Its superuser is the instance's database user, so that the dump's
 * `ALTER ... OWNER TO` lines load as they are. Pure.
 */
export function throwawayServer(input: Parameters<DatabaseEngine['throwawaySetup']>[0]) {
  const { programs, serverVersion, dir, database } = input;
  const server = programs.server!;
  const dataDir = `${dir}/data`;
  const version = serverVersion.replace(/^.*?\(PostgreSQL\)\s*/, '').trim() || serverVersion;
  const connection: DatabaseConnection = {
    type: 'pgsql',
    name: 'postgres',
    socket: dir,
    port: THROWAWAY_PORT,
    user: database.user,
    password: '',
    tablePrefix: database.tablePrefix,
    utf8mb4: false,
  };
  return {
    server: `postgres ${version}`,
    init: [
      [
        programs.init!,
        '-D',
        dataDir,
        '-U',
        database.user,
        '-E',
        'UTF8',
        '--locale=C',
        '--auth=trust',
        '--no-sync',
      ],
    ],
    serverArgv: [
      server,
      '-D',
      dataDir,
      '-p',
      String(THROWAWAY_PORT),
      '-c',
      'listen_addresses=',
      '-c',
      `unix_socket_directories=${dir}`,
      '-c',
      'fsync=off',
      '-c',
      'full_page_writes=off',
      '-c',
      'synchronous_commit=off',
      '-c',
      'shared_buffers=32MB',
    ],
    ready: [
      programs.client!,
      '--no-psqlrc',
      '--no-password',
      `--host=${dir}`,
      `--port=${THROWAWAY_PORT}`,
      `--username=${database.user}`,
      dbnameOption('postgres'),
      '--tuples-only',
      '--no-align',
      '--command=SELECT 1',
    ],
    connection,
    client: programs.client!,
    tool: { program: 'pg_dump', version: '' },
  };
}
