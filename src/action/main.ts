// The action's main step: inputs → plan → backup → artifact → outputs and job summary.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as core from '@actions/core';
import { runBackup } from '../backup.ts';
import { uploadBackupArtifact, type StoredArtifact } from '../destination/artifact.ts';
import { describeError, InterruptedError } from '../errors.ts';
import { formatBytes } from '../steps/preflight.ts';
import { progressSecondsFrom } from '../progress.ts';
import { Secrets } from '../secrets.ts';
import { actionReporter } from './reporter.ts';
import { actionSettings, readRawInputs } from './inputs.ts';
import { coreState, maintenanceState, STATE, type StateStore } from './state.ts';
import { jobSummary } from './summary.ts';

export async function runMain(state: StateStore = coreState): Promise<void> {
  const secrets = new Secrets((value) => core.setSecret(value));
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) return;
    core.warning(
      `${signal} received (the run was cancelled): stopping, and restoring maintenance mode.`,
    );
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const { raw, action } = readRawInputs(secrets);
    const startedAt = new Date();
    const runnerTemp = process.env.RUNNER_TEMP || tmpdir();
    const settings = actionSettings(raw, action, runnerTemp, startedAt);
    const reporter = actionReporter((text) => secrets.redact(text));

    // The key and known_hosts live here (0600) until the post step removes them, whatever happens.
    const runtimeDir = mkdtempSync(join(runnerTemp, 'owncloud-backup-ssh-'));
    state.save(STATE.runtimeDirs, JSON.stringify([runtimeDir]));

    const result = await runBackup(settings.plan, {
      reporter,
      secrets,
      signal: controller.signal,
      startedAt,
      progressSeconds: progressSecondsFrom(process.env),
      ssh: {
        runtimeDir,
        onMaster: (master) => state.save(STATE.sshMasters, JSON.stringify([master])),
      },
      onMaintenance: (record) =>
        state.save(STATE.maintenance, JSON.stringify(maintenanceState(record))),
      onWorkDir: (dir) => state.save(STATE.incompleteDir, dir),
    });

    // The backup's own outputs first: a later step can still use it if the upload fails.
    const { manifest } = result;
    core.setOutput('backup-dir', result.directory);
    core.setOutput('manifest', result.manifestPath);
    core.setOutput('db-dump', result.dumpPath);
    core.setOutput('owncloud-version', manifest.instance.version);
    core.setOutput('size-bytes', String(result.sizeBytes));
    core.setOutput('maintenance-seconds', String(manifest.maintenance.seconds));

    let artifact: StoredArtifact | undefined;
    if (settings.upload) {
      artifact = await reporter.group('Upload', async () => {
        const stored = await uploadBackupArtifact(
          result.directory,
          settings.artifactName,
          settings.retentionDays,
        );
        reporter.info(
          `Artifact '${stored.name}' (id ${stored.id}): ${formatBytes(stored.size)}, sha256 ${stored.digest}`,
        );
        return stored;
      });
    }
    if (controller.signal.aborted) throw new InterruptedError();
    core.setOutput('artifact-name', artifact?.name ?? '');
    core.setOutput('artifact-id', artifact ? String(artifact.id) : '');
    core.setOutput('artifact-url', artifact?.url ?? '');
    core.setOutput('artifact-digest', artifact?.digest ?? '');
    await core.summary
      .addRaw(jobSummary(result, artifact, settings.retentionDays, new Date()))
      .write();
    core.info(`Backup complete: ${result.directory}`);
  } catch (error) {
    core.setFailed(secrets.redact(describeError(error)));
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
