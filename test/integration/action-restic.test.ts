// The action with `destination: restic`: the committed bundle run as the runner runs it,
// over SSH, into a local repository on the host; the outputs name the backup and its
// manifest snapshot, the repository holds the instance's files and rows, the password and
// the backend variable named in restic-env are masked at once and in no argv, keep-* apply
// to the repository, and keep-* with an artifact are refused naming the input.
import { execFileSync } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeScratchDir } from '../harness/scratch.ts';
import { startSshd, type SshServer } from '../harness/sshd.ts';
import { requireTool } from '../harness/tools.ts';
import { sqliteDatabase } from '../sample/database.ts';
import { errorLines, runActionStep, sshInputs } from '../support/action-runner.ts';
import { explain } from '../support/cli-checks.ts';
import { sampleOn, type DatabaseServers } from '../support/instances.ts';
import { expectSameDatabase } from '../support/restore.ts';
import { diffTrees, snapshotTree } from '../support/tree.ts';

let sshd: SshServer;
const scratch = makeScratchDir('action-restic');
chmodSync(scratch.path, 0o755);
let counter = 0;
/** SQLite samples only: no database server is needed. */
const SQLITE_ONLY = {} as DatabaseServers;
const PASSWORD = `action restic ${process.pid} $(id) 'q'`;
const BACKEND_SECRET = `backend value ${process.pid} "d"`;

beforeAll(async () => {
  sshd = await startSshd();
});
afterAll(async () => {
  await sshd?.stop();
  scratch.remove();
});

function restic(repository: string, args: string[]): Buffer {
  return execFileSync(requireTool('restic'), args, {
    env: { ...process.env, RESTIC_REPOSITORY: repository, RESTIC_PASSWORD: PASSWORD },
    maxBuffer: 64 * 1024 * 1024,
  });
}

describe('the action with destination restic', () => {
  it('backs up into the repository over SSH, outputs the snapshot, masks the secrets', async () => {
    const instance = await sampleOn('sqlite', SQLITE_ONLY, scratch.path, counter++);
    const repository = join(scratch.path, `repository-${counter++}`);
    const dir = join(scratch.path, `runner ${counter++}`);
    const main = await runActionStep('main', {
      inputs: {
        ...sshInputs(sshd, instance),
        destination: 'restic',
        'restic-repository': repository,
        'restic-password': PASSWORD,
        'restic-env': 'SOME_BACKEND_KEY',
        'restic-init': 'true',
        check: 'metadata',
        'keep-last': '1',
        'restore-test': 'true',
      },
      env: { SOME_BACKEND_KEY: BACKEND_SECRET },
      workDir: dir,
      secrets: [PASSWORD, BACKEND_SECRET],
    });
    expect(main.exitCode, explain(main)).toBe(0);
    expect(main.leaks).toEqual([]);
    for (const secret of [PASSWORD, BACKEND_SECRET]) {
      const lines = main.stdout.split('\n').filter((l) => l.includes(secret));
      expect(lines).toEqual([`::add-mask::${secret}`]);
      expect(main.stderr).not.toContain(secret);
    }
    expect(main.outputs['backup-name']).toMatch(/^owncloud-backup-\d{8}-\d{6}$/);
    expect(main.outputs['restic-snapshot']).toMatch(/^[0-9a-f]{8,64}$/);
    expect(main.summary).toContain('ownCloud backup into restic');
    // restore-test is on by default in the action: said not to be run, not an error.
    expect(main.stdout).toContain('::warning::The restore test is not run for a restic repository');
    expect(main.stdout).toContain('restic check (metadata): no errors were found.');

    const snapshots = JSON.parse(restic(repository, ['snapshots', '--json']).toString()) as {
      id: string;
      tags: string[];
    }[];
    const part = (name: string) => snapshots.find((s) => s.tags.includes(`part=${name}`))!;
    expect(part('manifest').id.startsWith(main.outputs['restic-snapshot']!)).toBe(true);
    const target = join(scratch.path, `restored-${counter++}`);
    restic(repository, ['restore', part('install').id, '--target', target]);
    restic(repository, ['restore', part('files').id, '--target', target]);
    const dbFile = `${instance.config.dbname as string}.db`;
    const expected = await snapshotTree(instance.dataDir, { exclude: (p) => p === dbFile });
    expect(diffTrees(expected, await snapshotTree(join(target, instance.dataDir)))).toEqual([]);
    const manifest = JSON.parse(
      restic(repository, ['dump', part('manifest').id, '/manifest.json']).toString(),
    ) as { database: { dumpFile: string } };
    const loaded = join(scratch.path, `loaded-${counter++}.db`);
    execFileSync(requireTool('sqlite3'), ['-bail', loaded], {
      input: restic(repository, ['dump', part('database').id, `/${manifest.database.dumpFile}`]),
    });
    expect(await expectSameDatabase(instance.database, sqliteDatabase(loaded))).toBeGreaterThan(20);
    expect(instance.readConfig().maintenance).toBe(false);
    instance.remove();
  });

  it('refuses keep-* with an artifact, naming the input', async () => {
    const instance = await sampleOn('sqlite', SQLITE_ONLY, scratch.path, counter++);
    const main = await runActionStep('main', {
      inputs: { ...sshInputs(sshd, instance), 'keep-daily': '7' },
      workDir: join(scratch.path, `runner ${counter++}`),
      secrets: [],
    });
    expect(main.exitCode, explain(main)).toBe(1);
    expect(errorLines(main)).toEqual([
      "::error::Invalid input 'keep-daily': artifacts expire by retention-days; the keep-* inputs apply with input 'destination' restic.",
    ]);
    instance.remove();
  });
});
