// Runs the committed action bundles exactly as the GitHub runner does: inputs as INPUT_*
// variables (name upper-cased, hyphens kept), GITHUB_OUTPUT / GITHUB_STATE /
// GITHUB_STEP_SUMMARY files, RUNNER_TEMP; the post step gets main's state as STATE_*.
// The script is the one the action's action.yml names, resolved from the action's directory
// as the runner resolves it (the restore sub-action's `../dist/...`).
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import type { SshServer } from '../harness/sshd.ts';
import type { SampleInstance } from '../sample/instance.ts';
import { watchRun, type WatchedRun, type WatchOptions } from './backup-run.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');

/** The actions of this repository: the backup at its root, the restore in restore/. */
export type ActionName = 'backup' | 'restore';

/** The script the runner runs for a step of an action, as its action.yml says. */
export function actionScript(action: ActionName, step: 'main' | 'post'): string {
  const dir = action === 'backup' ? ROOT : join(ROOT, action);
  const metadata = parse(readFileSync(join(dir, 'action.yml'), 'utf8')) as {
    runs: { using: string; main: string; post?: string };
  };
  if (metadata.runs.using !== 'node24') throw new Error(`${dir}/action.yml: not a node24 action`);
  const script = metadata.runs[step];
  if (!script) throw new Error(`${dir}/action.yml has no runs.${step}`);
  return resolve(dir, script);
}

export interface StepRun extends WatchedRun {
  outputs: Record<string, string>;
  state: Record<string, string>;
  summary: string;
}

/** Parses a runner file command file (`name<<delimiter\nvalue\ndelimiter`); the last value wins. */
export function parseFileCommands(text: string): Record<string, string> {
  const values: Record<string, string> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const heredoc = /^([^=<]+)<<(.+)$/.exec(lines[i]!);
    if (heredoc) {
      const [, name, delimiter] = heredoc;
      const end = lines.indexOf(delimiter!, i + 1);
      values[name!] = lines.slice(i + 1, end).join('\n');
      i = end;
    } else if (lines[i]!.includes('=')) {
      const at = lines[i]!.indexOf('=');
      values[lines[i]!.slice(0, at)] = lines[i]!.slice(at + 1);
    }
  }
  return values;
}

/** The environment variable the runner uses for an input. */
export function inputVariable(name: string): string {
  return `INPUT_${name.replace(/ /g, '_').toUpperCase()}`;
}

export async function runActionStep(
  step: 'main' | 'post',
  options: WatchOptions & {
    /** The `with:` inputs; the action.yml defaults are NOT applied here unless given. */
    inputs: Record<string, string>;
    /** Where this run's runner files live (RUNNER_TEMP is a subdirectory). */
    workDir: string;
    env?: Record<string, string>;
    /** main's saved state, for the post step. */
    state?: Record<string, string>;
    /** Which action of the repository (default the backup). */
    action?: ActionName;
  },
): Promise<StepRun> {
  // One workDir is one job: the restore's runner files sit beside the backup's.
  const action = options.action ?? 'backup';
  const dir = join(options.workDir, action === 'backup' ? step : `${action}-${step}`);
  const runnerTemp = join(options.workDir, 'runner-temp');
  mkdirSync(dir, { recursive: true });
  mkdirSync(runnerTemp, { recursive: true });
  const files = {
    output: join(dir, 'output'),
    state: join(dir, 'state'),
    summary: join(dir, 'summary.md'),
  };
  for (const file of Object.values(files)) writeFileSync(file, '');

  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/root',
    GITHUB_ACTIONS: 'true',
    RUNNER_TEMP: runnerTemp,
    GITHUB_OUTPUT: files.output,
    GITHUB_STATE: files.state,
    GITHUB_STEP_SUMMARY: files.summary,
    ...options.env,
  };
  for (const [name, value] of Object.entries(options.inputs)) env[inputVariable(name)] = value;
  for (const [name, value] of Object.entries(options.state ?? {})) env[`STATE_${name}`] = value;

  const child = spawn(process.execPath, [actionScript(action, step)], {
    cwd: options.workDir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  options.onSpawn?.(child);
  const run = await watchRun(child, options);
  return {
    ...run,
    outputs: parseFileCommands(readFileSync(files.output, 'utf8')),
    state: parseFileCommands(readFileSync(files.state, 'utf8')),
    summary: readFileSync(files.summary, 'utf8'),
  };
}

/** The `with:` inputs that point either action at an instance through this sshd. */
export function sshInputs(server: SshServer, instance: SampleInstance): Record<string, string> {
  return {
    host: server.host,
    port: String(server.port),
    user: 'root',
    'ssh-key': server.privateKey,
    'known-hosts': server.knownHostsLine,
    'owncloud-dir': instance.installDir,
  };
}

/** The `::error::` lines a step wrote (core.setFailed). */
export function errorLines(run: StepRun): string[] {
  return run.stdout.split('\n').filter((l) => l.startsWith('::error::'));
}
