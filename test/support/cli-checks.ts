// What the end-to-end tests read off a run of the command: its one error line, everything
// it printed (for an assertion's message), how maintenance mode was switched, and the
// options that point it at a test sshd.
import { expect } from 'vitest';
import type { SshServer } from '../harness/sshd.ts';
import type { SampleInstance } from '../sample/instance.ts';
import type { WatchedRun } from './backup-run.ts';

/** Exit status and output, for an assertion's message. */
export function explain(run: WatchedRun): string {
  return `exit ${run.exitCode} ${run.signal ?? ''}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
}

/** The one error line the command printed (there must be exactly one). */
export function errorLine(run: WatchedRun): string {
  const lines = run.stderr.split('\n').filter((l) => l.startsWith('owncloud-backup: error:'));
  expect(lines, explain(run)).toHaveLength(1);
  return lines[0]!;
}

/** The maintenance mode switches occ was asked for, as `USER maintenance:mode --on|--off`. */
export function occSwitches(instance: SampleInstance): string[] {
  return instance
    .occCalls()
    .map((c) => `${c.user} ${c.args.join(' ')}`)
    .filter((c) => c.includes('--on') || c.includes('--off'));
}

/** The command's options for a backup over SSH through this server. */
export function sshArgs(server: SshServer): string[] {
  return [
    '--host',
    server.host,
    '--port',
    String(server.port),
    '--ssh-key-file',
    server.privateKeyPath,
    '--known-hosts-file',
    server.knownHostsPath,
  ];
}
