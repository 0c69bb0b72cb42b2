// restore --path on an instance with server-side encryption (the sample in master-key and
// per-user-key mode, laid out as ownCloud 10's default module leaves it): the restored files'
// key directories come back with them, the scan's cache rows of exactly those files get the
// `encrypted` value and sizes recorded at backup time (versions counters > 1 included),
// directories keep encrypted = 0, and no other row changes. A user's key pair that changed
// refuses the restore; a master key that changed is brought back, with a warning.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMariaDb, type MariaDbServer } from '../harness/mariadb.ts';
import { startPostgres, type PostgresServer } from '../harness/postgres.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import type { SampleInstance } from '../sample/instance.ts';
import { runRestoreCli } from '../support/backup-run.ts';
import { sampleOn, type Engine } from '../support/instances.ts';
import {
  backUp,
  below,
  cacheRows,
  containers,
  dataTree,
  deleteAsOwnCloud,
  expectOk,
  otherRows,
  restoreArgs,
  split,
  type CacheRow,
} from '../support/path-restore.ts';
import { diffTrees } from '../support/tree.ts';
import { chmodSync } from 'node:fs';

let mariadb: MariaDbServer;
let postgres: PostgresServer;
const scratch = makeScratchDir('restore-paths-encrypted');
chmodSync(scratch.path, 0o755);
let counter = 0;

beforeAll(async () => {
  [mariadb, postgres] = await Promise.all([startMariaDb(), startPostgres()]);
});
afterAll(async () => {
  await Promise.all([mariadb?.stop(), postgres?.stop()]);
  scratch.remove();
});

const FILE = 'files/Documents/Welcome.txt';
const FOLDER = 'files/Ünïcødé dir';

/** Deleting as ownCloud does with encryption on: the files, their cache rows, their keys. */
async function deleteWithKeys(instance: SampleInstance, user: string, paths: string[]) {
  await deleteAsOwnCloud(instance, user, paths);
  for (const path of paths)
    rmSync(join(instance.dataDir, user, 'files_encryption', 'keys', path), {
      recursive: true,
      force: true,
    });
}

describe('restore --path with server-side encryption', () => {
  const cases: [Engine, 'master-key' | 'per-user-key'][] = [
    ['mysql', 'master-key'],
    ['sqlite', 'per-user-key'],
    ['pgsql', 'per-user-key'],
  ];
  for (const [engine, mode] of cases)
    it(`${engine}, ${mode}: keys back, the recorded cache values on exactly the restored files`, async () => {
      const instance = await sampleOn(engine, { mariadb, postgres }, scratch.path, counter++, {
        encryption: mode,
      });
      const backup = await backUp(instance);
      expect(backup.manifest.encryption).toMatchObject({ enabled: true, mode });
      const atBackup = await dataTree(instance);
      const recorded = instance.encryption!.encryptedFiles.filter(
        (f) => f.storage === 'home::alice' && (f.path === FILE || below(f.path, FOLDER)),
      );
      // Several files written more than once: their counter is what must come back.
      expect(recorded.filter((f) => f.encrypted > 1).length).toBeGreaterThanOrEqual(3);
      await deleteWithKeys(instance, 'alice', [FILE, FOLDER]);
      const beforeCache = await cacheRows(instance);
      const beforeOther = await otherRows(instance);

      const run = await runRestoreCli(
        restoreArgs(instance, backup.dir, ['--path', `alice/${FILE}`, '--path', `alice/${FOLDER}`]),
        { secrets: [instance.dbPassword] },
      );
      expectOk(run);
      // Files and keys as at backup time.
      const roots = [FILE, FOLDER].flatMap((p) => [
        `alice/${p}`,
        `alice/files_encryption/keys/${p}`,
      ]);
      const after = await dataTree(instance);
      expect(diffTrees(split(atBackup, roots).inside, split(after, roots).inside)).toEqual([]);
      expect(
        readFileSync(
          join(instance.dataDir, 'alice/files_encryption/keys', FILE, 'OC_DEFAULT_MODULE/fileKey'),
        ).length,
      ).toBeGreaterThan(0);
      // The restored files' rows hold the recorded values; their folders encrypted = 0.
      const cache = await cacheRows(instance);
      const restored = (r: CacheRow) =>
        r.storage === 'home::alice' && (r.path === FILE || below(r.path, FOLDER));
      const values = (rows: { path: string; encrypted: number; size: number }[]) =>
        rows.map((r) => `${r.path} ${r.encrypted} ${r.size}`).sort();
      const files = cache.filter((r) => restored(r) && r.mimetype !== 'httpd/unix-directory');
      expect(values(files)).toEqual(values(recorded));
      expect(files.map((r) => [r.path, r.unencryptedSize]).sort()).toEqual(
        recorded.map((r) => [r.path, r.unencrypted_size]).sort(),
      );
      const folders = cache.filter((r) => restored(r) && r.mimetype === 'httpd/unix-directory');
      expect(folders.map((r) => r.path)).toEqual([FOLDER]);
      expect(folders.every((r) => r.encrypted === 0)).toBe(true);
      // No other row changed, in the file cache or anywhere else.
      expect(
        cache
          .filter((r) => !restored(r))
          .map((r) => r.all)
          .sort(),
      ).toEqual(beforeCache.map((r) => r.all).sort());
      expect(await otherRows(instance)).toEqual(beforeOther);
      expect(run.stdout).toContain(
        `${recorded.length} file cache rows hold the encryption values recorded at backup time`,
      );
      expect(containers(instance)).toEqual([]);
      instance.remove();
    });

  it("per-user keys: a user's key pair that changed since the backup refuses the restore", async () => {
    const instance = await sampleOn('sqlite', { mariadb, postgres }, scratch.path, counter++, {
      encryption: 'per-user-key',
    });
    const backup = await backUp(instance);
    await deleteWithKeys(instance, 'alice', [FILE]);
    writeFileSync(
      join(instance.dataDir, 'alice/files_encryption/OC_DEFAULT_MODULE/alice.publicKey'),
      '-----BEGIN PUBLIC KEY-----\nnew\n-----END PUBLIC KEY-----\n',
    );
    const before = await dataTree(instance);
    const beforeCache = await cacheRows(instance);
    const run = await runRestoreCli(
      restoreArgs(instance, backup.dir, ['--path', `alice/${FILE}`]),
      {
        secrets: [instance.dbPassword],
      },
    );
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain("alice's key pair changed since the backup");
    expect(run.stderr).toContain('Nothing was changed on the target.');
    expect(diffTrees(before, await dataTree(instance))).toEqual([]);
    expect((await cacheRows(instance)).map((r) => r.all).sort()).toEqual(
      beforeCache.map((r) => r.all).sort(),
    );
    expect(containers(instance)).toEqual([]);
    instance.remove();
  });

  it("master key: one that differs from the backup's is restored with a warning, the other kept", async () => {
    const instance = await sampleOn('sqlite', { mariadb, postgres }, scratch.path, counter++, {
      encryption: 'master-key',
    });
    const backup = await backUp(instance);
    const master = instance.encryption!.keyPairs.find((k) => k.id.startsWith('master_'))!;
    const original = readFileSync(join(instance.dataDir, master.publicKey));
    await deleteWithKeys(instance, 'alice', [FILE]);
    writeFileSync(join(instance.dataDir, master.publicKey), 'a different master key\n');
    const run = await runRestoreCli(
      restoreArgs(instance, backup.dir, ['--path', `alice/${FILE}`]),
      {
        secrets: [instance.dbPassword],
      },
    );
    expectOk(run);
    expect(run.stderr).toContain(
      `The master key ${master.publicKey.split('/').pop()} in the instance`,
    );
    expect(readFileSync(join(instance.dataDir, master.publicKey))).toEqual(original);
    const kept = containers(instance);
    expect(kept).toHaveLength(1);
    expect(readFileSync(join(kept[0]!, master.publicKey), 'utf8')).toBe('a different master key\n');
    instance.remove();
  });
});
