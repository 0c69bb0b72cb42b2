// The sample instance's database, reached with each engine's own command-line client as
// an administrator would, for filling it and for reading it back in tests.
import { execFile } from 'node:child_process';
import type { MariaDbServer } from '../harness/mariadb.ts';
import type { PostgresServer } from '../harness/postgres.ts';
import { requireTool } from '../harness/tools.ts';
import type { Engine } from './schema.ts';

export interface SampleDatabase {
  readonly engine: Engine;
  /** Runs SQL (as an administrator) and returns rows of tab-separated fields. */
  query(sql: string): Promise<string[][]>;
  /** Every row of a table, sorted, one string per row: for comparing two databases. */
  tableRows(table: string): Promise<string[]>;
  /** Table names in the database, sorted. */
  tables(): Promise<string[]>;
}

/**
 * Runs a program with input on stdin and resolves to its stdout without the final newline.
 * Node's own child_process, so that the sample (and the demo built on it) needs no npm package.
 */
export function runWithInput(program: string, args: string[], input: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      program,
      args,
      { encoding: 'utf8', maxBuffer: 1024 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`${program} failed: ${stderr.trim() || error.message}`));
        else resolve(stdout.replace(/\r?\n$/, ''));
      },
    );
    child.stdin!.end(input);
  });
}

function rows(output: string): string[][] {
  return output === '' ? [] : output.split('\n').map((line) => line.split('\t'));
}

export function sqliteDatabase(file: string): SampleDatabase {
  const run = (sql: string) =>
    runWithInput(
      requireTool('sqlite3'),
      ['-batch', '-bail', '-noheader', '-separator', '\t', file],
      sql,
    );
  return {
    engine: 'sqlite',
    query: async (sql) => rows(await run(sql)),
    tables: async () =>
      (
        await run(
          "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name;",
        )
      )
        .split('\n')
        .filter(Boolean),
    // quote() renders every value unambiguously (NULL, numbers, escaped strings, blobs).
    tableRows: async (table) => {
      const columns = (
        await run(
          `SELECT name FROM pragma_table_info('${table.replaceAll("'", "''")}') ORDER BY cid;`,
        )
      ).split('\n');
      const expression = columns
        .map((c) => `quote("${c.replaceAll('"', '""')}")`)
        .join(" || '|' || ");
      return (await run(`SELECT ${expression} FROM "${table.replaceAll('"', '""')}";`))
        .split('\n')
        .filter(Boolean)
        .sort();
    },
  };
}

/** Undoes the escaping of the mariadb client's batch output (\\, \t, \n, \0). */
function unescapeBatchField(field: string): string {
  return field.replace(/\\(.)/g, (_, c: string) => ({ t: '\t', n: '\n', '0': '\0' })[c] ?? c);
}

export function mysqlDatabase(server: MariaDbServer, database: string): SampleDatabase {
  const run = (sql: string) => server.query(sql, database);
  return {
    engine: 'mysql',
    query: async (sql) => rows(await run(sql)).map((row) => row.map(unescapeBatchField)),
    tables: async () => (await run('SHOW TABLES;')).split('\n').filter(Boolean).sort(),
    tableRows: async (table) => {
      const columns = (await run(`SHOW COLUMNS FROM \`${table.replaceAll('`', '``')}\`;`))
        .split('\n')
        .map((l) => l.split('\t')[0]!);
      const expression = columns
        .map((c) => `QUOTE(\`${c.replaceAll('`', '``')}\`)`)
        .join(", '|', ");
      return (
        await run(`SELECT CONCAT_WS('', ${expression}) FROM \`${table.replaceAll('`', '``')}\`;`)
      )
        .split('\n')
        .filter(Boolean)
        .sort();
    },
  };
}

export function pgsqlDatabase(server: PostgresServer, database: string): SampleDatabase {
  const run = (sql: string) => server.query(sql, database);
  return {
    engine: 'pgsql',
    query: async (sql) => rows(await run(sql)),
    tables: async () =>
      (await run("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename;"))
        .split('\n')
        .filter(Boolean),
    // Row-to-JSON renders every value unambiguously.
    tableRows: async (table) =>
      (await run(`SELECT row_to_json(t)::text FROM "${table.replaceAll('"', '""')}" t;`))
        .split('\n')
        .filter(Boolean)
        .sort(),
  };
}
