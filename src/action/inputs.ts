// The action's inputs, read once and validated up front into the backup plan plus what
// only the action has (the artifact). Every error names the input and the form expected.
import * as core from '@actions/core';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { backupName } from '../naming.ts';
import type { Secrets } from '../secrets.ts';
import {
  actionLabel,
  CLI_ONLY,
  INPUTS,
  planBackup,
  type BackupPlan,
  type RawInputs,
} from '../settings.ts';

/** Inputs only the action has. */
export const ACTION_INPUTS = {
  artifactName: 'artifact-name',
  retentionDays: 'retention-days',
  upload: 'upload',
} as const;

export interface ActionSettings {
  plan: BackupPlan;
  /** Whether to upload the backup as a workflow artifact. */
  upload: boolean;
  artifactName: string;
  /** 0 = the repository's default retention. */
  retentionDays: number;
}

// Characters the artifact service refuses in a name.
const FORBIDDEN_IN_NAME = /[":<>|*?\r\n\\/]/;

const PASSWORDS: readonly string[] = [
  INPUTS.dbPassword,
  INPUTS.dbAdminPassword,
  INPUTS.resticPassword,
];

/**
 * Reads the raw inputs, masking the secrets among them before anything else happens; then
 * the inputs only this action has (`actionInputs`; those named in `secretInputs` masked too).
 */
export function readRawInputs(
  secrets: Secrets,
  actionInputs: readonly string[] = Object.values(ACTION_INPUTS),
  secretInputs: readonly string[] = [],
): {
  raw: RawInputs;
  action: Record<string, string>;
} {
  const raw: RawInputs = {};
  for (const name of Object.values(INPUTS)) {
    // Not declared in action.yml: an undeclared `with:` key must not reach the plan.
    if (CLI_ONLY.includes(name)) continue;
    // Secrets and lists keep their whitespace; getInput would trim a password.
    const value = PASSWORDS.includes(name)
      ? core.getInput(name, { trimWhitespace: false }).replace(/\r?\n$/, '')
      : core.getInput(name);
    if (value !== '') raw[name] = value;
  }
  for (const name of [...PASSWORDS, INPUTS.sshKey, INPUTS.identity])
    secrets.add(raw[name as keyof RawInputs]);
  const action: Record<string, string> = {};
  for (const name of actionInputs) {
    action[name] = core.getInput(name);
    if (secretInputs.includes(name)) secrets.add(action[name]);
  }
  return { raw, action };
}

/** Refuses a name the artifact service would refuse (after the work, at upload). */
export function checkArtifactName(name: string): void {
  if (FORBIDDEN_IN_NAME.test(name))
    throw new InputError(
      `Invalid input 'artifact-name': '${name.replace(/[\r\n]/g, ' ')}' contains a character artifacts cannot have. Not allowed: " : < > | * ? \\ / and line breaks.`,
    );
  if (name.length > 256)
    throw new InputError("Invalid input 'artifact-name': longer than 256 characters.");
}

export function actionSettings(
  raw: RawInputs,
  action: Record<string, string>,
  runnerTemp: string,
  startedAt: Date,
): ActionSettings {
  const plan = planBackup(
    raw,
    {
      backupDir: join(runnerTemp, 'owncloud-backup'),
      restoreTest: true,
      destination: 'artifact',
      environment: process.env,
    },
    actionLabel,
  );

  const name = (action[ACTION_INPUTS.artifactName] ?? '').trim() || backupName(startedAt);
  checkArtifactName(name);

  const retention = (action[ACTION_INPUTS.retentionDays] ?? '').trim() || '0';
  if (
    !/^\d+$/.test(retention) ||
    (Number(retention) !== 0 && (Number(retention) < 1 || Number(retention) > 90))
  )
    throw new InputError(
      `Invalid input 'retention-days': '${retention}' is not a number of days from 1 to 90 (or 0 for the repository's default).`,
    );

  const upload = (action[ACTION_INPUTS.upload] ?? '').trim().toLowerCase() || 'true';
  if (!['true', 'false'].includes(upload))
    throw new InputError(
      `Invalid input 'upload': '${upload}' is not a boolean. Expected true or false.`,
    );

  return { plan, upload: upload === 'true', artifactName: name, retentionDays: Number(retention) };
}
