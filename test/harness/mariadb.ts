import { chmodSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { mysqlOptionValue } from '../../src/host/guarded.ts';
import type { NetworkHost } from './netns.ts';
import { makeScratchDir } from './scratch.ts';
import { freePort, startServerProcess } from './server-process.ts';
import { mysqlIdentifier, mysqlString } from './sql.ts';
import { copyFromTemplate } from './template.ts';
import { requireTool } from './tools.ts';

export interface DatabaseLogin {
  name: string;
  user: string;
  password: string;
}

export interface MariaDbServer {
  readonly engine: 'mariadb';
  /** TCP address the server listens on (127.0.0.1, or the namespace host's address). */
  readonly host: string;
  readonly port: number;
  readonly socket: string;
  readonly pid: number;
  readonly dir: string;
  readonly version: string;
  /** Runs SQL as the server's root (socket auth) and returns tab-separated rows. */
  query(sql: string, database?: string): Promise<string>;
  /** Creates a utf8mb4 database and a password user with all rights on it. */
  createDatabase(login: DatabaseLogin): Promise<void>;
  stop(): Promise<void>;
}

// Options shared by install-db and the server, so the template matches what runs.
const SERVER_OPTIONS = [
  '--innodb-buffer-pool-size=64M',
  '--innodb-log-file-size=16M',
  '--skip-log-bin',
  '--skip-performance-schema',
  '--character-set-server=utf8mb4',
  '--collation-server=utf8mb4_general_ci',
];

export async function startMariaDb(
  options: { network?: NetworkHost } = {},
): Promise<MariaDbServer> {
  const mariadbd = requireTool('mariadbd');
  const installDb = requireTool('mariadb-install-db');
  const client = requireTool('mariadb');
  const version = (await execa(mariadbd, ['--version'])).stdout.replace(/^.*Ver\s+(\S+).*$/s, '$1');

  const scratch = makeScratchDir('mariadb');
  const dataDir = join(scratch.path, 'data');
  const socket = join(scratch.path, 'mysqld.sock');
  await copyFromTemplate(
    `mariadb-${version}`,
    async (dir) => {
      await execa(installDb, [
        '--no-defaults',
        `--datadir=${dir}`,
        '--user=root',
        '--auth-root-authentication-method=socket',
        '--skip-test-db',
        ...SERVER_OPTIONS,
      ]);
    },
    dataDir,
  );
  mkdirSync(join(scratch.path, 'tmp'));

  const host = options.network?.hostAddress ?? '127.0.0.1';
  const port = await freePort();
  const rootArgs = [
    '--no-defaults',
    `--socket=${socket}`,
    '--user=root',
    '--batch',
    '--skip-column-names',
  ];
  const query = async (sql: string, database?: string) =>
    (await execa(client, [...rootArgs, ...(database ? [database] : [])], { input: sql })).stdout;

  const server = await startServerProcess({
    name: 'MariaDB',
    argv: [
      mariadbd,
      '--no-defaults',
      `--datadir=${dataDir}`,
      `--socket=${socket}`,
      `--port=${port}`,
      `--bind-address=${host}`,
      `--tmpdir=${join(scratch.path, 'tmp')}`,
      `--pid-file=${join(scratch.path, 'mysqld.pid')}`,
      '--user=root',
      ...SERVER_OPTIONS,
    ],
    network: options.network,
    logPath: join(scratch.path, 'server.log'),
    stopSignal: 'SIGTERM',
    ready: async () =>
      statSync(socket, { throwIfNoEntry: false }) !== undefined &&
      (await query('SELECT 1')) === '1',
  });

  return {
    engine: 'mariadb',
    host,
    port,
    socket,
    pid: server.pid,
    dir: scratch.path,
    version,
    query,
    async createDatabase(login) {
      const db = mysqlIdentifier(login.name);
      const statements = [`CREATE DATABASE ${db} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;`];
      // ownCloud connects over TCP (127.0.0.1 or a namespace address) or the socket (localhost).
      for (const from of ['localhost', '127.0.0.1', '%']) {
        const account = `${mysqlString(login.user)}@${mysqlString(from)}`;
        statements.push(`CREATE USER ${account} IDENTIFIED BY ${mysqlString(login.password)};`);
        statements.push(`GRANT ALL PRIVILEGES ON ${db}.* TO ${account};`);
      }
      await query(statements.join('\n'));
    },
    async stop() {
      await server.stop();
      scratch.remove();
    },
  };
}

/** A 0600 client option file, so no password is ever on a command line. */
export function writeMariaDbClientConfig(path: string, user: string, password: string): void {
  rmSync(path, { force: true });
  const quote = mysqlOptionValue;
  writeFileSync(path, `[client]\nuser=${quote(user)}\npassword=${quote(password)}\n`, {
    mode: 0o600,
  });
  chmodSync(path, 0o600);
}
