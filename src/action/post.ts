// The action's post step (post-if: always()): if the main step switched maintenance mode on
// (or was killed while switching it) and did not switch it off, put the prior state back;
// then remove what a killed main step leaves on the runner (its incomplete backup, the key
// and known_hosts files), on every path. A cleanup failure is a warning, not a second error.
import { tmpdir } from 'node:os';
import * as core from '@actions/core';
import { describeError } from '../errors.ts';
import type { Host } from '../host/host.ts';
import { LocalHost } from '../host/local.ts';
import { SshHost } from '../host/ssh.ts';
import { Secrets } from '../secrets.ts';
import { formatBytes } from '../steps/preflight.ts';
import { actionLabel, planBackup } from '../settings.ts';
import { MaintenanceGuard } from '../steps/maintenance.ts';
import { removeIncompleteBackup } from '../steps/backup-dir.ts';
import { cleanUpSsh } from './cleanup.ts';
import { readRawInputs } from './inputs.ts';
import {
  coreState,
  readMaintenanceState,
  readRuntimeDirs,
  STATE,
  type StateStore,
} from './state.ts';
import { newRuntimeDir } from './step.ts';

export async function runPost(state: StateStore = coreState): Promise<void> {
  const secrets = new Secrets((value) => core.setSecret(value));
  const runtimeDirs = readRuntimeDirs(state);
  try {
    const maintenance = readMaintenanceState(state);
    if (!maintenance || maintenance.phase === 'restored') {
      core.info(
        maintenance?.switchedByUs
          ? 'The main step restored maintenance mode; nothing to do.'
          : 'The main step did not switch maintenance mode on; nothing to restore.',
      );
      return;
    }
    core.warning(
      maintenance.phase === 'switching-on'
        ? 'The main step was stopped while switching maintenance mode on (cancelled or killed): checking its state.'
        : 'The main step switched maintenance mode on and did not switch it off (cancelled or killed): switching it off now.',
    );
    // The post step gets the same inputs: the key comes from there, not from main's files.
    const { raw } = readRawInputs(secrets);
    const plan = planBackup(
      raw,
      { backupDir: tmpdir(), destination: 'artifact', environment: process.env },
      actionLabel,
    );
    let host: Host;
    if (plan.target.kind === 'ssh') {
      const runtimeDir = newRuntimeDir();
      runtimeDirs.push(runtimeDir);
      host = await SshHost.connect(plan.target, { runtimeDir });
    } else {
      host = new LocalHost();
    }
    try {
      const found = await MaintenanceGuard.recover(host, maintenance, (m) =>
        core.info(secrets.redact(m)),
      );
      if (found === 'was-prior-state')
        core.info(
          `Maintenance mode is ${maintenance.priorState ? 'on' : 'off'}, as it was before the backup: nothing to restore.`,
        );
    } finally {
      await host.close();
    }
  } catch (error) {
    core.setFailed(secrets.redact(`Could not restore maintenance mode: ${describeError(error)}`));
  } finally {
    const incomplete = state.get(STATE.incompleteDir);
    if (incomplete) {
      try {
        const removed = await removeIncompleteBackup(incomplete);
        if (removed)
          core.info(
            `Removed the incomplete backup the main step left: ${incomplete} (${formatBytes(removed.bytes)}).`,
          );
      } catch (error) {
        core.warning(`Could not remove ${incomplete}: ${describeError(error)}`);
      }
    }
    cleanUpSsh(state, runtimeDirs);
  }
}
