// The row counts a backup records: how each engine's one counting command is built, and how
// its output is read back (the same functions check a restored database later).
import { describe, expect, it } from 'vitest';
import { parseRowCountLines, prefixHex } from '../../src/database/engine.ts';
import { engineFor } from '../../src/database/index.ts';
import type { DatabaseConnection } from '../../src/instance.ts';
import type { DatabaseType } from '../../src/settings.ts';

const PASSWORD = `p'w "x" $(id) \\ é`;
/** A prefix that is a LIKE pattern and breaks naive string literals in every engine. */
const PREFIX = `o_%'"\\\`x_`;

function connection(type: DatabaseType, tablePrefix = 'oc_'): DatabaseConnection {
  return {
    type,
    name: 'owncloud',
    user: 'oc',
    password: PASSWORD,
    tablePrefix,
    utf8mb4: true,
    ...(type === 'sqlite' ? { file: '/srv/data/owncloud.db' } : { host: '127.0.0.1' }),
  };
}

const hex = (name: string) => Buffer.from(name, 'utf8').toString('hex');

describe('row count lines are read back exactly', () => {
  it('every table name, whatever it holds, and its count', () => {
    const names = [
      'oc_users',
      'oc_odd `"\' name',
      'oc_tab\there',
      'oc_line\nbreak',
      'oc_\\x',
      'oc_日本',
    ];
    const stdout = names.map((n, i) => `${hex(n)}\t${i * 1000}\n`).join('');
    expect(parseRowCountLines(stdout)).toEqual(
      Object.fromEntries(names.map((n, i) => [n, i * 1000])),
    );
  });

  it('upper- or lower-case hex, CRLF line ends, no final newline, blank lines', () => {
    expect(parseRowCountLines(`${hex('oc_a').toUpperCase()}\t3\r\n\n${hex('oc_b')}\t0`)).toEqual({
      oc_a: 3,
      oc_b: 0,
    });
  });

  it('no tables: no lines, no counts', () => {
    expect(parseRowCountLines('')).toEqual({});
    expect(parseRowCountLines('\n')).toEqual({});
  });

  it.each([
    ['a name that is not hex', 'oc_users\t3'],
    ['an odd number of hex digits', '6f635\t3'],
    ['no count', `${hex('oc_a')}\t`],
    ['a count that is not a whole number', `${hex('oc_a')}\t-1`],
    ['a client message instead of counts', 'ERROR 1146 (42S02): Table does not exist'],
  ])('%s is refused, quoting the line', (_what, line) => {
    expect(() => parseRowCountLines(`${hex('oc_ok')}\t1\n${line}\n`)).toThrow(
      `Unexpected line in the table row counts (expected HEXNAME<TAB>COUNT): '${line}'`,
    );
  });

  it('each engine reads its counts with the shared parser', () => {
    for (const type of ['mysql', 'pgsql', 'sqlite'] as const)
      expect(engineFor(type).parseRowCounts(`${hex('oc_x')}\t7\n`)).toEqual({ oc_x: 7 });
  });
});

describe('each engine counts in one client invocation, the prefix only as data', () => {
  it('the prefix travels as the hex of its UTF-8 bytes', () => {
    expect(prefixHex('oc_')).toBe('6F635F');
    expect(prefixHex('')).toBe('');
    expect(prefixHex('é')).toBe('C3A9');
  });

  it('mysql: the client beside the dump tool, the password on stdin, one prepared statement', () => {
    const context = {
      connection: connection('mysql', PREFIX),
      tool: { program: 'mariadb-dump', version: '' },
      account: 'root',
      owner: 'www-data',
    };
    const command = engineFor('mysql').rowCountsCommand(context);
    expect(command.program).toBe('mariadb');
    expect(command.argv.slice(0, 2)).toEqual(['mariadb', '--defaults-extra-file=/dev/fd/3']);
    expect(command.argv.slice(-2)).toEqual(['--', 'owncloud']);
    expect(command.delivery).toBe('mysql-option-file');
    expect(command.argv.join(' ')).not.toContain(PASSWORD);
    const sql = command.argv.find((a) => a.startsWith('--execute='))!;
    // Names quoted as identifiers by the server, backticks doubled; no per-table round trip.
    expect(sql).toContain("REPLACE(table_name, '`', '``')");
    expect(sql).toContain('SET SESSION group_concat_max_len = 67108864');
    expect(sql).toContain('EXECUTE owncloud_backup_counts');
    expect(sql).toContain(`X'${prefixHex(PREFIX)}'`);
    expect(sql).not.toContain(PREFIX);
    expect(sql).not.toMatch(/\bLIKE\b/);
    expect(
      engineFor('mysql').rowCountsCommand({
        ...context,
        tool: { program: 'mysqldump', version: '' },
      }).program,
    ).toBe('mysql');
  });

  it('pgsql: psql, PGPASSWORD through stdin, one snapshot, names quoted by format %I', () => {
    const command = engineFor('pgsql').rowCountsCommand({
      connection: connection('pgsql', PREFIX),
      tool: { program: 'pg_dump', version: '' },
      account: 'root',
      owner: 'www-data',
    });
    expect(command.program).toBe('psql');
    expect(command.delivery).toBe('pgpassword');
    expect(command.secret).toBe(PASSWORD);
    expect(command.argv.join(' ')).not.toContain(PASSWORD);
    expect(command.argv).toContain('--no-password');
    expect(command.argv).toContain('--set=ON_ERROR_STOP=1');
    expect(command.argv).toContain('--command=BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const sql = command.argv.at(-1)!;
    expect(sql).toContain("format('SELECT count(*) AS n FROM %I.%I', table_schema, table_name)");
    expect(sql).toContain(`decode('${prefixHex(PREFIX)}', 'hex')`);
    expect(sql).not.toContain(PREFIX);
    expect(sql).not.toMatch(/\bLIKE\b/);
  });

  it('sqlite: sqlite3 read-only on the live file, as the instance owner, no secret', () => {
    const command = engineFor('sqlite').rowCountsCommand({
      connection: connection('sqlite', PREFIX),
      tool: { program: 'sqlite3', version: '' },
      account: 'root',
      owner: 'www-data',
    });
    expect(command.program).toBe('sqlite3');
    expect(command.delivery).toBe('none');
    expect(command.argv.slice(0, 6)).toEqual(['runuser', '-u', 'www-data', '--', 'sh', '-c']);
    const script = command.argv[6]!;
    expect(script.match(/"\$1" -readonly -bail/g)).toHaveLength(2);
    expect(command.argv.slice(7, 10)).toEqual(['sh', 'sqlite3', '/srv/data/owncloud.db']);
    const sql = command.argv[10]!;
    expect(sql).toContain(`replace(name, '"', '""')`);
    expect(sql).toContain(`CAST(X'${prefixHex(PREFIX)}' AS TEXT)`);
    expect(sql).not.toContain(PREFIX);
    expect(command.argv).toHaveLength(11);
  });
});
