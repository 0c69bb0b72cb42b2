/**
 * The one place where an argv becomes shell text. Needed only where a shell is
 * unavoidable: ssh sends its remote command as a string to the remote user's login shell,
 * and rsync's `-e` is split by rsync itself. Each argument is single-quoted, which makes
 * every byte literal in POSIX shells (sh, dash, bash, zsh): no expansion, no globbing.
 */
export function quoteArg(arg: string): string {
  if (arg.includes('\0'))
    throw new Error('an argument contains a NUL byte, which no command line can carry');
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(arg)) return arg;
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

export function quoteCommand(argv: readonly string[]): string {
  if (argv.length === 0) throw new Error('empty command');
  return argv.map(quoteArg).join(' ');
}
