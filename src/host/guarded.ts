// Long-running commands on the host (database dumps) are wrapped in a small POSIX sh
// script that (1) takes the secret from the first line of stdin and hands it to the tool
// without any argv seeing it, and (2) keeps watching stdin: when it ends, the client went
// away (cancelled, timed out, link dead), so the dump is stopped instead of left running
// on the server holding a transaction open.
import { BackupError } from '../errors.ts';

/** How the wrapped command receives the secret read from stdin. */
export type SecretDelivery =
  | 'none'
  /** `[client]` option file on fd 3 (`--defaults-extra-file=/dev/fd/3` must be in argv). */
  | 'mysql-option-file'
  /**
   * MYSQL_PWD in the command's environment only (readable by its owner and root): for a
   * password too long for an option-file line.
   */
  | 'mysql-pwd'
  /** libpq's PGPASSWORD, in the dump's environment only (readable by its owner and root). */
  | 'pgpassword';

const SCRIPT = `
mode=$1; shift
IFS= read -r secret || secret=
exec 4<&0
case $mode in
  mysql-option-file)
    "$@" 4<&- </dev/null 3<<OWNCLOUD_BACKUP_EOF &
[client]
password=$secret
OWNCLOUD_BACKUP_EOF
    ;;
  mysql-pwd) MYSQL_PWD=$secret "$@" 4<&- </dev/null & ;;
  pgpassword) PGPASSWORD=$secret "$@" 4<&- </dev/null & ;;
  *) "$@" 4<&- </dev/null & ;;
esac
child=$!
secret=
( while IFS= read -r _ <&4; do :; done; kill -TERM "$child" 2>/dev/null ) >/dev/null 2>&1 </dev/null &
watchdog=$!
exec 4<&-
wait "$child"
status=$?
kill "$watchdog" 2>/dev/null
exit "$status"
`.trim();

/** The argv to run on the host; send `secretLine(...)` as stdin and keep stdin open. */
export function guardedCommand(argv: readonly string[], delivery: SecretDelivery): string[] {
  return ['sh', '-c', SCRIPT, 'owncloud-backup', delivery, ...argv];
}

const INPUT_SCRIPT = `
mode=$1; shift
IFS= read -r secret || secret=
case $mode in
  mysql-option-file)
    exec "$@" 3<<OWNCLOUD_BACKUP_EOF
[client]
password=$secret
OWNCLOUD_BACKUP_EOF
    ;;
  mysql-pwd) MYSQL_PWD=$secret; export MYSQL_PWD; exec "$@" ;;
  pgpassword) PGPASSWORD=$secret; export PGPASSWORD; exec "$@" ;;
  *) exec "$@" ;;
esac
`.trim();

/**
 * For a command that reads data on stdin (a dump being loaded): the wrapper takes the
 * secret from the first line and hands the rest of stdin to the command. The end of stdin
 * is the end of the data here, so there is no watchdog; a load cut short is caught by the
 * checks after it.
 */
export function guardedInputCommand(argv: readonly string[], delivery: SecretDelivery): string[] {
  return ['sh', '-c', INPUT_SCRIPT, 'owncloud-backup', delivery, ...argv];
}

/** argv that runs a command with its stdout written to a file on the host. */
export function writingTo(path: string, argv: readonly string[]): string[] {
  return ['sh', '-c', 'out=$1; shift; exec "$@" > "$out"', 'sh', path, ...argv];
}

/** argv that runs a command with its stdin read from a file on the host. */
export function readingFrom(path: string, argv: readonly string[]): string[] {
  return ['sh', '-c', 'in=$1; shift; exec "$@" < "$in"', 'sh', path, ...argv];
}

/** The first stdin line the wrapper reads: the secret, which must fit on one line. */
export function secretLine(secret: string): string {
  if (/[\r\n\0]/.test(secret))
    throw new BackupError(
      'The database password contains a line break or NUL byte, which no database client accepts.',
    );
  return `${secret}\n`;
}

/** A value in a MySQL option file: double-quoted, with option-file escapes. */
export function mysqlOptionValue(value: string): string {
  return `"${value.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
}
