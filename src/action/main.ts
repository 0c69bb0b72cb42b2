// The action's main step: inputs → plan → backup → artifact → outputs and job summary.
import * as core from '@actions/core';
import { runBackup } from '../backup.ts';
import { resticSecretValues, runResticBackup } from '../backup-restic.ts';
import { uploadBackupArtifact, type StoredArtifact } from '../destination/artifact.ts';
import { InterruptedError } from '../errors.ts';
import { formatBytes } from '../steps/preflight.ts';
import { progressSecondsFrom } from '../progress.ts';
import { actionReporter } from './reporter.ts';
import { actionSettings, readRawInputs } from './inputs.ts';
import { coreState, maintenanceState, STATE, type StateStore } from './state.ts';
import { cancellableStep, trackedSsh } from './step.ts';
import { jobSummary, resticJobSummary } from './summary.ts';
import type { MaintenanceRecord } from '../steps/maintenance.ts';

export async function runMain(state: StateStore = coreState): Promise<void> {
  await cancellableStep(
    'stopping, and restoring maintenance mode.',
    async ({ secrets, signal, runnerTemp }) => {
      const { raw, action } = readRawInputs(secrets);
      const startedAt = new Date();
      const settings = actionSettings(raw, action, runnerTemp, startedAt);
      const reporter = actionReporter((text) => secrets.redact(text));
      const context = {
        reporter,
        secrets,
        signal,
        startedAt,
        progressSeconds: progressSecondsFrom(process.env),
        // The key and known_hosts live there (0600) until the post step removes them, whatever happens.
        ssh: trackedSsh(state, runnerTemp),
        onMaintenance: (record: MaintenanceRecord) =>
          state.save(STATE.maintenance, JSON.stringify(maintenanceState(record))),
      };
      if (settings.plan.restic) {
        for (const value of resticSecretValues(settings.plan.restic)) secrets.add(value);
        const stored = await runResticBackup(settings.plan, context);
        const { manifest } = stored;
        core.setOutput('backup-name', stored.name);
        core.setOutput('restic-snapshot', stored.snapshot);
        core.setOutput('owncloud-version', manifest.instance.version);
        core.setOutput('size-bytes', String(manifest.files.bytes + manifest.database.dumpBytes));
        core.setOutput('maintenance-seconds', String(manifest.maintenance.seconds));
        await core.summary.addRaw(resticJobSummary(stored)).write();
        core.info(`Backup complete: ${stored.name} (manifest snapshot ${stored.snapshot}).`);
        return;
      }

      const result = await runBackup(settings.plan, {
        ...context,
        onWorkDir: (dir) => state.save(STATE.incompleteDir, dir),
      });

      // The backup's own outputs first: a later step can still use it if the upload fails.
      const { manifest } = result;
      core.setOutput('backup-name', manifest.name);
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
      if (signal.aborted) throw new InterruptedError();
      core.setOutput('artifact-name', artifact?.name ?? '');
      core.setOutput('artifact-id', artifact ? String(artifact.id) : '');
      core.setOutput('artifact-url', artifact?.url ?? '');
      core.setOutput('artifact-digest', artifact?.digest ?? '');
      await core.summary
        .addRaw(jobSummary(result, artifact, settings.retentionDays, new Date()))
        .write();
      core.info(`Backup complete: ${result.directory}`);
    },
  );
}
