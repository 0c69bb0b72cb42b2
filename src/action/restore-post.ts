// The restore action's post step (post-if: always()): if main was killed while it was
// changing the target (its journal says moving-aside or replacing), put the previous state
// back; then remove what main left on the runner (the download, the key files, an SSH
// master connection), on every path. A cleanup failure is a warning, not a second error.
import * as core from '@actions/core';
import { INPUTS } from '../settings.ts';
import { describeError } from '../errors.ts';
import { rollBackRestore } from '../restore.ts';
import { Secrets } from '../secrets.ts';
import { cleanUpSsh, removeFromRunner } from './cleanup.ts';
import { actionReporter } from './reporter.ts';
import { readRestoreInputs, restoreActionSettings } from './restore-inputs.ts';
import { coreState, readRestoreJournal, readRuntimeDirs, STATE, type StateStore } from './state.ts';
import { newRuntimeDir } from './step.ts';

const NOTHING_TO_DO: Record<string, string> = {
  none: 'The main step changed nothing on the target; nothing to put back.',
  preparing: 'The main step stopped before it changed the target; nothing to put back.',
  done: 'The main step finished the restore; nothing to put back.',
  'rolled-back': 'The main step put the previous state back itself; nothing to do.',
};

export async function runRestorePost(state: StateStore = coreState): Promise<void> {
  const secrets = new Secrets((value) => core.setSecret(value));
  const runtimeDirs = readRuntimeDirs(state);
  let kept: string[] = [];
  try {
    const journal = readRestoreJournal(state);
    const phase = journal?.phase ?? 'none';
    if (!journal && core.getInput(INPUTS.path) !== '') {
      core.info(
        'A restore of single paths puts back what it moved itself if it fails; nothing to do.',
      );
      return;
    }
    if (!journal || (phase !== 'moving-aside' && phase !== 'replacing')) {
      core.info(NOTHING_TO_DO[phase] ?? `The restore's journal says '${phase}'; nothing to do.`);
      return;
    }
    core.warning(
      `The main step was stopped while ${phase === 'moving-aside' ? 'moving the current state aside' : 'replacing the instance'} (cancelled or killed): putting the previous state back.`,
    );
    kept = journal.containers;
    // The post step gets the same inputs: the key comes from there, not from main's files.
    const { raw, action } = readRestoreInputs(secrets);
    const settings = restoreActionSettings(raw, action);
    // Only a restore of the whole instance keeps a journal (single paths undo their own moves).
    if (settings.plan.kind !== 'instance') return;
    const plan = { ...settings.plan.restore, backupPath: state.get(STATE.backupPath) };
    const runtimeDir = newRuntimeDir();
    runtimeDirs.push(runtimeDir);
    await rollBackRestore(plan, journal, {
      reporter: actionReporter((text) => secrets.redact(text)),
      secrets,
      ssh: { runtimeDir },
    });
    core.info('The previous state is back: files, database and maintenance mode as before.');
  } catch (error) {
    core.setFailed(
      secrets.redact(
        `Could not put the previous state back: ${describeError(error)}${kept.length ? ` The previous state is still kept on the target in: ${kept.join(', ')}.` : ''}`,
      ),
    );
  } finally {
    const downloadDir = state.get(STATE.downloadDir);
    if (downloadDir) removeFromRunner(downloadDir, 'the downloaded artifact');
    cleanUpSsh(state, runtimeDirs);
  }
}
