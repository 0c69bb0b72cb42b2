// PostgreSQL: the host's own pg_dump (its version matches the server), never prompting.
import type { DatabaseEngine } from './engine.ts';

export const pgsql: DatabaseEngine = {
  type: 'pgsql',
  programs: ['pg_dump'],
  restoreHint:
    'runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -c "CREATE DATABASE \\"{dbName}\\" OWNER \\"{dbUser}\\" ENCODING \'UTF8\' TEMPLATE template0" && set -o pipefail && {decompress} -dc {dump} | runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d {db} >/dev/null',

  dumpCommand({ connection, tool }) {
    const argv = [
      'env',
      'PGCONNECT_TIMEOUT=15',
      'PGAPPNAME=owncloud-backup',
      tool.program,
      '--no-password',
      '--format=plain',
    ];
    const host = connection.socket ?? connection.host;
    if (host) argv.push(`--host=${host}`);
    if (connection.port !== undefined) argv.push(`--port=${connection.port}`);
    argv.push(`--username=${connection.user}`, '--', connection.name);
    return { argv, delivery: 'pgpassword', secret: connection.password };
  },

  checkTail(tail) {
    return /-- PostgreSQL database dump complete/.test(tail)
      ? undefined
      : "the dump does not end with pg_dump's 'PostgreSQL database dump complete' line: it was cut short";
  },

  explainFailure(stderr, connection) {
    if (/password authentication failed|no password supplied/i.test(stderr))
      return `PostgreSQL refused user '${connection.user}' (password authentication failed).`;
    if (/database ".*" does not exist/i.test(stderr))
      return `PostgreSQL has no database '${connection.name}'.`;
    if (/permission denied/i.test(stderr))
      return `User '${connection.user}' may not read every table of '${connection.name}' (permission denied).`;
    if (
      /could not connect|Connection refused|timeout expired|server closed the connection|terminating connection/i.test(
        stderr,
      )
    )
      return `Could not reach the PostgreSQL server ${connection.socket ?? connection.host ?? 'on the default socket'}${connection.port ? `:${connection.port}` : ''}, or it went away during the dump.`;
    return undefined;
  },
};
