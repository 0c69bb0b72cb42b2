// The file cache rows of single restored files of an encrypted instance: after the scan they
// hold the size on disk and `encrypted = 0` (ownCloud would serve ciphertext); they get the
// values each file had at backup time, from the backup's index, in one transaction through
// the engine's client with the instance's credentials. Only rows of restored files change,
// matched by storage and path hash; a check afterwards proves every one holds its values.
import { createHash } from 'node:crypto';
import type { DatabaseEngine } from '../database/index.ts';
import type { LoadContext } from '../database/engine.ts';
import { BackupError } from '../errors.ts';
import { guardedInputCommand, secretLine } from '../host/guarded.ts';
import { reached, type Host } from '../host/host.ts';
import { stderrTail } from '../host/process.ts';
import { withoutStatements } from './restore-database.ts';

/** The values a restored file's cache row gets, and which row that is. */
export interface CacheRowValues {
  /** The storage's string id, e.g. `home::alice`. */
  storage: string;
  /** The path in the storage, e.g. `files/Documents/report.odt`. */
  path: string;
  encrypted: number;
  size: number;
  unencryptedSize: number;
}

const BATCH = 200;

function hex(text: string): string {
  return Buffer.from(text, 'utf8').toString('hex').toUpperCase();
}

/** ownCloud's path_hash: md5 of the path's bytes. Pure. */
export function pathHash(path: string): string {
  return createHash('md5').update(path, 'utf8').digest('hex');
}

function integer(value: number, what: string): string {
  if (!Number.isSafeInteger(value) || value < 0)
    throw new BackupError(`The backup's encryption index holds an invalid ${what}: ${value}.`);
  return String(value);
}

/**
 * SQL that sets the rows' values in one transaction, then prints `rN` for every given row
 * N that holds them (one a line). Every value is a number, a hex digest or hex
 * digits turned into text by the engine: nothing from a name can change the statement. Pure.
 */
export function cacheValuesSql(
  engine: Pick<DatabaseEngine, 'identifier' | 'textFromHex'>,
  tablePrefix: string,
  rows: readonly CacheRowValues[],
): string {
  const filecache = engine.identifier(`${tablePrefix}filecache`);
  const storages = engine.identifier(`${tablePrefix}storages`);
  const storageOf = (id: string) =>
    `(SELECT ${engine.identifier('numeric_id')} FROM ${storages} WHERE ${engine.identifier('id')} = ${engine.textFromHex(hex(id))})`;
  const where = (row: CacheRowValues) =>
    `${engine.identifier('storage')} = ${storageOf(row.storage)} AND ${engine.identifier('path_hash')} = '${pathHash(row.path)}'`;
  const values = (row: CacheRowValues) =>
    `${engine.identifier('encrypted')} = ${integer(row.encrypted, 'encrypted value')}, ${engine.identifier('size')} = ${integer(row.size, 'size')}, ${engine.identifier('unencrypted_size')} = ${integer(row.unencryptedSize, 'unencrypted size')}`;
  const statements = ['BEGIN;'];
  for (const row of rows)
    statements.push(`UPDATE ${filecache} SET ${values(row)} WHERE ${where(row)};`);
  statements.push('COMMIT;');
  // One line `rN` for each row N that holds its values (path hashes alone could repeat
  // across storages).
  for (let i = 0; i < rows.length; i += BATCH)
    statements.push(
      `${rows
        .slice(i, i + BATCH)
        .map(
          (row, j) =>
            `SELECT 'r${i + j}' FROM ${filecache} WHERE ${where(row)} AND ${values(row).replaceAll(', ', ' AND ')}`,
        )
        .join(' UNION ALL ')};`,
    );
  return `${statements.join('\n')}\n`;
}

/**
 * Gives the rows their values; resolves to the rows that hold them afterwards (all of them,
 * or the error names those that do not: a file the scan did not enter into the cache).
 */
export async function setCacheValues(
  host: Host,
  engine: DatabaseEngine,
  context: LoadContext,
  rows: readonly CacheRowValues[],
): Promise<number> {
  if (rows.length === 0) return 0;
  const command = engine.scriptCommand(context);
  const result = reached(
    host,
    await host.run(guardedInputCommand(command.argv, command.delivery), {
      input:
        secretLine(command.secret) + cacheValuesSql(engine, context.connection.tablePrefix, rows),
      shielded: true,
    }),
  );
  if (result.exitCode !== 0)
    throw new BackupError(
      `Writing the restored files' encryption values into the file cache failed (exit ${result.exitCode}; the transaction was not committed): ${engine.explainFailure(result.stderr, context.connection) ?? (stderrTail(withoutStatements(result.stderr)) || 'no message')}`,
    );
  const holding = new Set(
    result.stdout
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => /^r\d+$/.test(line)),
  );
  const missing = rows.filter((_, n) => !holding.has(`r${n}`));
  if (missing.length > 0)
    throw new BackupError(
      `${missing.length} restored file${missing.length === 1 ? ' has' : 's have'} no file cache row with the recorded encryption values after the scan (${missing
        .slice(0, 5)
        .map((row) => `${row.storage} ${row.path}`)
        .join(
          ', ',
        )}${missing.length > 5 ? ', …' : ''}): ownCloud would serve them as they are on disk. Run occ files:scan for them and restore again.`,
    );
  return rows.length;
}
