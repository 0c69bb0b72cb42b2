// What an ownCloud (or Nextcloud) instance says about itself in config.php, and how that
// combines with explicit overrides into the database connection a dump needs. Pure.
import { posix } from 'node:path';
import { InputError } from './errors.ts';
import type { DatabaseOverrides, DatabaseType } from './settings.ts';

/** The config.php keys a backup reads. */
export const CONFIG_KEYS = [
  'instanceid',
  'version',
  'datadirectory',
  'dbtype',
  'dbhost',
  'dbname',
  'dbuser',
  'dbpassword',
  'dbtableprefix',
  'mysql.utf8mb4',
  'theme',
  'maintenance',
  'installed',
  'apps_paths',
] as const;

export type ConfigValues = Partial<Record<(typeof CONFIG_KEYS)[number], unknown>>;

/** The values that end up in a command's argv (or on the dump's stdin): none may hold a NUL. */
const ARGUMENT_KEYS = [
  'datadirectory',
  'dbhost',
  'dbname',
  'dbuser',
  'dbpassword',
  'dbtableprefix',
  'theme',
] as const;

/**
 * Why config.php's values cannot be used, naming the key (a NUL byte cannot be passed to
 * any program: no argv, file name or password holds one); undefined when they can.
 */
export function invalidConfigValue(config: ConfigValues): string | undefined {
  for (const key of ARGUMENT_KEYS) {
    const value = config[key];
    if (typeof value === 'string' && value.includes('\0'))
      return `config.php's '${key}' contains a NUL byte, which no program accepts: fix the value in config.php.`;
  }
  return undefined;
}

export type Product = 'owncloud' | 'nextcloud';

/** One entry of config.php's `apps_paths`: a directory the server loads apps from. */
export interface AppsPath {
  /** Absolute, normalised, without a trailing slash. */
  path: string;
  url: string;
  /** Whether the server installs apps (from the app store) there. */
  writable: boolean;
}

export interface DatabaseConnection {
  type: DatabaseType;
  /** Host name or IP for TCP; undefined for the client's default (local socket). */
  host?: string;
  port?: number;
  /** Unix socket path (MySQL) or socket directory (PostgreSQL). */
  socket?: string;
  name: string;
  user: string;
  password: string;
  tablePrefix: string;
  /** MySQL only: the instance stores 4-byte UTF-8 (config.php's mysql.utf8mb4). */
  utf8mb4: boolean;
  /** SQLite only: the database file, `<datadirectory>/<dbname>.db`. */
  file?: string;
}

const DB_TYPES: Record<string, DatabaseType> = {
  mysql: 'mysql',
  pgsql: 'pgsql',
  sqlite: 'sqlite',
  sqlite3: 'sqlite',
};

function text(value: unknown): string {
  if (value === undefined || value === null || value === false) return '';
  return String(value);
}

/**
 * Splits config.php's dbhost as ownCloud does: `host`, `host:port`, `host:/path/to/socket`,
 * `[ipv6]:port`, or (PostgreSQL) a socket directory `/path`.
 */
export function parseDbHost(dbhost: string): { host?: string; port?: number; socket?: string } {
  const value = dbhost.trim();
  if (value === '') return {};
  if (value.startsWith('/')) return { socket: value };
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(value);
  let host: string;
  let rest: string | undefined;
  if (bracketed) {
    host = bracketed[1]!;
    rest = bracketed[2];
  } else {
    const colon = value.indexOf(':');
    host = colon === -1 ? value : value.slice(0, colon);
    rest = colon === -1 ? undefined : value.slice(colon + 1);
  }
  if (rest === undefined || rest === '') return { host };
  if (/^\d+$/.test(rest)) return { host, port: Number(rest) };
  return { host, socket: rest };
}

/** The connection for the dump: config.php's values, each replaced by an override if given. */
export function resolveDatabase(
  config: ConfigValues,
  overrides: DatabaseOverrides,
  dataDir: string,
): DatabaseConnection {
  let type = overrides.type;
  if (!type) {
    const dbtype = text(config.dbtype).toLowerCase();
    if (dbtype === 'oci')
      throw new InputError(
        "config.php says dbtype 'oci' (Oracle), which is not supported: back it up with Oracle's own tools.",
      );
    type = DB_TYPES[dbtype || 'sqlite'];
    if (!type)
      throw new InputError(
        `config.php has dbtype '${dbtype}', which is not supported. Expected mysql, pgsql or sqlite3.`,
      );
  }
  const fromConfig = parseDbHost(text(config.dbhost));
  const connection: DatabaseConnection = {
    type,
    name: overrides.name ?? (text(config.dbname) || 'owncloud'),
    user: overrides.user ?? text(config.dbuser),
    password: overrides.password ?? text(config.dbpassword),
    tablePrefix: text(config.dbtableprefix) || 'oc_',
    utf8mb4: config['mysql.utf8mb4'] === true || config['mysql.utf8mb4'] === 'true',
  };
  const explicit = overrides.host !== undefined ? parseDbHost(overrides.host) : fromConfig;
  if (explicit.host && explicit.host !== 'localhost') connection.host = explicit.host;
  if (explicit.host === 'localhost' && type === 'pgsql') connection.host = 'localhost';
  if (explicit.socket) connection.socket = explicit.socket;
  const port = overrides.port ?? explicit.port;
  if (port !== undefined) connection.port = port;
  if (type === 'sqlite') connection.file = `${dataDir}/${connection.name}.db`;
  else if (connection.user === '')
    throw new InputError(
      'No database user: config.php has no dbuser and none was given (db-user).',
    );
  return connection;
}

/**
 * config.php's `apps_paths` as a list: PHP gives a list or (with keys) an object; entries
 * without a usable path are skipped; a relative path is taken within the installation.
 */
export function parseAppsPaths(value: unknown, installDir: string): AppsPath[] {
  if (value === null || typeof value !== 'object') return [];
  const found: AppsPath[] = [];
  for (const entry of Object.values(value as Record<string, unknown>)) {
    if (entry === null || typeof entry !== 'object') continue;
    const { path, url, writable } = entry as Record<string, unknown>;
    if (typeof path !== 'string' || path.trim() === '' || path.includes('\0')) continue;
    const absolute = posix.normalize(path.startsWith('/') ? path : `${installDir}/${path}`);
    const normal = absolute.length > 1 ? absolute.replace(/\/+$/, '') : absolute;
    if (found.some((f) => f.path === normal)) continue;
    found.push({
      path: normal,
      url: typeof url === 'string' ? url : '',
      writable: writable === true || writable === 'true' || writable === 1,
    });
  }
  return found;
}

/** ownCloud and Nextcloud mark their data directory; which marker says which product. */
export function productOf(markers: { ocdata: boolean; ncdata: boolean }, version: string): Product {
  if (markers.ncdata) return 'nextcloud';
  // Nextcloud before 21 used .ocdata too; its versions start at 9 and passed ownCloud's 10 long ago.
  const major = Number(version.split('.')[0]);
  return major >= 11 ? 'nextcloud' : 'owncloud';
}
