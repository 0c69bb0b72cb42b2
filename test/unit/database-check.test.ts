// What each engine runs to check its database before a backup, and how a database name,
// an over-long password or a missing SQLite file are handled: pure argv and messages.
import { describe, expect, it } from 'vitest';
import { engineFor } from '../../src/database/index.ts';
import { OPTION_LINE_LIMIT } from '../../src/database/mysql.ts';
import { dbnameOption } from '../../src/database/pgsql.ts';
import { mysqlOptionValue } from '../../src/host/guarded.ts';
import type { DatabaseConnection } from '../../src/instance.ts';

const base: Omit<DatabaseConnection, 'type'> = {
  name: 'owncloud',
  user: 'oc',
  password: `p'w "x" $(id) \\ é`,
  tablePrefix: 'oc_',
  utf8mb4: true,
};
const context = (connection: DatabaseConnection, program: string) => ({
  connection,
  tool: { program, version: '' },
  account: 'root',
  owner: 'www-data',
});
const result = (exitCode: number, stdout: string, stderr = '') => ({ exitCode, stdout, stderr });

describe('a PostgreSQL database name is only ever a database name', () => {
  it.each([
    ['owncloud', "--dbname=dbname='owncloud'"],
    ['host=evil.example port=1', "--dbname=dbname='host=evil.example port=1'"],
    ["it's", "--dbname=dbname='it\\'s'"],
    ['back\\slash', "--dbname=dbname='back\\\\slash'"],
    ["a = 'b' \\' c", "--dbname=dbname='a = \\'b\\' \\\\\\' c'"],
    ['postgresql://evil/db', "--dbname=dbname='postgresql://evil/db'"],
  ])('%j becomes %s', (name, option) => {
    expect(dbnameOption(name)).toBe(option);
  });

  it('pg_dump and the check pass it as --dbname, never as a bare argument', () => {
    const name = "oc = 'x' host=/tmp";
    const connection = { ...base, type: 'pgsql' as const, name, host: '10.0.0.5' };
    const engine = engineFor('pgsql');
    for (const { argv } of [
      engine.dumpCommand(context(connection, 'pg_dump')),
      engine.checkCommand(context(connection, 'pg_dump')),
    ]) {
      expect(argv).not.toContain(name);
      expect(argv.filter((a) => a.includes('dbname'))).toEqual([dbnameOption(name)]);
      expect(argv).not.toContain('--');
    }
  });
});

describe('the check before the backup uses the dump’s credentials and delivery', () => {
  it('mysql: the client beside the dump tool, SELECT 1, the option file on fd 3', () => {
    const connection = { ...base, type: 'mysql' as const, host: '10.0.0.5', port: 3307 };
    const engine = engineFor('mysql');
    const dump = engine.dumpCommand(context(connection, 'mariadb-dump'));
    const check = engine.checkCommand(context(connection, 'mariadb-dump'));
    expect(check).toEqual({
      program: 'mariadb',
      argv: [
        'mariadb',
        '--defaults-extra-file=/dev/fd/3',
        '--batch',
        '--skip-column-names',
        '--connect-timeout=15',
        '--host=10.0.0.5',
        '--port=3307',
        '--user=oc',
        '--execute=SELECT 1',
        '--',
        'owncloud',
      ],
      delivery: dump.delivery,
      secret: dump.secret,
    });
    expect(engine.checkCommand(context(connection, 'mysqldump')).program).toBe('mysql');
  });

  it('pgsql: psql with pg_dump’s environment, options and PGPASSWORD', () => {
    const connection = { ...base, type: 'pgsql' as const, socket: '/run/postgresql', port: 5433 };
    const check = engineFor('pgsql').checkCommand(context(connection, 'pg_dump'));
    expect(check).toEqual({
      program: 'psql',
      argv: [
        'env',
        'PGCONNECT_TIMEOUT=15',
        'PGAPPNAME=owncloud-backup',
        'psql',
        '--no-password',
        '--host=/run/postgresql',
        '--port=5433',
        '--username=oc',
        "--dbname=dbname='owncloud'",
        '--no-psqlrc',
        '--quiet',
        '--tuples-only',
        '--no-align',
        '--command=SELECT 1',
      ],
      delivery: 'pgpassword',
      secret: base.password,
    });
  });

  it.each(['mysql', 'pgsql'] as const)('%s: only the answer 1 passes', (type) => {
    const engine = engineFor(type);
    const ctx = context({ ...base, type, host: '127.0.0.1', port: 1 }, 'x');
    expect(engine.checkProblem(result(0, '1\n'), ctx)).toBeUndefined();
    expect(engine.checkProblem(result(0, ''), ctx)).toMatch(/could not query 'owncloud'/);
    expect(engine.checkProblem(result(1, '', 'weird failure'), ctx)).toMatch(/weird failure$/);
  });

  it.each([
    [
      'mysql',
      "ERROR 1045 (28000): Access denied for user 'oc'@'localhost' (using password: YES)",
      "MySQL refused user 'oc' (access denied): wrong password or missing rights on 'owncloud'.",
    ],
    [
      'mysql',
      "ERROR 2002 (HY000): Can't connect to server on '127.0.0.1' (115)",
      'Could not reach the MySQL server 127.0.0.1:1 (is it running?).',
    ],
    [
      'mysql',
      "ERROR 1049 (42000): Unknown database 'owncloud'",
      "MySQL has no database 'owncloud'.",
    ],
    [
      'pgsql',
      'psql: error: connection to server at "127.0.0.1", port 1 failed: Connection refused',
      'Could not reach the PostgreSQL server 127.0.0.1:1',
    ],
    [
      'pgsql',
      'psql: error: connection to server at "127.0.0.1", port 1 failed: FATAL:  password authentication failed for user "oc"',
      "PostgreSQL refused user 'oc' (password authentication failed).",
    ],
  ] as const)('%s: %s', (type, stderr, message) => {
    const ctx = context({ ...base, type, host: '127.0.0.1', port: 1 }, 'x');
    expect(
      engineFor(type).checkProblem(result(type === 'mysql' ? 1 : 2, '', stderr), ctx),
    ).toContain(message);
  });
});

describe('a MySQL password too long for an option-file line still reaches the client', () => {
  const lineOf = (password: string) => `password=${mysqlOptionValue(password)}`;
  const fits = 'a'.repeat(OPTION_LINE_LIMIT - lineOf('').length);
  const tooLong = `${fits}b`;

  it.each([
    ['the longest that fits', fits, 'mysql-option-file'],
    ['one byte more', tooLong, 'mysql-pwd'],
    ['with escapes that push it over', `${fits.slice(1)}"`, 'mysql-pwd'],
    ['5,000 bytes', `${'pw "q" \\ é '.repeat(500)}`, 'mysql-pwd'],
  ])('%s', (_label, password, delivery) => {
    const connection = { ...base, type: 'mysql' as const, password };
    const engine = engineFor('mysql');
    for (const command of [
      engine.dumpCommand(context(connection, 'mysqldump')),
      engine.checkCommand(context(connection, 'mysqldump')),
    ]) {
      expect(command.delivery).toBe(delivery);
      expect(command.argv.join(' ')).not.toContain(password.slice(0, 40));
      if (delivery === 'mysql-option-file') {
        expect(command.argv[1]).toBe('--defaults-extra-file=/dev/fd/3');
        expect(command.secret).toBe(mysqlOptionValue(password));
        expect(Buffer.byteLength(`password=${command.secret}`)).toBeLessThanOrEqual(
          OPTION_LINE_LIMIT,
        );
      } else {
        expect(command.argv.some((a) => a.startsWith('--defaults-extra-file'))).toBe(false);
        expect(command.secret).toBe(password);
      }
    }
  });
});

describe('SQLite: read-only, and a missing or foreign file is named before the backup', () => {
  const connection = {
    ...base,
    type: 'sqlite' as const,
    name: 'owncloud',
    file: '/srv/data/owncloud.db',
  };
  const engine = engineFor('sqlite');
  const ctx = context(connection, 'sqlite3');

  it('the dump opens the database read-only, as the instance’s owner', () => {
    const { argv } = engine.dumpCommand(ctx);
    expect(argv.slice(0, 6)).toEqual(['runuser', '-u', 'www-data', '--', 'sqlite3', '-readonly']);
    expect(argv.slice(-2)).toEqual(['/srv/data/owncloud.db', '.dump']);
  });

  it('the check looks at the file as the owner, without opening it as a database', () => {
    const check = engine.checkCommand(ctx);
    expect(check.argv.slice(0, 6)).toEqual(['runuser', '-u', 'www-data', '--', 'sh', '-c']);
    expect(check.argv.at(-1)).toBe('/srv/data/owncloud.db');
    expect(check.argv.join(' ')).not.toContain('sqlite3');
  });

  it.each([
    ['sqlite', undefined],
    [
      'missing',
      "The SQLite database file '/srv/data/owncloud.db' does not exist: check dbname and datadirectory in config.php (or the db-name and data-dir inputs).",
    ],
    [
      'empty',
      "The SQLite database file '/srv/data/owncloud.db' is empty (0 bytes), not the instance's database: check dbname and datadirectory in config.php (or the db-name and data-dir inputs).",
    ],
    [
      'other',
      "The file '/srv/data/owncloud.db' is not an SQLite 3 database (it lacks the 'SQLite format 3' header): check dbname and datadirectory in config.php (or the db-name and data-dir inputs).",
    ],
    [
      'not-a-file',
      "The SQLite database '/srv/data/owncloud.db' is not a regular file: check dbname and datadirectory in config.php (or the db-name and data-dir inputs).",
    ],
    [
      'unreadable',
      "The SQLite database file '/srv/data/owncloud.db' is not readable by www-data, the instance's owner.",
    ],
  ])('%s', (word, message) => {
    expect(engine.checkProblem(result(0, `${word}\n`), ctx)).toBe(message);
  });
});
