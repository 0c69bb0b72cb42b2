// What both actions' main steps share: the secret registry, cancellation (the runner sends
// SIGINT, then SIGTERM) turned into an aborted signal, every error into one failed message;
// and the runner directory for the SSH key, known to the post step before it is used.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as core from '@actions/core';
import { describeError } from '../errors.ts';
import type { SshOptions } from '../host/ssh.ts';
import { Secrets } from '../secrets.ts';
import { STATE, type StateStore } from './state.ts';

export interface StepContext {
  secrets: Secrets;
  /** Aborted when the run is cancelled. */
  signal: AbortSignal;
  /** RUNNER_TEMP: the runner's directory for this job's files. */
  runnerTemp: string;
}

/** Runs a main step; `onCancel` says what the step does when cancelled. */
export async function cancellableStep(
  onCancel: string,
  work: (step: StepContext) => Promise<void>,
): Promise<void> {
  const secrets = new Secrets((value) => core.setSecret(value));
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) return;
    core.warning(`${signal} received (the run was cancelled): ${onCancel}`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await work({
      secrets,
      signal: controller.signal,
      runnerTemp: process.env.RUNNER_TEMP || tmpdir(),
    });
  } catch (error) {
    core.setFailed(secrets.redact(describeError(error)));
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** A new directory for an SSH key and known_hosts (0700) under RUNNER_TEMP. */
export function newRuntimeDir(runnerTemp: string = process.env.RUNNER_TEMP || tmpdir()): string {
  return mkdtempSync(join(runnerTemp, 'owncloud-backup-ssh-'));
}

/**
 * SSH options whose key directory and master connection the post step knows about (saved
 * before they exist), so that it removes them whatever happens to main.
 */
export function trackedSsh(state: StateStore, runnerTemp: string): SshOptions {
  const runtimeDir = newRuntimeDir(runnerTemp);
  state.save(STATE.runtimeDirs, JSON.stringify([runtimeDir]));
  return {
    runtimeDir,
    onMaster: (master) => state.save(STATE.sshMasters, JSON.stringify([master])),
  };
}
