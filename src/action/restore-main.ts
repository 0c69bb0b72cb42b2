// The restore action's main step: inputs and the confirm guard → the artifact downloaded
// and its digest checked → restore → outputs and job summary. What the restore changes is
// journalled into the state, so that the post step can put the previous state back if this
// step is killed.
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import * as core from '@actions/core';
import { downloadBackupArtifact } from '../destination/artifact.ts';
import { InterruptedError } from '../errors.ts';
import { progressSecondsFrom } from '../progress.ts';
import { runRestore } from '../restore.ts';
import { runPathRestore } from '../restore-paths.ts';
import { formatBytes } from '../steps/preflight.ts';
import { actionReporter } from './reporter.ts';
import { readRestoreInputs, restoreActionSettings } from './restore-inputs.ts';
import { pathRestoreSummary, restoreSummary } from './restore-summary.ts';
import { coreState, STATE, type StateStore } from './state.ts';
import { cancellableStep, trackedSsh } from './step.ts';

export async function runRestoreMain(state: StateStore = coreState): Promise<void> {
  await cancellableStep(
    'stopping, and putting the previous state back.',
    async ({ secrets, signal, runnerTemp }) => {
      const { raw, action } = readRestoreInputs(secrets);
      // Everything is checked (the confirm guard first) before anything is downloaded.
      const settings = restoreActionSettings(raw, action);
      const reporter = actionReporter((text) => secrets.redact(text));
      const started = performance.now();

      const downloadDir = mkdtempSync(join(runnerTemp, 'owncloud-restore-artifact-'));
      state.save(STATE.downloadDir, downloadDir);
      const backup = await reporter.group('Download', async () => {
        const downloaded = await downloadBackupArtifact(settings.source, downloadDir);
        const { artifact } = downloaded;
        reporter.info(
          `Artifact '${artifact.name}' (id ${artifact.id}, ${downloaded.from}): ${formatBytes(artifact.size)}, ${downloaded.digestChecked ? `sha256 ${artifact.digest} checked` : 'no digest recorded to check it against (the restore verifies every archive against the manifest)'}`,
        );
        return downloaded;
      });
      if (!backup.digestChecked)
        reporter.warning(
          `The artifact '${backup.artifact.name}' has no recorded digest; its archives are checked against the manifest's SHA-256 sums instead.`,
        );
      if (signal.aborted)
        throw new InterruptedError('The restore was interrupted before it changed anything.');

      state.save(STATE.backupPath, backup.directory);
      const seconds = () => (performance.now() - started) / 1000;
      core.setOutput('artifact-name', backup.artifact.name);
      core.setOutput('artifact-id', String(backup.artifact.id));
      if (settings.plan.kind === 'paths') {
        const result = await runPathRestore(
          { ...settings.plan.restore, backupPath: backup.directory },
          { reporter, secrets, signal, ssh: trackedSsh(state, runnerTemp) },
        );
        core.setOutput('backup-name', result.manifest.name);
        core.setOutput('owncloud-version', result.manifest.instance.version);
        core.setOutput('previous-state', result.previous ?? '');
        await core.summary.addRaw(pathRestoreSummary(result, backup, seconds())).write();
        core.info(
          `Restore complete: ${result.placed.length} files from ${result.manifest.name} into ${result.target}`,
        );
        return;
      }
      const plan = { ...settings.plan.restore, backupPath: backup.directory };
      const result = await runRestore(plan, {
        reporter,
        secrets,
        signal,
        progressSeconds: progressSecondsFrom(process.env),
        ssh: trackedSsh(state, runnerTemp),
        onJournal: (journal) => state.save(STATE.restoreJournal, JSON.stringify(journal)),
      });

      core.setOutput('backup-name', result.manifest.name);
      core.setOutput('owncloud-version', result.manifest.instance.version);
      core.setOutput('previous-state', (result.previous?.paths ?? []).join('\n'));
      await core.summary.addRaw(restoreSummary(result, backup, seconds())).write();
      core.info(`Restore complete: ${result.manifest.name} onto ${result.target}`);
    },
  );
}
