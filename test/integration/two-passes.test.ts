// The two passes of a backup: the base archive read while the instance is live, the delta
// read inside the maintenance window. What changes in between (a file rewritten, one added,
// one deleted, a directory removed) is in the backup in its state at the dump, restored the
// README's way (base, then delta) and by the tool (whole instance, --list, --path).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalHost } from '../../src/host/local.ts';
import { streamFiles, type FileSet } from '../../src/steps/files.ts';
import { startMariaDb, type MariaDbServer } from '../harness/mariadb.ts';
import { startPostgres, type PostgresServer } from '../harness/postgres.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import { startSshd, type SshServer } from '../harness/sshd.ts';
import type { SampleInstance } from '../sample/instance.ts';
import { sampleOn } from '../support/instances.ts';
import { runBackupCli, runRestoreCli } from '../support/backup-run.ts';
import { explain, sshArgs } from '../support/cli-checks.ts';
import { holdOccAt } from '../support/occ-hold.ts';
import { archivePath, finishedBackup, unpackFiles } from '../support/restore.ts';
import { diffTrees, snapshotTree } from '../support/tree.ts';

let mariadb: MariaDbServer;
let postgres: PostgresServer;
let sshd: SshServer;
const scratch = makeScratchDir('two-passes');
chmodSync(scratch.path, 0o755);
let counter = 0;

beforeAll(async () => {
  [mariadb, postgres, sshd] = await Promise.all([startMariaDb(), startPostgres(), startSshd()]);
});
afterAll(async () => {
  await Promise.all([mariadb?.stop(), postgres?.stop(), sshd?.stop()]);
  scratch.remove();
});

const DOCS = 'alice/files/Documents';

/** Between the passes: maintenance mode is on, the window's work has not begun. */
function changeBetweenPasses(instance: SampleInstance): void {
  const docs = join(instance.dataDir, DOCS);
  writeFileSync(join(docs, 'Welcome.txt'), 'rewritten after the base pass\n');
  writeFileSync(join(docs, 'added in the window.txt'), 'new\n');
  rmSync(join(docs, 'Projects', '2026', 'plan.md'));
  rmSync(join(instance.dataDir, 'alice', 'files', 'Photos'), { recursive: true, force: true });
  mkdirSync(join(docs, 'New folder'));
  writeFileSync(join(docs, 'New folder', 'inside.txt'), 'inside\n');
  for (const path of ['added in the window.txt', 'New folder', 'New folder/inside.txt'])
    chownSync(join(docs, path), instance.owner.uid, instance.owner.gid);
}

async function backupWithChanges(
  instance: SampleInstance,
  transport: 'local' | 'ssh',
): Promise<ReturnType<typeof finishedBackup>> {
  const backupDir = join(instance.root, 'backups');
  mkdirSync(backupDir);
  const hold = holdOccAt(instance, 'maintenance:mode --on');
  const running = runBackupCli(
    [
      '--owncloud-dir',
      instance.installDir,
      '--backup-dir',
      backupDir,
      ...(transport === 'ssh' ? sshArgs(sshd) : []),
    ],
    { secrets: [instance.dbPassword] },
  );
  try {
    const occPid = await Promise.race([hold.reached(), running.then(() => -1)]);
    expect(occPid, 'the backup never switched maintenance mode on').toBeGreaterThan(0);
    changeBetweenPasses(instance);
  } finally {
    hold.release();
  }
  const run = await running;
  expect(run.exitCode, explain(run)).toBe(0);
  return finishedBackup(backupDir);
}

describe.each(['local', 'ssh'] as const)('what changes between the passes (%s)', (transport) => {
  it('is in the backup as it was at the dump: changed, added and deleted files and folders', async () => {
    const instance = await sampleOn('sqlite', { mariadb, postgres }, scratch.path, counter++);
    const backup = await backupWithChanges(instance, transport);
    const delta = backup.manifest.archives.find((a) => a.role === 'files-delta');
    expect(delta?.name).toMatch(/^owncloud-files-delta_\d{8}\.tar\.zst$/);
    const leftOut = new Set(backup.manifest.files.leftOut);
    const expected = await snapshotTree(instance.dataDir, { exclude: (p) => leftOut.has(p) });

    // The README's way: the files archive, then the delta over it.
    const restored = join(instance.root, 'unpacked');
    unpackFiles(archivePath(backup, 'files'), restored);
    expect(diffTrees(expected, await snapshotTree(join(restored, 'data')))).toEqual([]);
    expect(readFileSync(join(restored, 'data', DOCS, 'Welcome.txt'), 'utf8')).toBe(
      'rewritten after the base pass\n',
    );
    // The base archive alone holds the state before: the delta is what makes it right.
    const baseOnly = join(instance.root, 'base-only');
    mkdirSync(baseOnly);
    execFileSync('tar', [
      '--extract',
      '--zstd',
      `--file=${archivePath(backup, 'files')}`,
      `--directory=${baseOnly}`,
    ]);
    const differences = diffTrees(expected, await snapshotTree(join(baseOnly, 'data')));
    expect(differences.join('\n')).toContain('plan.md');
    expect(differences.join('\n')).toContain('added in the window.txt');

    // --list shows the state at the dump.
    const list = await runRestoreCli([backup.dir, '--list', DOCS], { secrets: [] });
    expect(list.exitCode, explain(list)).toBe(0);
    expect(list.stdout).toContain('added in the window.txt');
    expect(list.stdout).toContain('New folder/inside.txt');
    expect(list.stdout).not.toContain('plan.md');
    expect(list.stdout).toMatch(/ 30 {2}\d{4}-\d\d-\d\d \d\d:\d\d:\d\d {2}Welcome\.txt\n/);

    // The whole instance, restored in place by the tool over a changed state.
    writeFileSync(join(instance.dataDir, DOCS, 'Welcome.txt'), 'changed after the backup\n');
    const restore = await runRestoreCli([backup.dir, '--owncloud-dir', instance.installDir], {
      secrets: [instance.dbPassword],
    });
    expect(restore.exitCode, explain(restore)).toBe(0);
    const after = await snapshotTree(instance.dataDir, {
      exclude: (p) => leftOut.has(p) || p.startsWith('.owncloud-restore-previous-'),
    });
    const withoutDb = await snapshotTree(join(restored, 'data'));
    expect(diffTrees(withoutDb, after)).toEqual([]);
    instance.remove();
  });
});

describe('a disk that fills while the base archive is written', () => {
  it('stops tar and says so, with the path, leaving no partial archive', async () => {
    const dir = join(scratch.path, 'full-disk');
    const source = join(dir, 'source');
    const small = join(dir, 'small disk');
    mkdirSync(source, { recursive: true });
    mkdirSync(small);
    // 64 MiB that do not compress, for a disk of 2 MiB.
    writeFileSync(join(source, 'big'), randomBytes(64 * 1024 * 1024));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', small]);
    try {
      const path = join(small, 'owncloud-files_20260101.tar.zst');
      const fileSet = {
        parts: [{ source, member: 'data', part: 'data', patternRoot: '' }],
        skip: [],
        readAs: [],
        exclude: [],
        installDir: join(dir, 'none'),
      } as unknown as FileSet;
      await expect(
        streamFiles(new LocalHost(), fileSet, {
          phase: 'base',
          snapshot: join(dir, 'snapshot'),
          path,
          compression: 'zstd',
          signal: new AbortController().signal,
        }),
      ).rejects.toThrow(/^No space left on device writing .*owncloud-files_20260101\.tar\.zst/);
      expect(readdirSync(small)).toEqual([]);
    } finally {
      execFileSync('umount', [small]);
    }
  });
});
