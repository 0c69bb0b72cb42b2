// The environment every command this tool starts gets: this process's own, minus every
// variable that may carry a secret. The tool's inputs (INPUT_* in the action,
// OWNCLOUD_BACKUP_* on the command line) hold the database password and the SSH key, the
// runner's ACTIONS_* and GITHUB_TOKEN hold tokens; a child (occ as the web server's user,
// ssh, rsync, tar, the compressor) needs none of them, and each would show them in
// /proc/PID/environ to its owner. The one command that needs a secret gets it on stdin or
// an fd (src/host/guarded.ts), never from here.

/** Name prefixes of variables the tool or the runner fills with inputs, state and tokens. */
const SECRET_PREFIXES = ['INPUT_', 'STATE_', 'OWNCLOUD_BACKUP_', 'ACTIONS_'];

/**
 * Names that say "credential", whoever set them (GITHUB_TOKEN, NPM_TOKEN, AWS_SECRET_ACCESS_KEY,
 * a runner's own *_PASSWORD, …), and the database clients' own password variables, which
 * would otherwise override the password the tool delivers.
 */
const SECRET_NAME = /TOKEN|SECRET|PASSW|PASSPHRASE|CREDENTIAL|PRIVATE|API_?KEY|AUTH/i;
const CLIENT_PASSWORDS = new Set(['MYSQL_PWD', 'PGPASSWORD']);

/** Whether a variable of this name is kept from every child. */
export function isSecretVariable(name: string): boolean {
  const upper = name.toUpperCase();
  return (
    SECRET_PREFIXES.some((prefix) => upper.startsWith(prefix)) ||
    CLIENT_PASSWORDS.has(upper) ||
    SECRET_NAME.test(name)
  );
}

/** The environment for a child: `parent` without secret-bearing variables, plus `extra`. */
export function childEnvironment(
  parent: NodeJS.ProcessEnv,
  extra: Record<string, string> = {},
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(parent))
    if (value !== undefined && !isSecretVariable(name)) env[name] = value;
  return { ...env, ...extra };
}
