// MySQL and MariaDB: mysqldump --single-transaction (mariadb-dump where mysqldump is gone).
import { mysqlOptionValue } from '../host/guarded.ts';
import type { DatabaseEngine } from './engine.ts';

export const mysql: DatabaseEngine = {
  type: 'mysql',
  programs: ['mysqldump', 'mariadb-dump'],
  restoreHint:
    'mysql -e "CREATE DATABASE \\`{dbName}\\` CHARACTER SET {charset} COLLATE {charset}_general_ci" && set -o pipefail && {decompress} -dc {dump} | mysql {db}',

  dumpCommand({ connection, tool }) {
    const argv = [
      tool.program,
      // Must be the first option; the wrapper feeds the [client] password on fd 3.
      '--defaults-extra-file=/dev/fd/3',
      '--single-transaction',
      '--no-tablespaces',
      '--hex-blob',
      `--default-character-set=${connection.utf8mb4 ? 'utf8mb4' : 'utf8'}`,
    ];
    if (connection.host) argv.push(`--host=${connection.host}`);
    else if (!connection.socket) argv.push('--host=localhost');
    if (connection.port !== undefined) argv.push(`--port=${connection.port}`);
    if (connection.socket) argv.push(`--socket=${connection.socket}`);
    argv.push(`--user=${connection.user}`, '--', connection.name);
    return { argv, delivery: 'mysql-option-file', secret: mysqlOptionValue(connection.password) };
  },

  checkTail(tail) {
    return /-- Dump completed/.test(tail)
      ? undefined
      : "the dump does not end with mysqldump's '-- Dump completed' line: it was cut short";
  },

  explainFailure(stderr, connection) {
    if (/Access denied/i.test(stderr))
      return `MySQL refused user '${connection.user}' (access denied): wrong password or missing rights on '${connection.name}'.`;
    if (/Unknown database/i.test(stderr)) return `MySQL has no database '${connection.name}'.`;
    if (
      /Can't connect|Lost connection|Unknown MySQL server host|server has gone away/i.test(stderr)
    )
      return `Could not reach the MySQL server ${connection.host ?? connection.socket ?? 'localhost'}${connection.port ? `:${connection.port}` : ''} (is it running?).`;
    return undefined;
  },
};
