// The restore sub-action (restore/action.yml) as the runner runs it: the committed bundles
// its action.yml names, inputs as INPUT_* variables, runner files, then the post step with
// main's state. The artifacts come from the backup action run first in the same test,
// uploaded to and downloaded from the local artifact service (Azurite + the results API on
// loopback) with the real @actions/artifact client.
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { downloadBackupArtifact as DownloadBackupArtifact } from '../../src/destination/artifact.ts';
import type { Manifest } from '../../src/manifest.ts';
import { backupName } from '../../src/naming.ts';
import { startArtifactService, type ArtifactService } from '../harness/artifact-service.ts';
import { startMariaDb, type MariaDbServer } from '../harness/mariadb.ts';
import { startPostgres, type PostgresServer } from '../harness/postgres.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import { startSshd, type SshServer } from '../harness/sshd.ts';
import type { SampleInstance } from '../sample/instance.ts';
import { errorLines, runActionStep, sshInputs, type StepRun } from '../support/action-runner.ts';
import { explain } from '../support/cli-checks.ts';
import { sampleOn, type Engine } from '../support/instances.ts';
import {
  changeInstance,
  expectSameState,
  instanceState,
  type InstanceState,
} from '../support/restore.ts';

let mariadb: MariaDbServer;
let postgres: PostgresServer;
let sshd: SshServer;
let service: ArtifactService;
const scratch = makeScratchDir('restore-action-test');
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

/** One job's runner directory: the backup's and the restore's runner files side by side. */
function workDir(): string {
  const dir = join(scratch.path, `runner ${counter++}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** What the restore leaves in RUNNER_TEMP while it runs: downloads and key directories. */
function runnerLeftovers(dir: string): string[] {
  const temp = join(dir, 'runner-temp');
  return existsSync(temp)
    ? readdirSync(temp).filter(
        (f) => f.startsWith('owncloud-restore-artifact-') || f.startsWith('owncloud-backup-ssh-'),
      )
    : [];
}

let backups = 0;

/**
 * Runs the backup action on the instance over SSH and returns its outputs. Its artifact is
 * named as the default names them (owncloud-backup-YYYYMMDD-HHMMSS), one a second apart, so
 * that two backups within one second do not collide.
 */
async function backUp(instance: SampleInstance, dir: string) {
  const name = backupName(new Date(Date.UTC(2026, 0, 1) + 1000 * backups++));
  const main = await runActionStep('main', {
    inputs: { ...sshInputs(sshd, instance), 'artifact-name': name },
    workDir: dir,
    env: service.env,
    secrets: [instance.dbPassword],
  });
  expect(main.exitCode, explain(main)).toBe(0);
  const post = await runActionStep('post', {
    inputs: sshInputs(sshd, instance),
    workDir: dir,
    env: service.env,
    state: main.state,
    secrets: [instance.dbPassword],
  });
  expect(post.exitCode, explain(post)).toBe(0);
  const manifest = JSON.parse(readFileSync(main.outputs.manifest!, 'utf8')) as Manifest;
  return { outputs: main.outputs, manifest };
}

async function restore(
  step: 'main' | 'post',
  instance: SampleInstance,
  dir: string,
  inputs: Record<string, string>,
  state?: Record<string, string>,
  onSpawn?: Parameters<typeof runActionStep>[1]['onSpawn'],
): Promise<StepRun> {
  return runActionStep(step, {
    action: 'restore',
    inputs,
    workDir: dir,
    env: service.env,
    secrets: [instance.dbPassword, service.apiToken],
    ...(state ? { state } : {}),
    ...(onSpawn ? { onSpawn } : {}),
  });
}

const ADDED = 'alice/files/new after the backup.txt';

describe('the confirm guard', () => {
  let instance: SampleInstance;
  let manifest: Manifest;
  let before: InstanceState;
  let occCalls: number;
  beforeAll(async () => {
    instance = await sample('sqlite');
    ({ manifest } = await backUp(instance, workDir()));
    before = await instanceState(instance, manifest);
    occCalls = instance.occCalls().length;
  });

  const cases: [string, () => Record<string, string>, () => string][] = [
    [
      'an empty confirm',
      () => ({ ...sshInputs(sshd, instance), confirm: '' }),
      () =>
        `Invalid input 'confirm': it is empty, and must be the target '${sshd.host}' (the host input) to confirm that the instance there is overwritten.`,
    ],
    [
      'another host',
      () => ({ ...sshInputs(sshd, instance), confirm: 'cloud.example.com' }),
      () =>
        `Invalid input 'confirm': 'cloud.example.com' is not the target '${sshd.host}' (the host input). Nothing was downloaded or changed; set confirm to exactly the host this restore overwrites.`,
    ],
    [
      "'local' for a remote target",
      () => ({ ...sshInputs(sshd, instance), confirm: 'local' }),
      () =>
        `Invalid input 'confirm': 'local' is not the target '${sshd.host}' (the host input). Nothing was downloaded or changed; set confirm to exactly the host this restore overwrites.`,
    ],
    [
      'a host name for the local target',
      () => ({ 'owncloud-dir': instance.installDir, confirm: sshd.host }),
      () =>
        `Invalid input 'confirm': '${sshd.host}' is not the target 'local' (the host input is empty: this runner). Nothing was downloaded or changed; set confirm to exactly the host this restore overwrites.`,
    ],
  ];

  it.each(cases)(
    '%s refuses before anything is downloaded, and the target is untouched',
    async (_name, inputs, message) => {
      const dir = workDir();
      const requests = service.requests().length;
      const main = await restore('main', instance, dir, inputs());
      expect(main.exitCode, explain(main)).toBe(1);
      expect(errorLines(main)).toEqual([`::error::${message()}`]);
      // The artifact service heard nothing: no list, no signed URL, no download.
      expect(service.requests().slice(requests)).toEqual([]);
      expect(runnerLeftovers(dir)).toEqual([]);
      expect(main.state).toEqual({});
      expect(instance.occCalls()).toHaveLength(occCalls);
      expectSameState(await instanceState(instance, manifest), before);

      const post = await restore('post', instance, dir, inputs(), main.state);
      expect(post.exitCode, explain(post)).toBe(0);
      expect(post.stdout).toContain(
        'The main step changed nothing on the target; nothing to put back.',
      );
    },
  );
});

describe('downloading the backup artifact', () => {
  let instance: SampleInstance;
  let first: Awaited<ReturnType<typeof backUp>>;
  let second: Awaited<ReturnType<typeof backUp>>;
  beforeAll(async () => {
    instance = await sample('sqlite');
    first = await backUp(instance, workDir());
    second = await backUp(instance, workDir());
  });

  /**
   * downloadBackupArtifact in this process, with the step's environment. Imported only now:
   * the client reads GITHUB_API_URL (the REST side of findBy) when it is first loaded.
   */
  async function downloadBackupArtifact(...args: Parameters<typeof DownloadBackupArtifact>) {
    const saved = Object.keys(service.env).map((key) => [key, process.env[key]] as const);
    Object.assign(process.env, service.env);
    try {
      const artifact = await import('../../src/destination/artifact.ts');
      return await artifact.downloadBackupArtifact(...args);
    } finally {
      for (const [key, value] of saved)
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
    }
  }

  function expectSameFilesAs(downloaded: string, backupDir: string): void {
    expect(readdirSync(downloaded).sort()).toEqual(readdirSync(backupDir).sort());
    for (const file of readdirSync(backupDir))
      expect(
        readFileSync(join(downloaded, file)).equals(readFileSync(join(backupDir, file))),
        file,
      ).toBe(true);
  }

  it('takes the newest backup artifact of the run by default, checked against its digest', async () => {
    const into = join(workDir(), 'download');
    const downloaded = await downloadBackupArtifact({}, into);
    // Both backups are in this run; the second is the newer.
    expect(downloaded.artifact.name).toBe(second.outputs['artifact-name']);
    expect(downloaded.artifact.id).toBe(Number(second.outputs['artifact-id']));
    expect(downloaded.artifact.digest).toBe(second.outputs['artifact-digest']);
    expect(downloaded.digestChecked).toBe(true);
    expect(downloaded.from).toBe('this workflow run');
    expect(downloaded.directory).toBe(into);
    expectSameFilesAs(into, second.outputs['backup-dir']!);
  });

  it('takes a named artifact', async () => {
    const into = join(workDir(), 'download');
    const downloaded = await downloadBackupArtifact(
      { name: first.outputs['artifact-name']! },
      into,
    );
    expect(downloaded.artifact.id).toBe(Number(first.outputs['artifact-id']));
    expectSameFilesAs(downloaded.directory, first.outputs['backup-dir']!);
  });

  it("takes another run's artifact through the REST API with findBy (run-id, repository, token)", async () => {
    const into = join(workDir(), 'download');
    const requests = service.requests().length;
    const [owner, name] = service.env.GITHUB_REPOSITORY!.split('/') as [string, string];
    const downloaded = await downloadBackupArtifact(
      {
        name: first.outputs['artifact-name']!,
        findBy: {
          workflowRunId: Number(service.env.GITHUB_RUN_ID),
          repositoryOwner: owner,
          repositoryName: name,
          token: service.apiToken,
        },
      },
      into,
    );
    expect(downloaded.from).toBe(`run ${service.env.GITHUB_RUN_ID} of ${owner}/${name}`);
    expect(downloaded.digestChecked).toBe(true);
    expectSameFilesAs(downloaded.directory, first.outputs['backup-dir']!);
    // It went the REST way, not through this run's results service.
    expect(
      service
        .requests()
        .slice(requests)
        .map((r) => r.call),
    ).toEqual([
      `GET /repos/${owner}/${name}/actions/runs/${service.env.GITHUB_RUN_ID}/artifacts`,
      `GET /repos/${owner}/${name}/actions/artifacts/${first.outputs['artifact-id']}/zip`,
    ]);
  });

  it('says so when the other run has no backup artifact', async () => {
    const [owner, name] = service.env.GITHUB_REPOSITORY!.split('/') as [string, string];
    const into = join(workDir(), 'download');
    await expect(
      downloadBackupArtifact(
        {
          findBy: {
            workflowRunId: 424242,
            repositoryOwner: owner,
            repositoryName: name,
            token: service.apiToken,
          },
        },
        into,
      ),
    ).rejects.toThrow(
      `No backup artifact in run 424242 of ${owner}/${name}: none is named owncloud-backup-YYYYMMDD-HHMMSS (0 other artifacts). Set input 'artifact-name' to restore one named otherwise, or input 'run-id' to take one of another run.`,
    );
    expect(existsSync(into)).toBe(false);
  });

  it('the action refuses an artifact name the run does not have, naming it', async () => {
    const dir = workDir();
    const main = await restore('main', instance, dir, {
      ...sshInputs(sshd, instance),
      confirm: sshd.host,
      'artifact-name': 'owncloud-backup-19990101-000000',
    });
    expect(main.exitCode, explain(main)).toBe(1);
    const [error] = errorLines(main);
    expect(error).toMatch(
      /^::error::No artifact named 'owncloud-backup-19990101-000000' in this workflow run \(input 'artifact-name'\)\. It has: /,
    );
    expect(error).toContain(`'${second.outputs['artifact-name']}'`);
    expect(instance.readConfig().maintenance).toBe(false);
    const post = await restore('post', instance, dir, sshInputs(sshd, instance), main.state);
    expect(post.exitCode, explain(post)).toBe(0);
    expect(runnerLeftovers(dir)).toEqual([]);
  });

  it('the action refuses an artifact whose bytes changed in storage (digest mismatch), and touches nothing', async () => {
    // A third backup to damage: its stored bytes become the first one's, its digest stays.
    const damaged = await backUp(instance, workDir());
    const name = damaged.outputs['artifact-name']!;
    await service.replaceContent(name, first.outputs['artifact-name']!);
    const before = await instanceState(instance, damaged.manifest);
    const occCalls = instance.occCalls().length;

    const dir = workDir();
    const main = await restore('main', instance, dir, {
      ...sshInputs(sshd, instance),
      confirm: sshd.host,
      'artifact-name': name,
    });
    expect(main.exitCode, explain(main)).toBe(1);
    expect(errorLines(main)).toEqual([
      `::error::The artifact '${name}' (id ${damaged.outputs['artifact-id']}, this workflow run) is damaged: the downloaded bytes do not have the digest recorded when it was uploaded (sha256:${damaged.outputs['artifact-digest']}). Nothing was restored.`,
    ]);
    // The download was real (and then removed): the service handed out the artifact's URL.
    expect(
      service.requests().some((r) => r.call === 'GetSignedArtifactURL' && r.artifact === name),
    ).toBe(true);
    expect(existsSync(main.state['download-dir']!)).toBe(false);
    expect(main.state['restore-journal']).toBeUndefined();
    expect(instance.occCalls()).toHaveLength(occCalls);
    expectSameState(await instanceState(instance, damaged.manifest), before);

    const post = await restore('post', instance, dir, sshInputs(sshd, instance), main.state);
    expect(post.exitCode, explain(post)).toBe(0);
    expect(runnerLeftovers(dir)).toEqual([]);
  });
});

describe.each(['sqlite', 'mysql', 'pgsql'] as const)(
  'the restore action on %s over SSH',
  (engine) => {
    it('backup action → instance changed → restore main + post → the instance is as at backup time', async () => {
      const instance = await sample(engine);
      const dir = workDir();
      const backup = await backUp(instance, dir);
      const atBackup = await instanceState(instance, backup.manifest);
      await changeInstance(instance);
      expect(instance.readConfig().maintenance).toBe(true);

      // No artifact-name: the newest backup artifact of the run, the one just made; for
      // PostgreSQL, taken as another run's would be (run-id and github-token: the REST API).
      const inputs: Record<string, string> = { ...sshInputs(sshd, instance), confirm: sshd.host };
      if (engine === 'pgsql')
        Object.assign(inputs, {
          'run-id': service.env.GITHUB_RUN_ID!,
          'github-token': service.apiToken,
        });
      const requests = service.requests().length;
      const main = await restore('main', instance, dir, inputs);
      const calls = service
        .requests()
        .slice(requests)
        .map((r) => r.call);
      expect(calls.some((c) => c.startsWith('GET /repos/'))).toBe(engine === 'pgsql');
      if (engine === 'pgsql') expect(main.stdout).toContain(`::add-mask::${service.apiToken}`);
      expect(main.exitCode, explain(main)).toBe(0);
      expect(main.stdout).toContain(`sha256 ${backup.outputs['artifact-digest']} checked`);
      expect(main.stdout).toMatch(/^::group::Download/m);
      if (engine !== 'sqlite') {
        expect(main.stdout).toContain(`::add-mask::${instance.dbPassword}`);
        expect(main.stdout.split('\n').filter((l) => l.includes(instance.dbPassword))).toEqual([
          `::add-mask::${instance.dbPassword}`,
        ]);
      }
      expect(main.leaks).toEqual([]);

      expectSameState(await instanceState(instance, backup.manifest), atBackup);
      expect(existsSync(join(instance.dataDir, ADDED))).toBe(false);
      expect(instance.readConfig()['data-fingerprint']).toMatch(/^[0-9a-f]{32}$/);
      expect(instance.readConfig().maintenance).toBe(false);
      expect(instance.occCalls().map((c) => c.args.join(' '))).toContain(
        'maintenance:data-fingerprint',
      );

      // Outputs.
      expect(main.outputs['backup-name']).toBe(backup.manifest.name);
      expect(main.outputs['owncloud-version']).toBe('10.15.0.2');
      expect(main.outputs['artifact-name']).toBe(backup.outputs['artifact-name']);
      expect(main.outputs['artifact-id']).toBe(backup.outputs['artifact-id']);
      const previous = main.outputs['previous-state']!.split('\n').filter(Boolean);
      expect(previous.length).toBeGreaterThan(0);
      // The previous state is kept (on the target, here this machine), holding the added file.
      for (const path of previous) expect(existsSync(path), path).toBe(true);

      // The job summary.
      expect(main.summary).toContain(`## ownCloud restored from ${backup.manifest.name}`);
      expect(main.summary).toContain(
        `artifact '${backup.outputs['artifact-name']}' (id ${backup.outputs['artifact-id']}`,
      );
      expect(main.summary).toContain(
        `digest \`sha256:${backup.outputs['artifact-digest']}\` checked`,
      );
      expect(main.summary).toContain(`root@${sshd.host}:${sshd.port}`);
      expect(main.summary).toContain('| Instance | ownCloud 10.15.0.2');
      // Table cells escape '|' (the sample's directory has one).
      for (const path of previous)
        expect(main.summary).toContain(`\`${path.replaceAll('|', '\\|')}\``);
      expect(main.summary).toContain('owncloud-backup restore --cleanup');

      const post = await restore('post', instance, dir, inputs, main.state);
      expect(post.exitCode, explain(post)).toBe(0);
      expect(post.stdout).toContain('The main step finished the restore; nothing to put back.');
      expect(existsSync(main.state['download-dir']!)).toBe(false);
      expect(runnerLeftovers(dir)).toEqual([]);
      expectSameState(await instanceState(instance, backup.manifest), atBackup);
    });
  },
);

describe('a killed restore main step', () => {
  it('the post step puts the previous state back (files, rows, maintenance mode)', async () => {
    const instance = await sample('mysql');
    const dir = workDir();
    const backup = await backUp(instance, dir);
    await changeInstance(instance);
    const beforeRestore = await instanceState(instance, backup.manifest);

    const inputs = { ...sshInputs(sshd, instance), confirm: sshd.host };
    const stateFile = join(dir, 'restore-main', 'state');
    let killedIn: string | undefined;
    const main = await restore('main', instance, dir, inputs, undefined, (child) => {
      // Killed the moment the journal says the target is being replaced.
      const watch = setInterval(() => {
        const text = existsSync(stateFile) ? readFileSync(stateFile, 'utf8') : '';
        if (text.includes('"phase":"replacing"')) {
          killedIn = 'replacing';
          child.kill('SIGKILL');
          clearInterval(watch);
        }
      }, 5);
      child.once('close', () => clearInterval(watch));
    });
    expect(killedIn, explain(main)).toBe('replacing');
    expect(main.signal).toBe('SIGKILL');

    const post = await restore('post', instance, dir, inputs, main.state);
    expect(post.exitCode, explain(post)).toBe(0);
    expect(post.stdout).toContain(
      'The main step was stopped while replacing the instance (cancelled or killed): putting the previous state back.',
    );
    expect(post.stdout).toContain('The previous state is back');
    expectSameState(await instanceState(instance, backup.manifest), beforeRestore);
    expect(existsSync(join(instance.dataDir, ADDED))).toBe(true);
    expect(runnerLeftovers(dir)).toEqual([]);
  });
});

describe('the restore action with path', () => {
  it('brings back a deleted file into the running instance, says so in the summary, and the post step has nothing to do', async () => {
    const instance = await sample('sqlite');
    const dir = workDir();
    const backup = await backUp(instance, dir);
    const file = join(instance.dataDir, 'alice/files/Documents/Welcome.txt');
    const content = readFileSync(file);
    rmSync(file);
    const inputs = {
      ...sshInputs(sshd, instance),
      confirm: sshd.host,
      path: 'alice/files/Documents/Welcome.txt',
      'safety-copy': 'true',
      'discard-previous': 'false',
      'allow-version-mismatch': 'false',
      'as-copy': 'false',
      overwrite: 'false',
    };
    const main = await restore('main', instance, dir, inputs);
    expect(main.exitCode, explain(main)).toBe(0);
    expect(readFileSync(file)).toEqual(content);
    expect(instance.occCalls().map((c) => c.args.join(' '))).toContain(
      'files:scan --path=/alice/files/Documents/Welcome.txt',
    );
    expect(instance.occCalls().map((c) => c.args.join(' '))).not.toContain(
      'maintenance:data-fingerprint',
    );
    expect(main.outputs['backup-name']).toBe(backup.manifest.name);
    expect(main.outputs['previous-state']).toBe('');
    expect(main.summary).toContain(`## ownCloud: 1 file restored from ${backup.manifest.name}`);
    expect(main.summary).toContain('- `alice/files/Documents/Welcome.txt`');
    expect(main.leaks).toEqual([]);
    const post = await restore('post', instance, dir, inputs, main.state);
    expect(post.exitCode, explain(post)).toBe(0);
    expect(post.stdout).toContain('A restore of single paths puts back what it moved itself');
    expect(runnerLeftovers(dir)).toEqual([]);
  });
});
