// The GitHub Action as the runner runs it: the committed dist/ bundles, inputs as INPUT_*
// variables, runner files, then the post step with main's state. Uploads go to a local
// artifact service (Azurite + the results API on loopback) and come back with the real
// @actions/artifact client, digest checked, and the backup is restored and compared.
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DefaultArtifactClient } from '@actions/artifact';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/manifest.ts';
import { startArtifactService, type ArtifactService } from '../harness/artifact-service.ts';
import { startMariaDb, type MariaDbServer } from '../harness/mariadb.ts';
import { startPostgres, type PostgresServer } from '../harness/postgres.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import { startSshd, type SshServer } from '../harness/sshd.ts';
import type { SampleInstance } from '../sample/instance.ts';
import { lockTargetOf, sampleOn, type Engine } from '../support/instances.ts';
import { errorLines, runActionStep, sshInputs, type StepRun } from '../support/action-runner.ts';
import { explain } from '../support/cli-checks.ts';
import { holdDumpLock } from '../support/backup-run.ts';
import {
  expectSameDatabase,
  expectSameFiles,
  restoreDump,
  unpackFiles,
} from '../support/restore.ts';

let mariadb: MariaDbServer;
let postgres: PostgresServer;
let sshd: SshServer;
let service: ArtifactService;
const scratch = makeScratchDir('action-test');
chmodSync(scratch.path, 0o755);
let counter = 0;

beforeAll(async () => {
  [mariadb, postgres, sshd, service] = await Promise.all([
    startMariaDb(),
    startPostgres(),
    startSshd(),
    startArtifactService(),
  ]);
});
afterAll(async () => {
  await Promise.all([mariadb?.stop(), postgres?.stop(), sshd?.stop(), service?.stop()]);
  scratch.remove();
});

function sample(engine: Engine): Promise<SampleInstance> {
  return sampleOn(engine, { mariadb, postgres }, scratch.path, counter++);
}

function serverOf(engine: Engine) {
  return lockTargetOf(engine, { mariadb, postgres });
}

function workDir(): string {
  const dir = join(scratch.path, `runner ${counter++}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** The secret appears only in the runner's ::add-mask:: command, issued before any other line. */
function expectMasked(run: StepRun, secret: string): void {
  const lines = run.stdout.split('\n');
  const mask = lines.indexOf(`::add-mask::${secret}`);
  expect(mask, 'no ::add-mask:: for the secret').toBeGreaterThanOrEqual(0);
  expect(lines.filter((l) => l.includes(secret))).toEqual([`::add-mask::${secret}`]);
  expect(run.stderr).not.toContain(secret);
  expect(run.leaks).toEqual([]);
}

function occSwitches(instance: SampleInstance): string[] {
  return instance
    .occCalls()
    .map((c) => c.args.join(' '))
    .filter((c) => c.includes('--on') || c.includes('--off'));
}

async function withArtifactEnv<T>(work: () => Promise<T>): Promise<T> {
  const saved = { ...process.env };
  Object.assign(process.env, service.env);
  try {
    return await work();
  } finally {
    for (const key of Object.keys(service.env))
      if (saved[key] === undefined) delete process.env[key];
    Object.assign(process.env, saved);
  }
}

describe.each(['sqlite', 'mysql', 'pgsql'] as const)(
  'the action backing up an instance on %s over SSH',
  (engine) => {
    it('uploads one artifact that downloads with its digest and restores to the same rows and files', async () => {
      const instance = await sample(engine);
      const dir = workDir();
      const lock = await holdDumpLock(instance, serverOf(engine));
      let maintenanceDuringDump: unknown;
      const artifactName = `ownCloud backup ${engine} ünï`;
      const main = await runActionStep('main', {
        inputs: {
          ...sshInputs(sshd, instance),
          'retention-days': '5',
          'artifact-name': artifactName,
        },
        workDir: dir,
        env: service.env,
        secrets: engine === 'sqlite' ? [] : [instance.dbPassword],
        onDump: async () => {
          maintenanceDuringDump = instance.readConfig().maintenance;
          await lock.release();
        },
      });
      expect(main.exitCode, explain(main)).toBe(0);
      expect(maintenanceDuringDump).toBe(true);
      expect(instance.readConfig().maintenance).toBe(false);
      // SQLite has no password; the others' is read from config.php and masked at once.
      if (engine !== 'sqlite') expectMasked(main, instance.dbPassword);
      expect(main.leaks).toEqual([]);
      // The SSH key is masked line by line as well.
      const keyLine = sshd.privateKey.split('\n')[1]!;
      expect(main.stdout).toContain(`::add-mask::${keyLine}`);
      for (const group of [
        'Connect',
        'Discover',
        'Preflight',
        'Files',
        'Maintenance window',
        'Upload',
      ])
        expect(main.stdout).toMatch(new RegExp(`^::group::${group}`, 'm'));

      // Outputs.
      const out = main.outputs;
      expect(Object.keys(out).sort()).toEqual([
        'artifact-digest',
        'artifact-id',
        'artifact-name',
        'artifact-url',
        'backup-dir',
        'backup-name',
        'db-dump',
        'maintenance-seconds',
        'manifest',
        'owncloud-version',
        'size-bytes',
      ]);
      expect(out['artifact-name']).toBe(artifactName);
      expect(out['backup-dir']!.endsWith(out['backup-name']!)).toBe(true);
      expect(out['artifact-id']).toMatch(/^\d+$/);
      expect(out['artifact-digest']).toMatch(/^[0-9a-f]{64}$/);
      expect(out['artifact-url']).toBe(
        `https://github.com/${service.env.GITHUB_REPOSITORY}/actions/runs/${service.env.GITHUB_RUN_ID}/artifacts/${out['artifact-id']}`,
      );
      expect(out['owncloud-version']).toBe('10.15.0.2');
      expect(Number(out['maintenance-seconds'])).toBeGreaterThan(0);
      expect(
        out['backup-dir']!.startsWith(
          join(dir, 'runner-temp', 'owncloud-backup', 'owncloud-backup-'),
        ),
      ).toBe(true);
      const manifest = JSON.parse(readFileSync(out.manifest!, 'utf8')) as Manifest;
      expect(Number(out['size-bytes'])).toBe(manifest.archives.reduce((sum, a) => sum + a.size, 0));
      expect(out['db-dump']).toBe(
        join(out['backup-dir']!, manifest.archives.find((a) => a.role === 'database')!.name),
      );

      // The job summary.
      expect(main.summary).toContain(
        `| Instance | ownCloud 10.15.0.2 (${String(instance.config.instanceid)}) on root@${sshd.host}:${sshd.port} |`,
      );
      expect(main.summary).toContain(`[${artifactName}](${out['artifact-url']})`);
      expect(main.summary).toContain(
        `expires ${new Date(Date.now() + 5 * 86_400_000).toISOString().slice(0, 10)}`,
      );
      for (const archive of manifest.archives)
        expect(main.summary).toContain(`\`${archive.sha256}\``);
      expect(main.summary).toContain('anyone with read access');

      // The artifact service got exactly one artifact, with our retention.
      const stored = service.artifacts().filter((a) => a.name === artifactName);
      expect(stored).toHaveLength(1);
      expect(stored[0]).toMatchObject({
        id: Number(out['artifact-id']),
        digest: out['artifact-digest'],
      });

      // The post step: nothing to restore, and the key files are gone.
      const runtimeDirs = JSON.parse(main.state['runtime-dirs']!) as string[];
      const post = await runActionStep('post', {
        inputs: sshInputs(sshd, instance),
        workDir: dir,
        env: service.env,
        state: main.state,
        secrets: [instance.dbPassword],
      });
      expect(post.exitCode, explain(post)).toBe(0);
      expect(post.stdout).toContain('The main step restored maintenance mode; nothing to do.');
      for (const runtimeDir of runtimeDirs) expect(existsSync(runtimeDir)).toBe(false);
      expect(occSwitches(instance)).toEqual(['maintenance:mode --on', 'maintenance:mode --off']);

      // Download with the real client, digest checked, then restore and compare.
      const downloaded = join(dir, 'downloaded');
      const response = await withArtifactEnv(() =>
        new DefaultArtifactClient().downloadArtifact(Number(out['artifact-id']), {
          path: downloaded,
          expectedHash: `sha256:${out['artifact-digest']}`,
        }),
      );
      expect(response.digestMismatch ?? false).toBe(false);
      expect(readdirSync(downloaded).sort()).toEqual(readdirSync(out['backup-dir']!).sort());
      for (const archive of manifest.archives)
        expect(
          createHash('sha256')
            .update(readFileSync(join(downloaded, archive.name)))
            .digest('hex'),
        ).toBe(archive.sha256);
      const database = await restoreDump(
        join(downloaded, manifest.archives.find((a) => a.role === 'database')!.name),
        manifest,
        dir,
        { mariadb, postgres },
      );
      await expectSameDatabase(instance.database, database);
      unpackFiles(
        join(downloaded, manifest.archives.find((a) => a.role === 'files')!.name),
        join(dir, 'restored'),
      );
      await expectSameFiles(instance, join(dir, 'restored'), manifest);
      expect(existsSync(join(instance.root, 'pwned'))).toBe(false);
    });
  },
);

describe('a cancelled or killed main step', () => {
  it('SIGINT mid-dump: main restores maintenance mode itself, uploads nothing; post removes the key files', async () => {
    const instance = await sample('mysql');
    const dir = workDir();
    const lock = await holdDumpLock(instance, serverOf('mysql'));
    const before = service.artifacts().length;
    try {
      const main = await runActionStep('main', {
        inputs: sshInputs(sshd, instance),
        workDir: dir,
        env: service.env,
        secrets: [instance.dbPassword],
        onDump: (run) => {
          expect(instance.readConfig().maintenance).toBe(true);
          run.kill('SIGINT');
        },
      });
      expect(main.exitCode, explain(main)).toBe(1);
      expect(errorLines(main)).toEqual(['::error::The backup was interrupted.']);
      expect(instance.readConfig().maintenance).toBe(false);
      expect(service.artifacts()).toHaveLength(before);
      const post = await runActionStep('post', {
        inputs: sshInputs(sshd, instance),
        workDir: dir,
        env: service.env,
        state: main.state,
        secrets: [instance.dbPassword],
      });
      expect(post.exitCode, explain(post)).toBe(0);
      for (const runtimeDir of JSON.parse(main.state['runtime-dirs']!) as string[])
        expect(existsSync(runtimeDir)).toBe(false);
      expect(
        readdirSync(join(dir, 'runner-temp')).filter((f) => f.startsWith('owncloud-backup-ssh-')),
      ).toEqual([]);
    } finally {
      await lock.release();
    }
  });

  it('killed mid-dump: the post step switches maintenance mode off and removes the key files', async () => {
    const instance = await sample('sqlite');
    const dir = workDir();
    const lock = await holdDumpLock(instance, serverOf('sqlite'));
    try {
      const main = await runActionStep('main', {
        inputs: sshInputs(sshd, instance),
        workDir: dir,
        env: service.env,
        secrets: [],
        onDump: (run) => {
          run.kill('SIGKILL');
        },
      });
      expect(main.signal).toBe('SIGKILL');
      // Left as main died: maintenance mode on, the key on disk (0600) under RUNNER_TEMP.
      expect(instance.readConfig().maintenance).toBe(true);
      const runtimeDirs = JSON.parse(main.state['runtime-dirs']!) as string[];
      expect(runtimeDirs[0]!.startsWith(join(dir, 'runner-temp'))).toBe(true);
      expect(statSync(join(runtimeDirs[0]!, 'id')).mode & 0o777).toBe(0o600);
      expect(JSON.parse(main.state.maintenance!)).toMatchObject({
        switchedByUs: true,
        restored: false,
      });

      const post = await runActionStep('post', {
        inputs: sshInputs(sshd, instance),
        workDir: dir,
        env: service.env,
        state: main.state,
        secrets: [],
      });
      expect(post.exitCode, explain(post)).toBe(0);
      expect(post.stdout).toContain(
        'did not switch it off (cancelled or killed): switching it off now',
      );
      expect(instance.readConfig().maintenance).toBe(false);
      expect(occSwitches(instance)).toEqual(['maintenance:mode --on', 'maintenance:mode --off']);
      for (const runtimeDir of runtimeDirs) expect(existsSync(runtimeDir)).toBe(false);
      expect(
        readdirSync(join(dir, 'runner-temp')).filter((f) => f.startsWith('owncloud-backup-ssh-')),
      ).toEqual([]);
    } finally {
      await lock.release();
    }
  });
});

describe('uploading', () => {
  it('with upload false, keeps the backup on the runner for a later step and uploads nothing', async () => {
    const instance = await sample('sqlite');
    const before = service.artifacts().length;
    const dir = workDir();
    const main = await runActionStep('main', {
      inputs: {
        'owncloud-dir': instance.installDir,
        upload: 'false',
        'backup-dir': join(dir, 'kept backups'),
      },
      workDir: dir,
      env: service.env,
      secrets: [],
    });
    expect(main.exitCode, explain(main)).toBe(0);
    expect(service.artifacts()).toHaveLength(before);
    expect(main.outputs['artifact-id']).toBe('');
    expect(
      main.outputs['backup-dir']!.startsWith(join(dir, 'kept backups', 'owncloud-backup-')),
    ).toBe(true);
    const kept = readdirSync(main.outputs['backup-dir']!).sort();
    expect(kept).toHaveLength(5);
    expect(kept.slice(0, 2)).toEqual(['SHA256SUMS', 'manifest.json']);
    expect(kept[2]).toMatch(/^owncloud-dbbackup_\d{8}\.bak\.zst$/);
    expect(kept[3]).toMatch(/^owncloud-files-delta_\d{8}\.tar\.zst$/);
    expect(kept[4]).toMatch(/^owncloud-files_\d{8}\.tar\.zst$/);
    expect(main.summary).toContain('(upload: false)');
    expect(main.stdout).not.toMatch(/^::group::Upload/m);
    // The restore test runs by default in the action, and the summary and manifest say so.
    const manifest = JSON.parse(
      readFileSync(join(main.outputs['backup-dir']!, 'manifest.json'), 'utf8'),
    ) as { restoreTest?: { result: string } };
    expect(manifest.restoreTest?.result).toBe('passed');
    expect(main.summary).toMatch(/\| Restore test \| restore test passed \(\d+\.\d s, sqlite3 3\./);
    expect(main.stdout).toMatch(/^::group::Restore test \(throwaway database on the runner\)$/m);
  });

  it('refuses a second artifact of the same name in the run, keeping the backup on the runner', async () => {
    const instance = await sample('sqlite');
    const inputs = { 'owncloud-dir': instance.installDir, 'artifact-name': `twice ${counter}` };
    const first = await runActionStep('main', {
      inputs,
      workDir: workDir(),
      env: service.env,
      secrets: [],
    });
    expect(first.exitCode, explain(first)).toBe(0);
    const second = await runActionStep('main', {
      inputs,
      workDir: workDir(),
      env: service.env,
      secrets: [],
    });
    expect(second.exitCode, explain(second)).toBe(1);
    expect(errorLines(second)).toEqual([
      `::error::An artifact named '${inputs['artifact-name']}' exists already in this run: set a unique artifact-name.`,
    ]);
    // The backup itself is complete and its outputs were set before the upload failed.
    expect(readdirSync(second.outputs['backup-dir']!)).toContain('manifest.json');
    expect(second.outputs['artifact-id']).toBeUndefined();
    expect(service.artifacts().filter((a) => a.name === inputs['artifact-name'])).toHaveLength(1);
  });
});

describe('bad input', () => {
  let instance: SampleInstance;
  beforeAll(async () => {
    instance = await sample('sqlite');
  });

  const KEY_LINE = () => sshd.knownHostsLine;
  const cases: [string, () => Record<string, string>, () => string][] = [
    [
      'an unknown db-type',
      () => ({ 'db-type': 'mssql' }),
      () =>
        "Invalid input 'db-type': 'mssql' is not supported. Expected one of: auto, mysql, pgsql, sqlite.",
    ],
    [
      'oci',
      () => ({ 'db-type': 'oci' }),
      () =>
        "Invalid input 'db-type': Oracle (oci) is not supported. Expected one of: auto, mysql, pgsql, sqlite.",
    ],
    [
      'malformed known-hosts',
      () => ({ ...sshInputs(sshd, instance), 'known-hosts': 'this is not a key line' }),
      () => "Invalid input 'known-hosts': line 1 has an unknown key type 'is'.",
    ],
    [
      'host without known-hosts',
      () => ({ ...sshInputs(sshd, instance), 'known-hosts': '' }),
      () =>
        "Invalid input 'known-hosts': known_hosts lines for the host are required when input 'host' is set (get them with: ssh-keyscan -p PORT HOST).",
    ],
    [
      'host without ssh-key',
      () => ({ ...sshInputs(sshd, instance), 'ssh-key': '' }),
      () => "Invalid input 'ssh-key': a private key is required when input 'host' is set.",
    ],
    [
      'retention-days 91',
      () => ({ 'retention-days': '91' }),
      () =>
        "Invalid input 'retention-days': '91' is not a number of days from 1 to 90 (or 0 for the repository's default).",
    ],
    [
      'retention-days -1',
      () => ({ 'retention-days': '-1' }),
      () =>
        "Invalid input 'retention-days': '-1' is not a number of days from 1 to 90 (or 0 for the repository's default).",
    ],
    [
      'an artifact name with a colon',
      () => ({ 'artifact-name': 'backup: nightly' }),
      () =>
        "Invalid input 'artifact-name': 'backup: nightly' contains a character artifacts cannot have. Not allowed: \" : < > | * ? \\ / and line breaks.",
    ],
    [
      'a path starting with -',
      () => ({ 'owncloud-dir': '--delete' }),
      () => "Invalid input 'owncloud-dir': '--delete' starts with '-'. Expected an absolute path.",
    ],
    [
      'a missing owncloud-dir',
      () => ({ 'owncloud-dir': join(instance.root, 'nowhere') }),
      () => `owncloud-dir '${join(instance.root, 'nowhere')}' does not exist on this machine`,
    ],
    [
      'an owncloud-dir without config.php',
      () => ({ 'owncloud-dir': instance.dataDir }),
      () => `owncloud-dir '${instance.dataDir}' has no config/config.php on this machine`,
    ],
    [
      'a data dir without .ocdata',
      () => ({ 'data-dir': join(instance.installDir, 'themes') }),
      () =>
        `The data directory '${join(instance.installDir, 'themes')}' (data-dir) has neither .ocdata (ownCloud) nor .ncdata (Nextcloud): it is not an ownCloud data directory.`,
    ],
    [
      'a wrong host key',
      () => ({
        ...sshInputs(sshd, instance),
        'known-hosts': KEY_LINE().replace(
          /AAAA\S+$/,
          'AAAAC3NzaC1lZDI1NTE5AAAAIC3MRaHtm0x1cjBEbSH4NRj2lV8mFhcRCfK7lxC7e3sE',
        ),
      }),
      () => `The host key of root@${'127.0.0.1'}:`,
    ],
  ];

  it.each(cases)(
    '%s gets one clear error naming it, and nothing is touched',
    async (_name, inputs, message) => {
      const before = service.artifacts().length;
      const dir = workDir();
      const main = await runActionStep('main', {
        inputs: { 'owncloud-dir': instance.installDir, ...inputs() },
        workDir: dir,
        env: service.env,
        secrets: [],
      });
      expect(main.exitCode, explain(main)).toBe(1);
      const errors = errorLines(main);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toContain(`::error::${message()}`);
      expect(main.stdout + main.stderr).not.toMatch(/\n\s+at .*:\d+:\d+/);
      expect(instance.occCalls()).toEqual([]);
      expect(instance.readConfig().maintenance).toBe(false);
      expect(service.artifacts()).toHaveLength(before);
      expect(
        existsSync(join(dir, 'runner-temp', 'owncloud-backup'))
          ? readdirSync(join(dir, 'runner-temp', 'owncloud-backup'))
          : [],
      ).toEqual([]);
    },
  );
});
