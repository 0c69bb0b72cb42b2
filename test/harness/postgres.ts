import { chownSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import type { DatabaseLogin } from './mariadb.ts';
import type { NetworkHost } from './netns.ts';
import { makeScratchDir } from './scratch.ts';
import { freePort, startServerProcess } from './server-process.ts';
import { pgDbnameArg, pgIdentifier, pgString } from './sql.ts';
import { systemUser } from './accounts.ts';
import { copyFromTemplate } from './template.ts';
import { postgresBinDir, requireTool } from './tools.ts';

export interface PostgresServer {
  readonly engine: 'pgsql';
  readonly host: string;
  readonly port: number;
  /** Directory of the server's Unix socket (libpq's host for a socket connection). */
  readonly socketDir: string;
  readonly pid: number;
  readonly dir: string;
  readonly version: string;
  /** Runs SQL as the superuser over the socket and returns unaligned, tab-separated rows. */
  query(sql: string, database?: string): Promise<string>;
  /** Creates a UTF8 database owned by a new password user. */
  createDatabase(login: DatabaseLogin): Promise<void>;
  stop(): Promise<void>;
}

const SERVICE_USER = 'postgres';

export async function startPostgres(
  options: { network?: NetworkHost } = {},
): Promise<PostgresServer> {
  const bin = postgresBinDir();
  const psql = requireTool('psql');
  const version = (await execa(join(bin, 'postgres'), ['--version'])).stdout.replace(/^\D*/, '');
  const owner = systemUser(SERVICE_USER);

  const scratch = makeScratchDir('postgres');
  // initdb and postgres refuse root: the whole scratch dir belongs to the postgres user.
  chownSync(scratch.path, owner.uid, owner.gid);
  const dataDir = join(scratch.path, 'data');
  await copyFromTemplate(
    `postgres-${version.split(' ')[0]}`,
    async (dir) => {
      const pwfile = join(scratch.path, 'superuser-password');
      writeFileSync(pwfile, `${crypto.randomUUID()}\n`, { mode: 0o600 });
      chownSync(pwfile, owner.uid, owner.gid);
      const parent = dir.replace(/\/data$/, '');
      chownSync(parent, owner.uid, owner.gid);
      await execa(requireTool('setpriv'), [
        `--reuid=${SERVICE_USER}`,
        `--regid=${SERVICE_USER}`,
        '--clear-groups',
        '--',
        join(bin, 'initdb'),
        '-D',
        dir,
        '-U',
        SERVICE_USER,
        `--pwfile=${pwfile}`,
        '-E',
        'UTF8',
        '--locale=C.UTF-8',
        '--auth-local=trust',
        '--auth-host=scram-sha-256',
        '--no-sync',
      ]);
    },
    dataDir,
  );
  await execa('chown', ['-R', `${owner.uid}:${owner.gid}`, dataDir]);

  const host = options.network?.hostAddress ?? '127.0.0.1';
  const port = await freePort();
  const query = async (sql: string, database = 'postgres') =>
    (
      await execa(
        psql,
        [
          '-X',
          '-q',
          '-v',
          'ON_ERROR_STOP=1',
          '-A',
          '-t',
          '-F',
          '\t',
          '-h',
          scratch.path,
          '-p',
          String(port),
          '-U',
          SERVICE_USER,
          pgDbnameArg(database),
        ],
        { input: sql },
      )
    ).stdout;

  const server = await startServerProcess({
    name: 'PostgreSQL',
    runAs: SERVICE_USER,
    argv: [
      join(bin, 'postgres'),
      '-D',
      dataDir,
      '-p',
      String(port),
      '-c',
      `listen_addresses=${host}`,
      '-c',
      `unix_socket_directories=${scratch.path}`,
      '-c',
      'fsync=off',
      '-c',
      'full_page_writes=off',
      '-c',
      'shared_buffers=32MB',
    ],
    network: options.network,
    logPath: join(scratch.path, 'server.log'),
    stopSignal: 'SIGINT',
    ready: async () => (await query('SELECT 1')) === '1',
  });

  return {
    engine: 'pgsql',
    host,
    port,
    socketDir: scratch.path,
    pid: server.pid,
    dir: scratch.path,
    version,
    query,
    async createDatabase(login) {
      const user = pgIdentifier(login.user);
      await query(`CREATE ROLE ${user} LOGIN PASSWORD ${pgString(login.password)};`);
      await query(
        `CREATE DATABASE ${pgIdentifier(login.name)} OWNER ${user} ENCODING 'UTF8' TEMPLATE template0;`,
      );
    },
    async stop() {
      await server.stop();
      scratch.remove();
    },
  };
}

/** A 0600 libpq password file line: ':' and '\' escaped, as libpq requires. */
export function pgpassLine(
  host: string,
  port: number,
  database: string,
  user: string,
  password: string,
): string {
  const escape = (s: string) => s.replaceAll('\\', '\\\\').replaceAll(':', '\\:');
  return [host, String(port), database, user, password].map(escape).join(':') + '\n';
}
