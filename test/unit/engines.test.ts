import { describe, expect, it } from 'vitest';
import { engineFor } from '../../src/database/index.ts';
import type { DatabaseConnection } from '../../src/instance.ts';

const PASSWORD = `p'w "x" $(id) \\ é`;
const base: Omit<DatabaseConnection, 'type'> = {
  name: 'owncloud',
  user: 'oc',
  password: PASSWORD,
  tablePrefix: 'oc_',
  utf8mb4: true,
};
const context = (connection: DatabaseConnection, program: string) => ({
  connection,
  tool: { program, version: '' },
  account: 'root',
  owner: 'www-data',
});

describe('every engine builds a dump command without the password in its argv', () => {
  it('mysql: --single-transaction, utf8mb4, the option file first, the password on stdin', () => {
    const command = engineFor('mysql').dumpCommand(
      context({ ...base, type: 'mysql', host: '10.0.0.5', port: 3307 }, 'mariadb-dump'),
    );
    expect(command.argv).toEqual([
      'mariadb-dump',
      '--defaults-extra-file=/dev/fd/3',
      '--single-transaction',
      '--no-tablespaces',
      '--hex-blob',
      '--default-character-set=utf8mb4',
      '--host=10.0.0.5',
      '--port=3307',
      '--user=oc',
      '--',
      'owncloud',
    ]);
    expect(command.delivery).toBe('mysql-option-file');
    expect(command.secret).toBe(`"p'w \\"x\\" $(id) \\\\ é"`);
    expect(command.argv.join(' ')).not.toContain(PASSWORD);
  });

  it('mysql: a socket, and utf8 when the instance is not utf8mb4', () => {
    const argv = engineFor('mysql').dumpCommand(
      context(
        { ...base, type: 'mysql', socket: '/run/mysqld/mysqld.sock', utf8mb4: false },
        'mysqldump',
      ),
    ).argv;
    expect(argv).toContain('--socket=/run/mysqld/mysqld.sock');
    expect(argv).toContain('--default-character-set=utf8');
    expect(argv).not.toContain('--host=localhost');
  });

  it('pgsql: pg_dump never prompts, the password goes to PGPASSWORD through stdin', () => {
    const command = engineFor('pgsql').dumpCommand(
      context({ ...base, type: 'pgsql', socket: '/var/run/postgresql', port: 5433 }, 'pg_dump'),
    );
    expect(command.argv).toEqual([
      'env',
      'PGCONNECT_TIMEOUT=15',
      'PGAPPNAME=owncloud-backup',
      'pg_dump',
      '--no-password',
      '--host=/var/run/postgresql',
      '--port=5433',
      '--username=oc',
      "--dbname=dbname='owncloud'",
      '--format=plain',
    ]);
    expect(command).toMatchObject({ delivery: 'pgpassword', secret: PASSWORD });
  });

  it('sqlite: sqlite3 -readonly FILE .dump as the owner of the instance', () => {
    const command = engineFor('sqlite').dumpCommand(
      context({ ...base, type: 'sqlite', file: '/srv/data/owncloud.db' }, 'sqlite3'),
    );
    expect(command.argv).toEqual([
      'runuser',
      '-u',
      'www-data',
      '--',
      'sqlite3',
      '-readonly',
      '-bail',
      '-cmd',
      '.timeout 5000',
      '/srv/data/owncloud.db',
      '.dump',
    ]);
    expect(command).toMatchObject({ delivery: 'none', secret: '' });
  });
});

describe('a dump counts as complete only with its engine’s trailer', () => {
  it.each([
    ['mysql', '...\n-- Dump completed on 2026-11-26 10:00:00\n', true],
    ['mysql', "INSERT INTO `oc_users` VALUES ('a'", false],
    ['pgsql', '--\n-- PostgreSQL database dump complete\n--\n\n', true],
    ['pgsql', 'COPY public.oc_users (uid) FROM stdin;\nalice\n', false],
    ['sqlite', 'INSERT INTO x VALUES(1);\nCOMMIT;\n', true],
    ['sqlite', '/**** ERROR: (5) database is locked *****/\nROLLBACK; -- due to errors\n', false],
    ['sqlite', 'INSERT INTO x VALUES(1);\n', false],
  ] as const)('%s: %j', (type, tail, complete) => {
    expect(engineFor(type).checkTail(tail) === undefined).toBe(complete);
  });
});

describe('failures are explained in words', () => {
  it.each([
    [
      'mysql',
      "mysqldump: Got error: 1045: \"Access denied for user 'oc'@'localhost' (using password: YES)\"",
      "MySQL refused user 'oc' (access denied)",
    ],
    [
      'mysql',
      "mysqldump: Got error: 2002: \"Can't connect to server on '127.0.0.1' (115)\"",
      'Could not reach the MySQL server 127.0.0.1:1',
    ],
    [
      'pgsql',
      'pg_dump: error: connection to server at "127.0.0.1", port 5432 failed: FATAL:  password authentication failed for user "oc"',
      "PostgreSQL refused user 'oc' (password authentication failed).",
    ],
    ['sqlite', 'Error: database is locked', 'The SQLite database is locked by another process.'],
  ] as const)('%s: %s', (type, stderr, message) => {
    expect(
      engineFor(type).explainFailure(stderr, { ...base, type, host: '127.0.0.1', port: 1 }),
    ).toContain(message);
  });
});
