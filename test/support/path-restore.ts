// Restoring single paths into a sample instance, and looking at what changed: its data
// tree, its file cache rows (with storage ids and mimetype names) and every other row.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { SampleInstance } from '../sample/instance.ts';
import { runBackupCli, type CliRun } from './backup-run.ts';
import { finishedBackup } from './restore.ts';
import { snapshotTree, type TreeSnapshot } from './tree.ts';

export function expectOk(run: CliRun): void {
  expect(run.exitCode, `${run.stdout}\n${run.stderr}`).toBe(0);
  expect(run.leaks).toEqual([]);
}

export interface CacheRow {
  storage: string;
  path: string;
  /** Every column, as the engine renders it. */
  all: string;
  size: number;
  encrypted: number;
  unencryptedSize: number;
  mimetype: string;
  fileid: string;
}

/** Every file cache row with its storage's id and its mimetype's name. */
export async function cacheRows(instance: SampleInstance): Promise<CacheRow[]> {
  const p = String(instance.config.dbtableprefix);
  const rows = await instance.database.query(
    `SELECT s.id, f.path, f.size, f.encrypted, f.unencrypted_size, m.mimetype, f.fileid, f.parent, f.name, f.mtime, f.storage_mtime, f.etag, f.permissions, f.checksum, f.path_hash FROM ${p}filecache f JOIN ${p}storages s ON s.numeric_id = f.storage JOIN ${p}mimetypes m ON m.id = f.mimetype;`,
  );
  return rows.map((r) => ({
    storage: r[0]!,
    path: r[1]!,
    size: Number(r[2]),
    encrypted: Number(r[3]),
    unencryptedSize: Number(r[4]),
    mimetype: r[5]!,
    fileid: r[6]!,
    all: r.join('|'),
  }));
}

/** Every row of every table but the file cache, for "nothing else changed". */
export async function otherRows(instance: SampleInstance): Promise<Map<string, string[]>> {
  const rows = new Map<string, string[]>();
  for (const table of await instance.database.tables())
    if (!table.endsWith('filecache')) rows.set(table, await instance.database.tableRows(table));
  return rows;
}

export const below = (path: string, root: string) => path === root || path.startsWith(`${root}/`);

/** Data directory snapshot without the SQLite database file (it changes with every write). */
export async function dataTree(instance: SampleInstance): Promise<TreeSnapshot> {
  return snapshotTree(instance.dataDir, {
    exclude: (p) => p.endsWith('.db') || p.endsWith('.db-journal'),
  });
}

/** The entries under the given paths (relative to the data dir), and those outside them. */
export function split(
  tree: TreeSnapshot,
  roots: string[],
): { inside: TreeSnapshot; outside: TreeSnapshot } {
  const inside: TreeSnapshot = new Map();
  const outside: TreeSnapshot = new Map();
  for (const [path, entry] of tree)
    (roots.some((r) => below(path, r)) ? inside : outside).set(path, entry);
  return { inside, outside };
}

export function withoutMtimes(tree: TreeSnapshot, paths: string[]): TreeSnapshot {
  const copy: TreeSnapshot = new Map(tree);
  for (const p of paths) {
    const entry = copy.get(p);
    if (entry) copy.set(p, { ...entry, mtime: 0 });
  }
  return copy;
}

/** What ownCloud does when a user deletes: the files go, and their cache rows. */
export async function deleteAsOwnCloud(instance: SampleInstance, user: string, paths: string[]) {
  const p = String(instance.config.dbtableprefix);
  for (const path of paths) {
    rmSync(join(instance.dataDir, user, path), { recursive: true });
    const rows = await cacheRows(instance);
    const doomed = rows.filter((r) => r.storage === `home::${user}` && below(r.path, path));
    for (const row of doomed) {
      await instance.database.query(
        `DELETE FROM ${p}filecache WHERE fileid = ${Number(row.fileid)};`,
      );
    }
  }
}

export async function backUp(instance: SampleInstance, transport: string[] = []) {
  const backupDir = join(instance.root, 'backups');
  mkdirSync(backupDir, { recursive: true });
  expectOk(
    await runBackupCli(
      [...transport, '--owncloud-dir', instance.installDir, '--backup-dir', backupDir],
      { secrets: [instance.dbPassword] },
    ),
  );
  return finishedBackup(backupDir);
}

export function restoreArgs(instance: SampleInstance, dir: string, extra: string[]): string[] {
  return [dir, '--owncloud-dir', instance.installDir, ...extra];
}

export function containers(instance: SampleInstance): string[] {
  return execFileSync(
    'find',
    [instance.dataDir, '-maxdepth', '1', '-name', '.owncloud-restore-previous-*', '-print0'],
    { encoding: 'utf8' },
  )
    .split('\0')
    .filter(Boolean);
}
