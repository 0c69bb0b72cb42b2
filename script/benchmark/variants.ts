// The ways of backing up one instance that the benchmark compares. Each runs once into a
// fresh directory on the runner and says what it measured; none knows about the others.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parse } from 'yaml';
import { quoteCommand } from '../../src/host/shell.ts';
import type { MariaDbServer } from '../../test/harness/mariadb.ts';
import type { SshServer } from '../../test/harness/sshd.ts';
import type { SampleInstance } from '../../test/sample/instance.ts';
import {
  actionScript,
  inputVariable,
  parseFileCommands,
  sshInputs,
} from '../../test/support/action-runner.ts';
import { runMeasured, runPipeline, watchDisk } from './measure.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const CLI = join(ROOT, 'dist', 'cli', 'index.js');
const UPLOAD = join(import.meta.dirname, 'upload.ts');

/** What one variant run measured. */
export interface Measurement {
  seconds: number;
  /** Seconds the instance was in maintenance mode. */
  maintenanceSeconds?: number;
  /** Seconds the database dump took. */
  dumpSeconds?: number;
  /** Peak resident memory of the tool's own process (or the floor's upload process), MiB. */
  peakRssMiB?: number;
  /** Peak bytes under the run's directory on the runner. */
  peakDiskBytes?: number;
  /** What the backup holds (archives and dump, or the copy), bytes. */
  backupBytes?: number;
  /** The tool's own steps and their seconds, as its log reports them. */
  steps?: Record<string, number>;
}

/** The instance and the servers every variant reaches it through. */
export interface Bench {
  sshd: SshServer;
  mariadb: MariaDbServer;
  sample: SampleInstance;
  /** A 0600 MariaDB client option file on the host, holding the instance's database login. */
  dbOptionFile: string;
  /** A backup of the instance for the restore variants (--restore). */
  restoreSource?: string;
}

export interface VariantContext {
  bench: Bench;
  /** This run's own directory on the runner (empty, removed by the caller). */
  dir: string;
  /** The artifact service's environment (token, results URL, run identity). */
  artifactEnv: Record<string, string>;
}

export interface Variant {
  id: string;
  label: string;
  uploads: boolean;
  /** Leaves many files in its directory: removed at the end, not at once (see benchmark.ts). */
  keepsManyFiles: boolean;
  run(context: VariantContext): Promise<Measurement>;
}

function ssh(bench: Bench, remote: string[]): string[] {
  return ['ssh', ...bench.sshd.clientArgs(), quoteCommand(remote)];
}

/** mysqldump on the host, the password in a defaults file there (never in an argv). */
function remoteDump(bench: Bench): string[] {
  const config = bench.sample.readConfig();
  const [host, port] = String(config.dbhost).split(':');
  return ssh(bench, [
    'mysqldump',
    `--defaults-extra-file=${bench.dbOptionFile}`,
    '--single-transaction',
    `--host=${host}`,
    `--port=${port}`,
    String(config.dbname),
  ]);
}

/** The installation-relative path of the data directory (the sample keeps it inside). */
function dataPath(sample: SampleInstance): string {
  const path = relative(sample.installDir, sample.dataDir);
  if (path.startsWith('..'))
    throw new Error('the benchmark needs the data dir inside owncloud-dir');
  return path;
}

function sizeOf(dir: string): number {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .reduce((sum, e) => sum + statSync(join(e.parentPath, e.name)).size, 0);
}

/** Runs `work`, timing all of it and polling the run directory's size meanwhile. */
async function measured<T>(dir: string, work: () => Promise<T>) {
  const stopDisk = watchDisk(dir);
  const started = performance.now();
  let value: T;
  try {
    value = await work();
  } catch (error) {
    await stopDisk();
    throw error;
  }
  const seconds = (performance.now() - started) / 1000;
  return { value, seconds, peakDiskBytes: await stopDisk() };
}

const uploadEnv = (context: VariantContext) => ({ ...process.env, ...context.artifactEnv });

/** 1. The floor: one tar stream, one dump stream, two raw uploads. No consistency, no checks. */
export const floor: Variant = {
  id: 'floor',
  keepsManyFiles: false,
  label: 'floor: `ssh tar \\| zstd -T0 -3` + `ssh mysqldump \\| zstd` + raw uploads',
  uploads: true,
  async run(context) {
    const { bench, dir } = context;
    const files = join(dir, 'files.tar.zst');
    const dump = join(dir, 'dump.zst');
    const run = await measured(dir, async () => {
      const archived = await runPipeline(
        ssh(bench, [
          'tar',
          '-C',
          bench.sample.installDir,
          '-cf',
          '-',
          'config',
          dataPath(bench.sample),
        ]),
        ['zstd', '-T0', '-3', '-q', '-c'],
        files,
      );
      const dumped = await runPipeline(remoteDump(bench), ['zstd', '-q', '-c'], dump);
      const upload = await runMeasured([process.execPath, UPLOAD, 'raw', files, dump], {
        env: uploadEnv(context),
      });
      return { archived, dumped, upload };
    });
    const { archived, dumped, upload } = run.value;
    return {
      seconds: run.seconds,
      dumpSeconds: dumped.seconds,
      peakRssMiB: upload.peakRssMiB,
      peakDiskBytes: run.peakDiskBytes,
      backupBytes: sizeOf(dir),
      steps: {
        'floor: ssh tar | zstd': archived.seconds,
        'floor: ssh mysqldump | zstd': dumped.seconds,
        'floor: the two raw uploads': upload.seconds,
      },
    };
  },
};

/** `sudo -u OWNER php occ ARGS` on the host, as the documentation writes it. */
function occ(bench: Bench, args: string[]): string[] {
  const { sample } = bench;
  return ssh(bench, [
    'sudo',
    '-u',
    sample.owner.name,
    'php',
    join(sample.installDir, 'occ'),
    ...args,
  ]);
}

/**
 * 2. The documentation's manual backup: maintenance mode on, `rsync -Aax` of config and data,
 * mysqldump, maintenance mode off; then the copy uploaded as actions/upload-artifact does.
 */
export const manual: Variant = {
  id: 'manual',
  keepsManyFiles: true,
  label:
    "the documented commands: maintenance on, `rsync -Aax`, mysqldump, off; upload-artifact's zip",
  uploads: true,
  async run(context) {
    const { bench, dir } = context;
    const copy = join(dir, 'copy');
    mkdirSync(copy);
    const { sample, sshd } = bench;
    const shell = quoteCommand(['ssh', ...sshd.clientArgs().slice(0, -1)]);
    const remote = `${sshd.user}@${sshd.host}`;
    const date = new Date().toISOString().slice(0, 10).replaceAll('-', '');
    const run = await measured(dir, async () => {
      const windowStart = performance.now();
      await runMeasured(occ(bench, ['maintenance:mode', '--on']));
      const copied = await runMeasured([
        'rsync',
        '-Aax',
        '-e',
        shell,
        `${remote}:${join(sample.installDir, 'config')}`,
        `${remote}:${sample.dataDir}`,
        `${copy}/`,
      ]);
      const dumped = await runMeasured(remoteDump(bench), {
        stdoutFile: join(copy, `owncloud-dbbackup_${date}.bak`),
      });
      await runMeasured(occ(bench, ['maintenance:mode', '--off']));
      const window = (performance.now() - windowStart) / 1000;
      const upload = await runMeasured(
        [process.execPath, UPLOAD, 'zip', `owncloud-backup-${date}`, copy],
        { env: uploadEnv(context) },
      );
      return { window, copied, dumped, upload };
    });
    const { window, copied, dumped, upload } = run.value;
    return {
      seconds: run.seconds,
      maintenanceSeconds: window,
      dumpSeconds: dumped.seconds,
      peakRssMiB: upload.peakRssMiB,
      peakDiskBytes: run.peakDiskBytes,
      backupBytes: sizeOf(copy),
      steps: {
        'manual: rsync -Aax': copied.seconds,
        'manual: mysqldump': dumped.seconds,
        "manual: upload-artifact's zip": upload.seconds,
      },
    };
  },
};

/** The action's inputs with the defaults its action.yml gives them, as the runner fills them in. */
function actionDefaults(): Record<string, string> {
  const metadata = parse(readFileSync(join(ROOT, 'action.yml'), 'utf8')) as {
    inputs: Record<string, { default?: string }>;
  };
  return Object.fromEntries(
    Object.entries(metadata.inputs).map(([name, input]) => [name, String(input.default ?? '')]),
  );
}

interface ManifestFacts {
  maintenance: { seconds: number };
  database?: { dumpSeconds?: number };
  archives: { name: string; role: string; size: number }[];
}

function readManifest(path: string): ManifestFacts {
  return JSON.parse(readFileSync(path, 'utf8')) as ManifestFacts;
}

/** Seconds from the tool's duration format (`0.4 s`, `12.3 s`, `4 min 05 s`). */
function secondsOf(text: string): number {
  const minutes = /^(\d+) min (\d+) s$/.exec(text);
  return minutes ? Number(minutes[1]) * 60 + Number(minutes[2]) : Number(text.replace(/ s$/, ''));
}

/** The tool's steps and their durations, from its `TITLE: done in 1.2 s` log lines. */
export function stepsFromLog(log: string): Record<string, number> {
  const steps: Record<string, number> = {};
  for (const match of log.matchAll(
    /^(?:\d\d:\d\d:\d\d +)?(.+?): done in (\d+(?:\.\d+)? s|\d+ min \d+ s)$/gm,
  ))
    steps[match[1]!] = secondsOf(match[2]!);
  return steps;
}

/**
 * The dump's own duration, where the tool tells it: a `database.dumpSeconds` in the manifest,
 * or a step of its own in the log (`Database dump: done in 1.2 s`). A step that holds more
 * than the dump (the maintenance window) does not count.
 */
function dumpSecondsOf(manifest: ManifestFacts, steps: Record<string, number>): number | undefined {
  return manifest.database?.dumpSeconds ?? steps['Database dump'];
}

/** The action's main and post steps, run as the runner runs them (RUNNER_TEMP inside the run dir). */
async function runAction(context: VariantContext, inputs: Record<string, string>) {
  const { dir } = context;
  const runnerTemp = join(dir, 'runner-temp');
  const tmp = join(dir, 'tmp');
  mkdirSync(runnerTemp);
  mkdirSync(tmp);
  const base: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/root',
    GITHUB_ACTIONS: 'true',
    RUNNER_TEMP: runnerTemp,
    TMPDIR: tmp,
    ...context.artifactEnv,
  };
  for (const [name, value] of Object.entries({ ...actionDefaults(), ...inputs }))
    base[inputVariable(name)] = value;
  const step = async (name: 'main' | 'post', state: Record<string, string>) => {
    const files = {
      GITHUB_OUTPUT: join(dir, `${name}-output`),
      GITHUB_STATE: join(dir, `${name}-state`),
      GITHUB_STEP_SUMMARY: join(dir, `${name}-summary.md`),
    };
    for (const file of Object.values(files)) writeFileSync(file, '');
    const env: NodeJS.ProcessEnv = { ...base, ...files };
    for (const [key, value] of Object.entries(state)) env[`STATE_${key}`] = value;
    const result = await runMeasured([process.execPath, actionScript('backup', name)], {
      cwd: dir,
      env,
    });
    if (result.stdout.includes('::error::'))
      throw new Error(`the action's ${name} step reported an error:\n${result.stdout}`);
    return {
      result,
      outputs: parseFileCommands(readFileSync(files.GITHUB_OUTPUT, 'utf8')),
      state: parseFileCommands(readFileSync(files.GITHUB_STATE, 'utf8')),
    };
  };
  const run = await measured(dir, async () => {
    const main = await step('main', {});
    // The post step may clean up the backup directory: read its manifest first.
    const manifest = readManifest(main.outputs.manifest!);
    const post = await step('post', main.state);
    return { main: main.result, post: post.result, manifest };
  });
  const steps = stepsFromLog(run.value.main.stdout);
  return {
    seconds: run.seconds,
    maintenanceSeconds: run.value.manifest.maintenance.seconds,
    dumpSeconds: dumpSecondsOf(run.value.manifest, steps),
    steps,
    peakRssMiB: Math.max(run.value.main.peakRssMiB, run.value.post.peakRssMiB),
    peakDiskBytes: run.peakDiskBytes,
    backupBytes: run.value.manifest.archives.reduce((sum, a) => sum + a.size, 0),
  } satisfies Measurement;
}

/** The restore test loads the dump on the runner: not part of a backup's cost, so it is off. */
const ACTION_INPUTS = { 'restore-test': 'false' };

/** 3. The action over SSH, main and post step. */
export const actionSsh: Variant = {
  id: 'action-ssh',
  keepsManyFiles: false,
  label: 'this action over SSH',
  uploads: true,
  run: (context) =>
    runAction(context, {
      ...sshInputs(context.bench.sshd, context.bench.sample),
      ...ACTION_INPUTS,
    }),
};

/** 4. The action on the host itself (local transport). */
export const actionLocal: Variant = {
  id: 'action-local',
  keepsManyFiles: false,
  label: 'this action, local transport',
  uploads: true,
  run: (context) =>
    runAction(context, { 'owncloud-dir': context.bench.sample.installDir, ...ACTION_INPUTS }),
};

/**
 * The CLI over SSH into a directory, no upload; with `age`, encrypting to a fresh age key
 * (what encryption costs beside the same run without it).
 */
function cliOverSsh(age: boolean): Variant {
  return {
    id: age ? 'cli-ssh-age' : 'cli-ssh',
    keepsManyFiles: false,
    label: age ? 'the CLI over SSH, encrypt-to (age)' : 'the CLI over SSH (no upload)',
    uploads: false,
    run: (context) => runCliOverSsh(context, age),
  };
}

/** 5. The CLI over SSH into a directory, no upload: for its own peak memory. */
export const cliSsh = cliOverSsh(false);
/** With --age: the same, encrypted. */
export const cliSshAge = cliOverSsh(true);

async function runCliOverSsh(
  context: Parameters<Variant['run']>[0],
  age: boolean,
): Promise<Measurement> {
  {
    const { bench, dir } = context;
    const { sshd, sample } = bench;
    const out = join(dir, 'backup');
    const tmp = join(dir, 'tmp');
    mkdirSync(out);
    mkdirSync(tmp);
    const recipient = age
      ? execFileSync('sh', ['-c', 'age-keygen 2>/dev/null | age-keygen -y'], {
          encoding: 'utf8',
        }).trim()
      : undefined;
    const run = await measured(dir, () =>
      runMeasured(
        [
          process.execPath,
          CLI,
          'backup',
          ...['--host', sshd.host, '--port', String(sshd.port)],
          ...['--ssh-key-file', sshd.privateKeyPath, '--known-hosts-file', sshd.knownHostsPath],
          ...['--owncloud-dir', sample.installDir, '--backup-dir', out],
          ...(recipient ? ['--encrypt-to', recipient] : []),
        ],
        { env: { ...process.env, TMPDIR: tmp } },
      ),
    );
    const [name] = readdirSync(out);
    const manifest = readManifest(join(out, name!, 'manifest.json'));
    const steps = stepsFromLog(run.value.stderr);
    return {
      seconds: run.seconds,
      maintenanceSeconds: manifest.maintenance.seconds,
      dumpSeconds: dumpSecondsOf(manifest, steps),
      steps,
      peakRssMiB: run.value.peakRssMiB,
      peakDiskBytes: run.peakDiskBytes,
      backupBytes: manifest.archives.reduce((sum, a) => sum + a.size, 0),
    };
  }
}

export const VARIANTS: Variant[] = [floor, manual, actionSsh, actionLocal, cliSsh];
