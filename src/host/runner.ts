// This machine's side of a backup: rsync receiving the files and tar packing them. Keeping
// the files' numeric owners needs root here; a runner that is not root (GitHub's hosted
// runners) runs these two through passwordless sudo when it can.
import { rmSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { BackupError } from '../errors.ts';
import { runProcess, stderrTail } from './process.ts';
import { elevateReaper } from './reaper.ts';

export interface RunnerPrivilege {
  /** argv prefix for commands that must read or remove files of every owner on this machine. */
  prefix: string[];
  /** Whether that prefix gives root (root itself, or passwordless sudo). */
  keepsOwners: boolean;
}

export async function runnerPrivilege(): Promise<RunnerPrivilege> {
  if (process.getuid?.() === 0) return { prefix: [], keepsOwners: true };
  const sudo = await runProcess(['sudo', '-n', 'true']).catch(() => undefined);
  if (sudo?.exitCode === 0) {
    const prefix = ['sudo', '-n', '--'];
    // Children run as root through sudo: only a root watcher can kill them if we die.
    elevateReaper(prefix);
    return { prefix, keepsOwners: true };
  }
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

/** Whether an error (from Node, or a tool's stderr) means the disk is full. */
export function isNoSpace(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return true;
  return typeof error === 'string' && /No space left on device|Disk quota exceeded/.test(error);
}

/**
 * The message for a full disk on this machine, with the free space left where `path` is
 * written: the cause, not the compressor's SIGPIPE that follows it.
 */
export function noSpaceError(path: string): BackupError {
  let free = '';
  try {
    const stats = statfsSync(dirname(path));
    free = ` (${stats.bavail * stats.bsize} bytes free)`;
  } catch {
    // the message stays useful without the number
  }
  return new BackupError(`No space left on device writing ${path}${free}.`);
}
