// What every post step removes from the runner, on every path: directories main left
// (key files, downloads, incomplete backups) and SSH master connections of a killed main.
// A cleanup failure is a warning, never a second error.
import { rmSync } from 'node:fs';
import * as core from '@actions/core';
import { describeError } from '../errors.ts';
import { endOrphanedMaster } from '../host/ssh.ts';
import { readSshMasters, type StateStore } from './state.ts';

/** Removes a directory main left on the runner; `what` says what it held. */
export function removeFromRunner(dir: string, what: string): void {
  try {
    rmSync(dir, { recursive: true, force: true });
    core.info(`Removed ${dir} (${what}).`);
  } catch (error) {
    core.warning(`Could not remove ${dir}: ${describeError(error)}`);
  }
}

/** Ends the SSH connections main left open, then removes the key and known_hosts files. */
export function cleanUpSsh(state: StateStore, runtimeDirs: string[]): void {
  for (const master of readSshMasters(state))
    if (endOrphanedMaster(master))
      core.info(`Ended the SSH connection the main step left open (pid ${master.pid}).`);
  for (const dir of runtimeDirs) removeFromRunner(dir, 'SSH key and known_hosts');
}
