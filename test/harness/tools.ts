import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Where Debian keeps tools that are not on a normal PATH. */
const EXTRA_DIRS = ['/usr/sbin', '/sbin', '/usr/lib/postgresql/15/bin'];

/** The Debian package that provides each tool the harness drives. */
const PACKAGES: Record<string, string> = {
  mariadbd: 'mariadb-server',
  'mariadb-install-db': 'mariadb-server',
  'mariadb-admin': 'mariadb-client',
  mariadb: 'mariadb-client',
  'mariadb-dump': 'mariadb-client',
  initdb: 'postgresql',
  postgres: 'postgresql',
  psql: 'postgresql-client',
  pg_dump: 'postgresql-client',
  sshd: 'openssh-server',
  ssh: 'openssh-client',
  'ssh-keygen': 'openssh-client',
  rsync: 'rsync',
  sqlite3: 'sqlite3',
  php: 'php-cli',
  setfacl: 'acl',
  getfacl: 'acl',
  setfattr: 'attr',
  getfattr: 'attr',
  ip: 'iproute2',
  setpriv: 'util-linux',
  setsid: 'util-linux',
  zstd: 'zstd',
  sudo: 'sudo',
  useradd: 'passwd',
  restic: 'restic',
  rclone: 'rclone',
  openssl: 'openssl',
};

export class MissingToolError extends Error {}

/**
 * The absolute path of a tool the harness needs, or an error that names the tool and the
 * Debian package that provides it.
 */
export function requireTool(name: string): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), ...EXTRA_DIRS];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; keep looking
    }
  }
  const pkg = PACKAGES[name];
  throw new MissingToolError(
    `The test harness needs '${name}', which is not installed` +
      (pkg ? `: install the Debian package ${pkg} (script/bootstrap does).` : '.'),
  );
}

/** The directory holding PostgreSQL's server binaries (initdb, postgres). */
export function postgresBinDir(): string {
  return requireTool('initdb').replace(/\/initdb$/, '');
}
