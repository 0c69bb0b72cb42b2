// This machine's side of a backup: rsync receiving the files and tar packing them. Keeping
// the files' numeric owners needs root here; a runner that is not root (GitHub's hosted
// runners) runs these two through passwordless sudo when it can.
import { rmSync } from 'node:fs';
import { BackupError } from '../errors.ts';
import { runProcess, stderrTail } from './process.ts';

export interface RunnerPrivilege {
  /** argv prefix for commands that write or read the staged files. */
  prefix: string[];
  /** Whether the staged copy (and so the archive) keeps the files' owners. */
  keepsOwners: boolean;
}

export async function runnerPrivilege(): Promise<RunnerPrivilege> {
  if (process.getuid?.() === 0) return { prefix: [], keepsOwners: true };
  const sudo = await runProcess(['sudo', '-n', 'true']).catch(() => undefined);
  if (sudo?.exitCode === 0) return { prefix: ['sudo', '-n', '--'], keepsOwners: true };
  return { prefix: [], keepsOwners: false };
}

/** Removes a tree the elevated commands may have filled with files of other owners. */
export async function removeTree(path: string, privilege: RunnerPrivilege): Promise<void> {
  if (privilege.prefix.length === 0) {
    rmSync(path, { recursive: true, force: true });
    return;
  }
  const result = await runProcess([...privilege.prefix, 'rm', '-rf', '--', path], {
    shielded: true,
  });
  if (result.exitCode !== 0)
    throw new BackupError(`Could not remove ${path}: ${stderrTail(result.stderr)}`);
}
