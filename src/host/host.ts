// The ownCloud host as the rest of the tool sees it: somewhere to run a command and stream
// its output back, reached locally or over SSH. Nothing above this interface knows which.
import { BackupError, LinkError } from '../errors.ts';
import {
  stderrTail,
  type ProcessOptions,
  type ProcessResult,
  type StreamingProcess,
} from './process.ts';

export interface Host {
  /** For messages: `root@cloud.example.com:22`, or `this machine`. */
  readonly label: string;
  /** The account commands run as on the host. */
  readonly account: string;
  /** Runs a command there to its end; never throws for an exit code. */
  run(argv: readonly string[], options?: ProcessOptions): Promise<ProcessResult>;
  /** Starts a command there whose stdout streams back here. */
  stream(argv: readonly string[], options?: ProcessOptions): StreamingProcess;
  /**
   * Why a failed command failed on the way there (the link, not the command), or undefined
   * when the command itself ran and failed.
   */
  transportFailure(result: ProcessResult): string | undefined;
  close(): Promise<void>;
}

/**
 * argv that runs a command as another user on the host: directly when the session already
 * is that user, through runuser when it is root, through non-interactive sudo otherwise.
 */
export function asUser(account: string, user: string, argv: readonly string[]): string[] {
  if (user === account) return [...argv];
  if (account === 'root') return ['runuser', '-u', user, '--', ...argv];
  return ['sudo', '-n', '-u', user, '--', ...argv];
}

/** The result of a command that reached the host; a failure of the link itself is thrown. */
export function reached(host: Host, result: ProcessResult): ProcessResult {
  const transport = host.transportFailure(result);
  if (transport) throw new LinkError(transport);
  return result;
}

/** Runs a command on the host; a non-zero exit is an error naming what was being done. */
export async function mustRun(
  host: Host,
  argv: string[],
  doing: string,
  options: Parameters<Host['run']>[1] = {},
): Promise<ProcessResult> {
  const result = reached(host, await host.run(argv, options));
  if (result.exitCode !== 0)
    throw new BackupError(
      `${doing} failed on ${host.label} (exit ${result.exitCode}): ${stderrTail(result.stderr) || stderrTail(result.stdout) || 'no message'}`,
    );
  return result;
}
