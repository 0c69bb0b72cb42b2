// `owncloud-backup restore BACKUP-DIR --path USER/files/...`: single files and folders come
// back into the running instance, byte for byte with owners, modes, ACLs and xattrs, the file
// cache knows them (occ files:scan), and nothing else in the instance changes: every other
// file and every other row are compared before and after. Also the conflict rules (skip a
// newer current file unless --overwrite, --as-copy beside it) and --list.
import { appendFileSync, chmodSync, readFileSync, rmSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMariaDb, type MariaDbServer } from '../harness/mariadb.ts';
import { startPostgres, type PostgresServer } from '../harness/postgres.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import { startSshd, type SshServer } from '../harness/sshd.ts';
import { sshArgs } from '../support/cli-checks.ts';
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
  withoutMtimes,
  type CacheRow,
} from '../support/path-restore.ts';
import { diffTrees } from '../support/tree.ts';

let mariadb: MariaDbServer;
let postgres: PostgresServer;
let sshd: SshServer;
const scratch = makeScratchDir('restore-paths');
chmodSync(scratch.path, 0o755);
let counter = 0;

beforeAll(async () => {
  [mariadb, postgres, sshd] = await Promise.all([startMariaDb(), startPostgres(), startSshd()]);
});
afterAll(async () => {
  await Promise.all([mariadb?.stop(), postgres?.stop(), sshd?.stop()]);
  scratch.remove();
});

describe('restore --path brings back a deleted file and a deleted folder, and nothing else changes', () => {
  const cases: [Engine, 'local' | 'ssh'][] = [
    ['sqlite', 'local'],
    ['mysql', 'ssh'],
    ['pgsql', 'local'],
  ];
  for (const [engine, transport] of cases)
    it(`${engine} (${transport})`, async () => {
      const instance = await sampleOn(engine, { mariadb, postgres }, scratch.path, counter++);
      const via = transport === 'ssh' ? sshArgs(sshd) : [];
      const backup = await backUp(instance, via);
      const atBackup = await dataTree(instance);
      const cacheAtBackup = await cacheRows(instance);
      const restored = ['files/Documents/Welcome.txt', 'files/Photos'];
      await deleteAsOwnCloud(instance, 'alice', restored);
      const beforeTree = await dataTree(instance);
      const beforeCache = await cacheRows(instance);
      const beforeOther = await otherRows(instance);
      const scansBefore = instance.occCalls().length;

      const run = await runRestoreCli(
        restoreArgs(instance, backup.dir, [
          ...via,
          '--path',
          'alice/files/Documents/Welcome.txt',
          '--path',
          'alice/files/Photos/',
        ]),
        { secrets: [instance.dbPassword] },
      );
      expectOk(run);
      const roots = restored.map((r) => `alice/${r}`);
      const after = await dataTree(instance);
      // The restored paths equal the backup's (bytes, owners, modes, ACLs, xattrs)...
      const parents = ['alice/files', 'alice/files/Documents'];
      expect(diffTrees(split(atBackup, roots).inside, split(after, roots).inside)).toEqual([]);
      expect(split(after, roots).inside.size).toBeGreaterThanOrEqual(4);
      expect(after.get('alice/files/Documents/Welcome.txt')?.acl).toMatch(/user:65534:r--/);
      expect(Object.keys(after.get('alice/files/Photos/binary.jpg')?.xattrs ?? {})).toContain(
        'user.owncloud.checksum',
      );
      // ...and everything else is as it was before the restore (the parents' mtimes moved
      // with the entries renamed into them).
      expect(
        diffTrees(
          withoutMtimes(split(beforeTree, roots).outside, parents),
          withoutMtimes(split(after, roots).outside, parents),
        ),
      ).toEqual([]);
      // occ files:scan ran for each, as the web server's user, without maintenance mode.
      const calls = instance.occCalls().slice(scansBefore);
      expect(calls.map((c) => c.args.join(' '))).toEqual([
        'files:scan --path=/alice/files/Documents/Welcome.txt',
        'files:scan --path=/alice/files/Photos',
      ]);
      expect(calls.every((c) => c.user === instance.owner.name && c.exit === 0)).toBe(true);
      expect(instance.readConfig().maintenance).toBe(false);
      // The file cache holds the restored entries with their sizes; every other row is unchanged.
      const cache = await cacheRows(instance);
      const isRestored = (r: CacheRow) =>
        r.storage === 'home::alice' && restored.some((p) => below(r.path, p));
      expect(
        cache
          .filter((r) => !isRestored(r))
          .map((r) => r.all)
          .sort(),
      ).toEqual(beforeCache.map((r) => r.all).sort());
      const summary = (rows: CacheRow[]) =>
        rows
          .filter(isRestored)
          .map((r) => `${r.path} ${r.size} ${r.mimetype}`)
          .sort();
      expect(summary(cache)).toEqual(summary(cacheAtBackup));
      expect(summary(cache).length).toBeGreaterThanOrEqual(4);
      expect(await otherRows(instance)).toEqual(beforeOther);
      // Nothing was replaced, so no previous state is kept.
      expect(containers(instance)).toEqual([]);
      expect(run.stdout).toContain('nothing was replaced');
      instance.remove();
    });
});

describe('what happens to files that exist already', () => {
  it('a newer current file is skipped and named; --overwrite replaces it and keeps it aside', async () => {
    const instance = await sampleOn('sqlite', { mariadb, postgres }, scratch.path, counter++);
    const backup = await backUp(instance);
    const plan = join(instance.dataDir, 'alice/files/Documents/Projects/2026/plan.md');
    const planAtBackup = readFileSync(plan);
    appendFileSync(plan, '- changed after the backup\n');
    const later = new Date(Date.now() + 3600_000);
    utimesSync(plan, later, later);
    const changed = readFileSync(plan);
    await deleteAsOwnCloud(instance, 'alice', ['files/Documents/Welcome.txt']);

    const run = await runRestoreCli(
      restoreArgs(instance, backup.dir, ['--path', 'alice/files/Documents']),
      { secrets: [instance.dbPassword] },
    );
    expectOk(run);
    expect(readFileSync(plan)).toEqual(changed);
    expect(readFileSync(join(instance.dataDir, 'alice/files/Documents/Welcome.txt'), 'utf8')).toBe(
      'Welcome to ownCloud, alice!\n',
    );
    expect(run.stdout).toContain(
      'skipped alice/files/Documents/Projects/2026/plan.md: the current file is newer',
    );
    expect(run.stdout).toContain('--overwrite');
    expect(run.stdout).toContain('restored alice/files/Documents/Welcome.txt');
    expect(containers(instance)).toEqual([]);

    const overwrite = await runRestoreCli(
      restoreArgs(instance, backup.dir, ['--path', 'alice/files/Documents', '--overwrite']),
      { secrets: [instance.dbPassword] },
    );
    expectOk(overwrite);
    expect(readFileSync(plan)).toEqual(planAtBackup);
    expect(overwrite.stdout).toContain('restored alice/files/Documents/Projects/2026/plan.md');
    // Welcome.txt is as in the backup already: left alone.
    expect(overwrite.stdout).toMatch(/already as in the backup, left alone/);
    const kept = containers(instance);
    expect(kept).toHaveLength(1);
    expect(readFileSync(join(kept[0]!, 'alice/files/Documents/Projects/2026/plan.md'))).toEqual(
      changed,
    );
    expect(statSync(kept[0]!).mode & 0o777).toBe(0o700);
    expect(overwrite.stdout).toContain('restore --cleanup');
    // The command it names finds and removes it.
    const cleanup = await runRestoreCli(['--cleanup', '--owncloud-dir', instance.installDir], {
      secrets: [instance.dbPassword],
    });
    expectOk(cleanup);
    expect(cleanup.stdout).toContain(`Removed ${kept[0]}`);
    expect(containers(instance)).toEqual([]);
    instance.remove();
  });

  it("--as-copy puts the backup's file beside the current one, which stays as it is", async () => {
    const instance = await sampleOn('pgsql', { mariadb, postgres }, scratch.path, counter++);
    const backup = await backUp(instance);
    const welcome = join(instance.dataDir, 'alice/files/Documents/Welcome.txt');
    appendFileSync(welcome, 'edited after the backup\n');
    const current = readFileSync(welcome);
    const run = await runRestoreCli(
      restoreArgs(instance, backup.dir, [
        '--path',
        'alice/files/Documents/Welcome.txt',
        '--path',
        'alice/files/Photos',
        '--as-copy',
      ]),
      { secrets: [instance.dbPassword] },
    );
    expectOk(run);
    const day = backup.manifest.startedAt.slice(0, 10);
    const copy = `alice/files/Documents/Welcome (restored ${day}).txt`;
    expect(readFileSync(welcome)).toEqual(current);
    expect(readFileSync(join(instance.dataDir, copy), 'utf8')).toBe(
      'Welcome to ownCloud, alice!\n',
    );
    expect(
      readFileSync(join(instance.dataDir, `alice/files/Photos (restored ${day})/binary.jpg`)),
    ).toEqual(readFileSync(join(instance.dataDir, 'alice/files/Photos/binary.jpg')));
    expect(run.stdout).toContain(`as ${copy}`);
    const cache = await cacheRows(instance);
    expect(cache.find((r) => r.storage === 'home::alice' && r.path === copy.slice(6))?.size).toBe(
      'Welcome to ownCloud, alice!\n'.length,
    );
    expect(containers(instance)).toEqual([]);
    instance.remove();
  });
});

describe('versions and the trash bin', () => {
  it('a deleted version and a trash bin entry come back as files, and the message says so', async () => {
    const instance = await sampleOn('sqlite', { mariadb, postgres }, scratch.path, counter++);
    const backup = await backUp(instance);
    const version = 'alice/files_versions/Documents/Welcome.txt.v1764000000';
    const trash = 'alice/files_trashbin/files/old.txt.d1764000000';
    const at = await dataTree(instance);
    rmSync(join(instance.dataDir, version));
    rmSync(join(instance.dataDir, trash));
    const run = await runRestoreCli(
      restoreArgs(instance, backup.dir, ['--path', version, '--path', trash]),
      { secrets: [instance.dbPassword] },
    );
    expectOk(run);
    const after = await dataTree(instance);
    expect(after.get(version)).toEqual(at.get(version));
    expect(after.get(trash)).toEqual(at.get(trash));
    expect(run.stdout).toContain(
      `restored as files (versions and trash bin are not scanned): ${version}, ${trash}`,
    );
    expect(instance.occCalls().some((c) => c.args[0] === 'files:scan')).toBe(false);
    instance.remove();
  });
});

describe('restore --list and refusals', () => {
  it('--list shows sizes, mtimes and names under a path, without touching anything', async () => {
    const instance = await sampleOn('sqlite', { mariadb, postgres }, scratch.path, counter++);
    const backup = await backUp(instance);
    const calls = instance.occCalls().length;
    const run = await runRestoreCli([backup.dir, '--list', 'alice/files/Documents'], {
      secrets: [],
    });
    expectOk(run);
    const lines = run.stdout.trim().split('\n');
    expect(lines[0]).toBe(
      `alice/files/Documents in the backup of ${backup.manifest.startedAt} (${backup.manifest.name}):`,
    );
    const welcome = statSync(join(instance.dataDir, 'alice/files/Documents/Welcome.txt'));
    const mtime = new Date(Math.floor(welcome.mtimeMs / 1000) * 1000)
      .toISOString()
      .replace('T', ' ')
      .slice(0, 19);
    expect(lines).toContain(`${String(welcome.size).padStart(12)}  ${mtime}  Welcome.txt`);
    expect(lines.some((l) => /^ {11}- {2}\S+ \S+ {2}Projects\/$/.test(l))).toBe(true);
    expect(lines.some((l) => l.endsWith('  Projects/2026/plan.md'))).toBe(true);
    expect(lines).toHaveLength(1 + 5); // ., Welcome.txt, Projects/, Projects/2026/, plan.md
    expect(instance.occCalls()).toHaveLength(calls);

    const missing = await runRestoreCli([backup.dir, '--list', 'alice/files/Nowhere'], {
      secrets: [],
    });
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toContain("The backup holds nothing under 'alice/files/Nowhere'");
    instance.remove();
  });

  it('a path the backup does not hold, or a bad path, changes nothing and says why', async () => {
    const instance = await sampleOn('sqlite', { mariadb, postgres }, scratch.path, counter++);
    const backup = await backUp(instance);
    const before = await dataTree(instance);
    const absent = await runRestoreCli(
      restoreArgs(instance, backup.dir, ['--path', 'alice/files/Nowhere/else.txt']),
      { secrets: [instance.dbPassword] },
    );
    expect(absent.exitCode).toBe(1);
    expect(absent.stderr).toContain("The backup holds no 'alice/files/Nowhere/else.txt'");
    expect(absent.stderr).toContain('Nothing was changed on the target.');
    for (const [args, message] of [
      [['--path', 'alice/../etc/passwd'], "has an empty, '.' or '..' part"],
      [['--path', 'alice/cache/x'], "is not a path in a user's files"],
      [
        ['--path', 'alice/files_versions/Documents/Welcome.txt.v1764000000', '--as-copy'],
        "applies to paths in a user's files/ only",
      ],
      [
        ['--path', 'alice/files/Documents', '--as-copy', '--overwrite'],
        'contradicts option --as-copy',
      ],
      [['--path', 'alice/files/Documents', '--safety-copy', 'false'], 'not of single paths'],
    ] as [string[], string][]) {
      const run = await runRestoreCli(restoreArgs(instance, backup.dir, args), { secrets: [] });
      expect(run.exitCode, args.join(' ')).toBe(2);
      expect(run.stderr, args.join(' ')).toContain(message);
      expect(run.stderr).not.toMatch(/\n\s+at /);
    }
    expect(diffTrees(before, await dataTree(instance))).toEqual([]);
    expect(containers(instance)).toEqual([]);
    instance.remove();
  });
});
