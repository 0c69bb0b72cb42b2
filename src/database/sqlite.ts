// SQLite: `sqlite3 DB .dump`, as ownCloud's documentation says. sqlite3 exits 0 even when
// the database is locked, writing an ERROR comment and `ROLLBACK; -- due to errors`: the
// dump is judged by its content, not the exit code.
import { asUser } from '../host/host.ts';
import type { DatabaseEngine } from './engine.ts';

export const sqlite: DatabaseEngine = {
  type: 'sqlite',
  programs: ['sqlite3'],
  restoreHint: '(set -o pipefail && umask 027 && {decompress} -dc {dump} | sqlite3 -bail {dbFile})',
  errorMarker: '/**** ERROR:',

  dumpCommand({ connection, tool, account, owner }) {
    // As the instance's owner, so a journal sqlite3 may create is not left owned by root.
    const argv = asUser(account, owner, [
      tool.program,
      '-bail',
      '-cmd',
      '.timeout 5000',
      connection.file!,
      '.dump',
    ]);
    return { argv, delivery: 'none', secret: '' };
  },

  checkTail(tail) {
    if (tail.includes('ROLLBACK; -- due to errors'))
      return 'sqlite3 rolled the dump back because of errors (is the database locked?)';
    return /COMMIT;\s*$/.test(tail)
      ? undefined
      : "the dump does not end with 'COMMIT;': it was cut short";
  },

  explainFailure(stderr) {
    if (/database is locked/i.test(stderr))
      return 'The SQLite database is locked by another process.';
    if (/unable to open|no such file/i.test(stderr))
      return 'sqlite3 could not open the database file.';
    if (/not a database|malformed/i.test(stderr))
      return 'The SQLite database file is damaged (not a database, or malformed).';
    return undefined;
  },
};
