// restic on the host, with its secrets (the repository string, which may carry a REST
// server's password, the repository password, the backends' keys) delivered on stdin: no
// argv on either side shows them, no file on disk holds them. The wrapper is a sibling of
// guarded.ts: it reads the secrets from the first lines of stdin, gives the password to
// restic as a file on fd 3 (a here-document: a pipe in dash), exports the repository and
// the backend variables into restic's environment only (the wrapper's own
// /proc/PID/environ is the one it started with), and then either keeps watching stdin and
// stops restic when it ends (the client went away), or hands the rest of stdin to restic
// as the data of `backup --stdin`.
import { BackupError } from '../errors.ts';

/** How restic's stdin is used once the secrets are read. */
export type ResticStdin =
  /** restic reads nothing; the end of stdin means the client went away: restic is stopped. */
  | 'watch'
  /** The rest of stdin is restic's data (`backup --stdin`). */
  | 'data';

// Every value is read with `read -r` into a variable and only ever expanded inside double
// quotes or a here-document, which expand it once and never again: any byte but newline
// and NUL arrives as it was. restic is stopped with SIGINT, on which it removes its lock.
const SCRIPT = `
mode=$1; count=$2; shift 2
IFS= read -r RESTIC_REPOSITORY || exit 125
IFS= read -r secret || exit 125
export RESTIC_REPOSITORY
RESTIC_PASSWORD_FILE=/dev/fd/3; export RESTIC_PASSWORD_FILE
while [ "$count" -gt 0 ]; do
  IFS= read -r name || exit 125
  IFS= read -r value || exit 125
  case $name in
    ''|[!A-Z_]*|*[!A-Z0-9_]*) echo "owncloud-backup: invalid variable name" >&2; exit 125 ;;
  esac
  export "$name=$value"
  count=$((count - 1))
done
value=
if [ "$mode" = data ]; then
  exec "$@" 3<<OWNCLOUD_BACKUP_EOF
$secret
OWNCLOUD_BACKUP_EOF
fi
exec 4<&0
"$@" 4<&- </dev/null 3<<OWNCLOUD_BACKUP_EOF &
$secret
OWNCLOUD_BACKUP_EOF
child=$!
secret=
( while IFS= read -r _ <&4; do :; done; kill -INT "$child" 2>/dev/null ) >/dev/null 2>&1 </dev/null &
watchdog=$!
exec 4<&-
wait "$child"
status=$?
kill "$watchdog" 2>/dev/null
exit "$status"
`.trim();

/** What the wrapper reads from stdin before anything else. */
export interface ResticSecrets {
  repository: string;
  password: string;
  /** Variables for restic's environment, name → value. */
  env: Record<string, string>;
}

/** Names of variables restic would take instead of (or besides) what the wrapper sets. */
const RESERVED = new Set([
  'RESTIC_REPOSITORY',
  'RESTIC_REPOSITORY_FILE',
  'RESTIC_PASSWORD',
  'RESTIC_PASSWORD_FILE',
  'RESTIC_PASSWORD_COMMAND',
  'IFS',
]);

export const VARIABLE_NAME = /^[A-Z_][A-Z0-9_]*$/;

/** The argv that runs restic (`argv`, the program first) under the wrapper on the host. */
export function guardedResticCommand(
  argv: readonly string[],
  stdin: ResticStdin,
  secrets: ResticSecrets,
): string[] {
  return [
    'sh',
    '-c',
    SCRIPT,
    'owncloud-backup',
    stdin,
    String(Object.keys(secrets.env).length),
    ...argv,
  ];
}

function oneLine(value: string, what: string): string {
  if (/[\r\n\0]/.test(value))
    throw new BackupError(`${what} contains a line break or NUL byte, which restic cannot take.`);
  return value;
}

/**
 * The first stdin lines the wrapper reads. Refuses, naming the value but never showing it,
 * what cannot travel as one line, and passwords restic itself would change: restic 0.14
 * strips the spaces at the start and end of a password file.
 */
export function resticSecretLines(secrets: ResticSecrets): string {
  const lines = [
    oneLine(secrets.repository, 'The restic repository'),
    oneLine(secrets.password, 'The restic password'),
  ];
  if (secrets.repository === '') throw new BackupError('The restic repository is empty.');
  if (secrets.password === '') throw new BackupError('The restic password is empty.');
  if (secrets.password.trim() !== secrets.password)
    throw new BackupError(
      'The restic password starts or ends with white space, which restic strips from a password file: remove it (and change the repository key with restic key passwd if it was made with it).',
    );
  for (const [name, value] of Object.entries(secrets.env)) {
    if (!VARIABLE_NAME.test(name))
      throw new BackupError(
        `The restic environment variable name '${name}' is not valid: use capital letters, digits and '_', not starting with a digit.`,
      );
    if (RESERVED.has(name))
      throw new BackupError(
        `The restic environment variable ${name} cannot be set: the tool gives restic its repository and password itself.`,
      );
    lines.push(name, oneLine(value, `The value of the restic environment variable ${name}`));
  }
  return `${lines.join('\n')}\n`;
}
