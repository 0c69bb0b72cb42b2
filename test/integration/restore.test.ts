// `owncloud-backup restore`: a backup of a sample instance comes back over a changed
// instance (a file added, one deleted, one modified, a user row added, maintenance mode left
// on by an admin), for each engine; afterwards every file (bytes, owners, modes, ACLs,
// xattrs, hard links) and every row equal the state at backup time, and occ was told.
import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMariaDb, type MariaDbServer } from '../harness/mariadb.ts';
import { startPostgres, type PostgresServer } from '../harness/postgres.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import { runBackupCli, runRestoreCli, type CliRun } from '../support/backup-run.ts';
import { sampleOn, type Engine } from '../support/instances.ts';
import {
  changeInstance,
  expectSameState,
  finishedBackup,
  instanceState,
} from '../support/restore.ts';
import { diffTrees } from '../support/tree.ts';

let mariadb: MariaDbServer;
let postgres: PostgresServer;
const scratch = makeScratchDir('restore');
chmodSync(scratch.path, 0o755);
let counter = 0;

beforeAll(async () => {
  [mariadb, postgres] = await Promise.all([startMariaDb(), startPostgres()]);
});
afterAll(async () => {
  await Promise.all([mariadb?.stop(), postgres?.stop()]);
  scratch.remove();
});

function expectOk(run: CliRun): void {
  expect(run.exitCode, `${run.stdout}\n${run.stderr}`).toBe(0);
  expect(run.leaks).toEqual([]);
}

describe('restore onto the instance it was taken from (in place)', () => {
  for (const engine of ['sqlite', 'mysql', 'pgsql'] as Engine[])
    it(`${engine}: files, rows and the recorded maintenance state come back; the added file is gone`, async () => {
      const instance = await sampleOn(engine, { mariadb, postgres }, scratch.path, counter++);
      const backupDir = join(instance.root, 'backups');
      mkdirSync(backupDir);
      expectOk(
        await runBackupCli(['--owncloud-dir', instance.installDir, '--backup-dir', backupDir], {
          secrets: [instance.dbPassword],
        }),
      );
      const backup = finishedBackup(backupDir);
      const before = await instanceState(instance, backup.manifest);
      await changeInstance(instance);
      const changed = await instanceState(instance, backup.manifest);
      expect(diffTrees(before.data, changed.data)).not.toEqual([]);
      expect(changed.rows).not.toEqual(before.rows);
      const callsBefore = instance.occCalls().length;

      const run = await runRestoreCli([backup.dir, '--owncloud-dir', instance.installDir], {
        secrets: [instance.dbPassword],
      });
      expectOk(run);
      const after = await instanceState(instance, backup.manifest);
      expectSameState(after, before);
      expect(existsSync(join(instance.dataDir, 'alice', 'files', 'new after the backup.txt'))).toBe(
        false,
      );
      const fingerprint = instance.readConfig()['data-fingerprint'];
      expect(fingerprint).toMatch(/^[0-9a-f]{32}$/);
      expect(instance.readConfig().maintenance).toBe(false);
      const calls = instance
        .occCalls()
        .slice(callsBefore)
        .map((c) => c.args.join(' '));
      expect(calls).toContain('maintenance:data-fingerprint');
      expect(calls.at(-1)).toBe('maintenance:mode --off');
      // The previous state is kept, and named.
      expect(run.stdout).toMatch(/previous state kept in .*\.owncloud-restore-previous-/);
      instance.remove();
    });
});
