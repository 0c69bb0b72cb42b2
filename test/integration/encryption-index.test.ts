// A backup of an instance with server-side encryption records how it encrypts (from its app
// config) and an index of the encrypted files' file cache entries, exactly as the database
// holds them inside the maintenance window: the `encrypted` version counter, `size` and
// `unencrypted_size` a single-file restore must put back. Without encryption: no index.
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMariaDb, type MariaDbServer } from '../harness/mariadb.ts';
import { startPostgres, type PostgresServer } from '../harness/postgres.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import { startSshd, type SshServer } from '../harness/sshd.ts';
import { requireTool } from '../harness/tools.ts';
import { HOSTILE_NAMES, type SampleInstance } from '../sample/instance.ts';
import { runBackupCli, runToolCli } from '../support/backup-run.ts';
import { explain, sshArgs } from '../support/cli-checks.ts';
import { sampleOn, type Engine } from '../support/instances.ts';
import { holdOccAt } from '../support/occ-hold.ts';
import { finishedBackup } from '../support/restore.ts';
import type { Manifest } from '../../src/manifest.ts';

let mariadb: MariaDbServer;
let postgres: PostgresServer;
let sshd: SshServer;
const scratch = makeScratchDir('encryption-index-test');
chmodSync(scratch.path, 0o755);
let counter = 0;

beforeAll(async () => {
  [mariadb, postgres, sshd] = await Promise.all([startMariaDb(), startPostgres(), startSshd()]);
});
afterAll(async () => {
  await Promise.all([mariadb?.stop(), postgres?.stop(), sshd?.stop()]);
  scratch.remove();
});

async function backup(instance: SampleInstance, args: string[] = []) {
  const backupDir = join(instance.root, 'backups');
  mkdirSync(backupDir, { recursive: true });
  const run = await runBackupCli(
    ['--owncloud-dir', instance.installDir, '--backup-dir', backupDir, ...args],
    { secrets: [instance.dbPassword] },
  );
  expect(run.exitCode, explain(run)).toBe(0);
  expect(run.leaks).toEqual([]);
  return { run, ...finishedBackup(backupDir) };
}

const zstdText = (path: string) =>
  execFileSync(requireTool('zstd'), ['-dc', path], { maxBuffer: 1 << 30 }).toString('utf8');
const zstdOf = (text: string) =>
  execFileSync(requireTool('zstd'), ['-q', '-c'], { input: Buffer.from(text, 'utf8') });
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

function indexRecord(manifest: Manifest) {
  return manifest.archives.find((a) => a.role === 'encryption-index');
}

describe.each([
  ['sqlite', 'master-key', 'local'],
  ['mysql', 'per-user-key', 'local'],
  ['pgsql', 'master-key', 'local'],
  ['pgsql', 'per-user-key', 'local'],
  ['mysql', 'master-key', 'ssh'],
] as const)(
  'a backup of an encrypted instance on %s (%s, %s)',
  (engine: Engine, mode, transport) => {
    let instance: SampleInstance;
    let result: Awaited<ReturnType<typeof backup>>;
    beforeAll(async () => {
      instance = await sampleOn(engine, { mariadb, postgres }, scratch.path, counter++, {
        encryption: mode,
      });
      result = await backup(instance, transport === 'ssh' ? sshArgs(sshd) : []);
    });

    it('records the encryption settings in the manifest, and the index beside the archives', () => {
      const { manifest, dir, run } = result;
      const encryption = instance.encryption!;
      const record = indexRecord(manifest)!;
      expect(record.name).toMatch(/^owncloud-encryption-index_\d{8}\.jsonl\.zst$/);
      expect(manifest.encryption).toEqual({
        enabled: true,
        module: 'OC_DEFAULT_MODULE',
        mode,
        ...(mode === 'master-key' ? { masterKeyId: encryption.masterKeyId } : {}),
        index: { name: record.name, files: encryption.encryptedFiles.length },
      });
      const bytes = readFileSync(join(dir, record.name));
      expect(record).toMatchObject({
        compression: 'zstd',
        size: bytes.length,
        sha256: sha256(bytes),
      });
      expect(readFileSync(join(dir, 'SHA256SUMS'), 'utf8')).toContain(
        `${sha256(bytes)}  ${record.name}\n`,
      );
      const how =
        mode === 'master-key' ? `master key ${encryption.masterKeyId}` : 'a key pair per user';
      const said = `on (${how}, OC_DEFAULT_MODULE); index of ${encryption.encryptedFiles.length} encrypted files`;
      expect(run.stderr).toContain(`Server-side encryption: ${said}.\n`);
      expect(run.stdout).toContain(`  server-side encryption: ${said}\n`);
    });

    it('holds exactly the file cache entries of the encrypted files, hostile names included', () => {
      const { manifest, dir } = result;
      const lines = zstdText(join(dir, indexRecord(manifest)!.name)).split('\n');
      expect(lines.pop()).toBe('');
      const expected = instance.encryption!.encryptedFiles.map((f) => ({
        storage: f.storage,
        path: f.path,
        fileid: f.fileid,
        encrypted: f.encrypted,
        size: f.size,
        unencrypted_size: f.unencrypted_size,
        mimetype: f.mimetype,
      }));
      expect(lines.map((line) => JSON.parse(line) as unknown)).toEqual(expected);
      // What makes the test bite: counters above 1, hostile names, a non-zero unencrypted_size.
      const paths = expected.filter((e) => e.encrypted > 2).map((e) => e.path);
      expect(paths).toContain(`files/Ünïcødé dir/${HOSTILE_NAMES[3]}`);
      expect(paths).toContain(`files/Ünïcødé dir/${HOSTILE_NAMES[2]}`);
      expect(expected.some((e) => e.unencrypted_size > 0)).toBe(true);
    });

    it('passes verify, which reads the index through', async () => {
      const run = await runToolCli('verify', [result.dir], { secrets: [] });
      expect(run.exitCode, explain(run)).toBe(0);
      const name = indexRecord(result.manifest)!.name;
      const files = instance.encryption!.encryptedFiles.length;
      expect(run.stdout).toContain(
        `ok      ${name}: every line is an encrypted file's file cache entry\n`,
      );
      expect(run.stdout).toContain(
        `ok      ${name}: ${files} encrypted files (manifest: ${files})\n`,
      );
    });
  },
);

/** The index's entries of a finished backup. */
function indexEntries(backup: { dir: string; manifest: Manifest }) {
  return zstdText(join(backup.dir, indexRecord(backup.manifest)!.name))
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { path: string; storage: string; encrypted: number });
}

describe.each(['sqlite', 'mysql', 'pgsql'] as const)(
  'the index is taken inside the maintenance window (%s)',
  (engine) => {
    const target = `files/Ünïcødé dir/${HOSTILE_NAMES[3]}`;
    /** Rewrites the file's encryption version while occ holds at `moment`; returns the backup. */
    async function rewrittenAt(moment: string) {
      const instance = await sampleOn(engine, { mariadb, postgres }, scratch.path, counter++, {
        encryption: 'master-key',
      });
      const fileid = instance.encryption!.encryptedFiles.find(
        (f) => f.storage === 'home::alice' && f.path === target,
      )!.fileid;
      const hold = holdOccAt(instance, moment);
      const running = backup(instance);
      try {
        // -1: the run ended without reaching occ's call (its own assertions say why).
        const occPid = await Promise.race([
          hold.reached(),
          running.then(
            () => -1,
            () => -1,
          ),
        ]);
        expect(occPid).toBeGreaterThan(0);
        await instance.database.query(
          `UPDATE oc_filecache SET encrypted = 17 WHERE fileid = ${fileid};`,
        );
      } finally {
        hold.release();
      }
      const entry = indexEntries(await running).find(
        (e) => e.storage === 'home::alice' && e.path === target,
      )!;
      instance.remove();
      return entry.encrypted;
    }

    it('a file written again while occ switches maintenance mode on has its new version', async () => {
      expect(await rewrittenAt('maintenance:mode --on')).toBe(17);
    });

    it('a file written again while occ switches maintenance mode off keeps the old one', async () => {
      expect(await rewrittenAt('maintenance:mode --off')).toBe(4);
    });
  },
);

describe.each(['sqlite', 'mysql', 'pgsql'] as const)(
  'an index of many encrypted files (%s)',
  (engine) => {
    it('streams every entry through, exactly, whatever the chunk boundaries', async () => {
      const instance = await sampleOn(engine, { mariadb, postgres }, scratch.path, counter++, {
        encryption: 'per-user-key',
      });
      const many = 60_000;
      const numbers =
        engine === 'pgsql'
          ? `generate_series(1, ${many}) AS n(i)`
          : `(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${many}) SELECT i FROM n) AS n`;
      const path =
        engine === 'mysql' ? "CONCAT('files/many/f', i, '.txt')" : "'files/many/f' || i || '.txt'";
      await instance.database.query(
        `${engine === 'mysql' ? 'SET SESSION max_recursive_iterations = 100000; ' : ''}INSERT INTO oc_filecache (storage, path, name, mimetype, size, encrypted, unencrypted_size) ` +
          `SELECT 2, ${path}, 'f', 1, i * 7, (i % 5) + 1, 0 FROM ${numbers};`,
      );
      const { manifest, dir } = await backup(instance);
      const entries = indexEntries({ dir, manifest }) as unknown as {
        path: string;
        size: number;
        encrypted: number;
      }[];
      const sample = instance.encryption!.encryptedFiles.length;
      expect(entries).toHaveLength(sample + many);
      expect(manifest.encryption!.index!.files).toBe(sample + many);
      const added = entries.slice(sample);
      added.forEach((entry, k) => {
        const i = k + 1;
        expect(entry).toMatchObject({
          path: `files/many/f${i}.txt`,
          size: i * 7,
          encrypted: (i % 5) + 1,
        });
      });
      instance.remove();
    });
  },
);

describe('an index that cannot be taken', () => {
  it('fails the backup with the client’s reason, and leaves no backup behind', async () => {
    const instance = await sampleOn('sqlite', { mariadb, postgres }, scratch.path, counter++, {
      encryption: 'master-key',
    });
    // The file cache is there (the dump and the row counts work), its storages are not.
    await instance.database.query('ALTER TABLE oc_storages RENAME TO oc_storages_gone;');
    const backupDir = join(instance.root, 'backups');
    mkdirSync(backupDir);
    const run = await runBackupCli(
      ['--owncloud-dir', instance.installDir, '--backup-dir', backupDir],
      { secrets: [instance.dbPassword] },
    );
    expect(run.exitCode, explain(run)).toBe(1);
    expect(run.stderr).toMatch(
      /Listing the encrypted files in the sqlite database's file cache \(sqlite3\) failed with exit code 1: .*no such table: oc_storages/,
    );
    expect(readdirSync(backupDir).filter((name) => !name.startsWith('.'))).toEqual([]);
    expect(instance.readConfig().maintenance).toBe(false);
    instance.remove();
  });
});

describe('a backup of an instance without server-side encryption', () => {
  it('records encryption as off and writes no index', async () => {
    const instance = await sampleOn('mysql', { mariadb, postgres }, scratch.path, counter++);
    const { manifest, dir, run } = await backup(instance);
    expect(manifest.encryption).toEqual({ enabled: false });
    expect(indexRecord(manifest)).toBeUndefined();
    expect(manifest.archives.map((a) => a.role)).toEqual(['files', 'files-delta', 'database']);
    expect(readdirSync(dir).filter((name) => name.includes('encryption'))).toEqual([]);
    expect(run.stderr).toContain('Server-side encryption: off.\n');
    expect(run.stdout).toContain('  server-side encryption: off\n');
  });
});

describe('verify finds a damaged encryption index', () => {
  let pristine: { dir: string; manifest: Manifest };
  beforeAll(async () => {
    const instance = await sampleOn('sqlite', { mariadb, postgres }, scratch.path, counter++, {
      encryption: 'per-user-key',
    });
    pristine = await backup(instance);
  });

  /** A copy of the backup whose index is replaced by `bytes`, recorded in the manifest. */
  function withIndex(bytes: Buffer, recorded: boolean) {
    const dir = join(scratch.path, `damaged-${counter++}`);
    cpSync(pristine.dir, dir, { recursive: true });
    const manifest = structuredClone(pristine.manifest);
    const record = indexRecord(manifest)!;
    writeFileSync(join(dir, record.name), bytes);
    if (recorded) {
      Object.assign(record, { size: bytes.length, sha256: sha256(bytes) });
      writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2));
    }
    return { dir, name: record.name };
  }

  const failed = (stdout: string) => stdout.split('\n').filter((l) => l.startsWith('FAILED'));
  const pristineLines = () =>
    zstdText(join(pristine.dir, indexRecord(pristine.manifest)!.name))
      .split('\n')
      .slice(0, -1);

  it('a flipped byte', async () => {
    const bytes = readFileSync(join(pristine.dir, indexRecord(pristine.manifest)!.name));
    const middle = Math.floor(bytes.length / 2);
    bytes[middle] = bytes[middle]! ^ 0xff;
    const copy = withIndex(bytes, false);
    const run = await runToolCli('verify', [copy.dir], { secrets: [] });
    expect(run.exitCode).toBe(1);
    expect(failed(run.stdout)).toContain(
      `FAILED  ${copy.name}: sha256 is ${sha256(bytes)}, manifest says ${indexRecord(pristine.manifest)!.sha256}`,
    );
    expect(
      failed(run.stdout).some((l) => l.includes(`${copy.name}: decompresses with errors`)),
    ).toBe(true);
  });

  it('an entry missing, recorded faithfully in the manifest', async () => {
    const lines = pristineLines();
    const copy = withIndex(zstdOf(`${lines.slice(1).join('\n')}\n`), true);
    const run = await runToolCli('verify', [copy.dir], { secrets: [] });
    expect(run.exitCode).toBe(1);
    expect(failed(run.stdout)).toEqual([
      `FAILED  ${copy.name}: ${lines.length - 1} encrypted files (manifest: ${lines.length})`,
    ]);
  });

  it('a line that is not an entry, recorded faithfully in the manifest', async () => {
    const lines = pristineLines();
    lines[4] = lines[4]!.slice(0, -2);
    lines[6] = JSON.stringify({ ...JSON.parse(lines[6]!), encrypted: 0 });
    const copy = withIndex(zstdOf(`${lines.join('\n')}\n`), true);
    const run = await runToolCli('verify', [copy.dir], { secrets: [] });
    expect(run.exitCode).toBe(1);
    expect(failed(run.stdout)).toEqual([
      `FAILED  ${copy.name}: line 5 is not an encrypted file's entry: it is not JSON`,
    ]);
  });
});
