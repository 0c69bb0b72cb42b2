// The restore action's inputs, read once and validated up front: the instance and restore
// inputs through planRestore (shared with the command line), then what only the action has:
// which artifact to restore, and the `confirm` guard. Nothing is downloaded before all of
// it is valid; every error names the input and the form expected.
import { InputError } from '../errors.ts';
import type { Secrets } from '../secrets.ts';
import {
  actionLabel,
  INPUTS,
  planPathRestore,
  planRestore,
  type PathRestorePlan,
  type RawInputs,
  type RestorePlan,
} from '../settings.ts';
import type { ArtifactSource } from '../destination/artifact.ts';
import { checkArtifactName, readRawInputs } from './inputs.ts';

/** Inputs only the restore action has. */
export const RESTORE_ACTION_INPUTS = {
  artifactName: 'artifact-name',
  runId: 'run-id',
  repository: 'repository',
  githubToken: 'github-token',
  confirm: 'confirm',
} as const;

export interface RestoreActionSettings {
  /**
   * The restore (of the whole instance, or of single paths with the path input); its
   * backupPath is the downloaded artifact's directory, known after the download.
   */
  plan: { kind: 'instance'; restore: RestorePlan } | { kind: 'paths'; restore: PathRestorePlan };
  /** Which artifact to download. */
  source: ArtifactSource;
  /** The `confirm` input, equal to the target's host (or `local`). */
  confirmed: string;
}

/** Reads the restore action's inputs; the secrets among them (github-token too) are masked at once. */
export function readRestoreInputs(secrets: Secrets): {
  raw: RawInputs;
  action: Record<string, string>;
} {
  return readRawInputs(secrets, Object.values(RESTORE_ACTION_INPUTS), [
    RESTORE_ACTION_INPUTS.githubToken,
  ]);
}

/** What `confirm` must be for these inputs: the host input as given, or `local` without one. */
export function expectedConfirmation(raw: RawInputs): string {
  return (raw[INPUTS.host] ?? '').trim() || 'local';
}

function fail(name: string, message: string): never {
  throw new InputError(`Invalid input '${name}': ${message}`);
}

/**
 * Validates everything; `env` gives the repository default (GITHUB_REPOSITORY). The guard
 * comes first: a copy-pasted workflow aimed at the wrong server says so before anything else.
 */
export function restoreActionSettings(
  raw: RawInputs,
  action: Record<string, string>,
  env: NodeJS.ProcessEnv = process.env,
): RestoreActionSettings {
  const I = RESTORE_ACTION_INPUTS;
  const given = (name: string) => (action[name] ?? '').trim();

  const expected = expectedConfirmation(raw);
  const confirm = given(I.confirm);
  const where = expected === 'local' ? 'the host input is empty: this runner' : 'the host input';
  if (confirm === '')
    fail(
      I.confirm,
      `it is empty, and must be the target '${expected}' (${where}) to confirm that the instance there is overwritten.`,
    );
  if (confirm !== expected)
    fail(
      I.confirm,
      `'${confirm}' is not the target '${expected}' (${where}). Nothing was downloaded or changed; set confirm to exactly the host this restore overwrites.`,
    );

  const plan: RestoreActionSettings['plan'] =
    (raw[INPUTS.path] ?? '').trim() !== ''
      ? { kind: 'paths', restore: planPathRestore(raw, '', actionLabel) }
      : { kind: 'instance', restore: planRestore(raw, '', actionLabel) };
  if (plan.kind === 'instance')
    for (const name of [INPUTS.asCopy, INPUTS.overwrite])
      if (!['', 'false'].includes((raw[name] ?? '').trim().toLowerCase()))
        fail(name, `it applies with input '${INPUTS.path}' only (a restore of single paths).`);

  const source: ArtifactSource = {};
  const name = given(I.artifactName);
  if (name !== '') {
    checkArtifactName(name);
    source.name = name;
  }

  const runId = given(I.runId);
  const repository = given(I.repository);
  const token = given(I.githubToken);
  if (runId === '') {
    if (repository !== '')
      fail(
        I.repository,
        `it only applies with input '${I.runId}' (the workflow run whose artifact to restore).`,
      );
    if (token !== '')
      fail(
        I.githubToken,
        `it only applies with input '${I.runId}' (this run's own artifacts need no token).`,
      );
    return { plan, source, confirmed: confirm };
  }
  if (!/^[1-9]\d{0,18}$/.test(runId) || !Number.isSafeInteger(Number(runId)))
    fail(
      I.runId,
      `'${runId}' is not a workflow run id. Expected the number in the run's URL (…/actions/runs/<id>).`,
    );
  const fullName = repository || (env.GITHUB_REPOSITORY ?? '').trim();
  const parts = /^([A-Za-z0-9_.-]+)\/([A-Za-z0-9_.-]+)$/.exec(fullName);
  if (!parts)
    fail(
      I.repository,
      repository
        ? `'${repository}' is not a repository. Expected owner/name.`
        : 'not given, and GITHUB_REPOSITORY is not set. Expected owner/name.',
    );
  if (token === '')
    fail(
      I.githubToken,
      `a token that may read the run's artifacts (actions: read) is required with input '${I.runId}', e.g. \${{ github.token }}.`,
    );
  source.findBy = {
    workflowRunId: Number(runId),
    repositoryOwner: parts[1]!,
    repositoryName: parts[2]!,
    token,
  };
  return { plan, source, confirmed: confirm };
}
