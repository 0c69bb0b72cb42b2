// The action's post step (post-if: always()): if the main step switched maintenance mode on
// and could not switch it off (cancelled, killed), switch it off now; then remove the key
// and known_hosts files, on every path. A cleanup failure is a warning, not a second error.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as core from '@actions/core';
import { describeError } from '../errors.ts';
import type { Host } from '../host/host.ts';
import { LocalHost } from '../host/local.ts';
import { endOrphanedMaster, SshHost } from '../host/ssh.ts';
import { Secrets } from '../secrets.ts';
import { actionLabel, planBackup } from '../settings.ts';
import { MaintenanceGuard } from '../steps/maintenance.ts';
import { readRawInputs } from './inputs.ts';
import {
  coreState,
  readMaintenanceState,
  readRuntimeDirs,
  readSshMasters,
  type StateStore,
} from './state.ts';

export async function runPost(state: StateStore = coreState): Promise<void> {
  const secrets = new Secrets((value) => core.setSecret(value));
  const runtimeDirs = readRuntimeDirs(state);
  try {
    const maintenance = readMaintenanceState(state);
    if (!maintenance?.switchedByUs || maintenance.restored) {
      core.info(
        maintenance?.switchedByUs
          ? 'The main step restored maintenance mode; nothing to do.'
          : 'The main step did not switch maintenance mode on; nothing to restore.',
      );
      return;
    }
    core.warning(
      'The main step switched maintenance mode on and did not switch it off (cancelled or killed): switching it off now.',
    );
    // The post step gets the same inputs: the key comes from there, not from main's files.
    const { raw } = readRawInputs(secrets);
    const plan = planBackup(raw, { backupDir: tmpdir() }, actionLabel);
    let host: Host;
    if (plan.target.kind === 'ssh') {
      const runtimeDir = mkdtempSync(
        join(process.env.RUNNER_TEMP || tmpdir(), 'owncloud-backup-ssh-'),
      );
      runtimeDirs.push(runtimeDir);
      host = await SshHost.connect(plan.target, { runtimeDir });
    } else {
      host = new LocalHost();
    }
    try {
      const guard = MaintenanceGuard.adopt(
        host,
        { installDir: maintenance.installDir, user: maintenance.occUser },
        (m) => core.info(secrets.redact(m)),
      );
      await guard.restore();
    } finally {
      await host.close();
    }
  } catch (error) {
    core.setFailed(secrets.redact(`Could not restore maintenance mode: ${describeError(error)}`));
  } finally {
    for (const master of readSshMasters(state))
      if (endOrphanedMaster(master))
        core.info(`Ended the SSH connection the main step left open (pid ${master.pid}).`);
    for (const dir of runtimeDirs) {
      try {
        rmSync(dir, { recursive: true, force: true });
        core.info(`Removed ${dir} (SSH key and known_hosts).`);
      } catch (error) {
        core.warning(`Could not remove ${dir}: ${describeError(error)}`);
      }
    }
  }
}
