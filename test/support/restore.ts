// Restoring what a backup holds, the way its manifest says, and comparing it with the source.
import { execFileSync } from 'node:child_process';
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { expect } from 'vitest';
import type { Manifest } from '../../src/manifest.ts';
import type { MariaDbServer } from '../harness/mariadb.ts';
import type { PostgresServer } from '../harness/postgres.ts';
import { requireTool } from '../harness/tools.ts';
import {
  mysqlDatabase,
  pgsqlDatabase,
  sqliteDatabase,
  type SampleDatabase,
} from '../sample/database.ts';
import type { SampleInstance } from '../sample/instance.ts';
import { diffTrees, snapshotTree, type TreeSnapshot } from './tree.ts';

let restoredCount = 0;

function decompress(path: string): Buffer {
  const tool = path.endsWith('.zst') ? [requireTool('zstd'), '-dc'] : ['gzip', '-dc'];
  return execFileSync(tool[0]!, [...tool.slice(1), path], { maxBuffer: 1024 * 1024 * 1024 });
}

/** The one finished backup a run left in backupDir, and its manifest. */
export function finishedBackup(backupDir: string): { dir: string; manifest: Manifest } {
  const entries = readdirSync(backupDir);
  expect(entries).toHaveLength(1);
  const dir = join(backupDir, entries[0]!);
  return {
    dir,
    manifest: JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest,
  };
}

/** The path of the backup's archive with this role. */
export function archivePath(
  backup: { dir: string; manifest: Manifest },
  role: 'files' | 'database',
): string {
  return join(backup.dir, backup.manifest.archives.find((a) => a.role === role)!.name);
}

/** Loads the dump into a fresh, empty database and returns it. */
export async function restoreDump(
  dumpPath: string,
  manifest: Manifest,
  scratchDir: string,
  servers: { mariadb?: MariaDbServer; postgres?: PostgresServer },
): Promise<SampleDatabase> {
  const sql = decompress(dumpPath);
  const name = `restored_${process.pid}_${restoredCount++}`;
  if (manifest.database.type === 'sqlite') {
    const file = join(scratchDir, `${name}.db`);
    execFileSync(requireTool('sqlite3'), ['-bail', file], { input: sql });
    return sqliteDatabase(file);
  }
  if (manifest.database.type === 'mysql') {
    const server = servers.mariadb!;
    await server.query(`CREATE DATABASE ${name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;`);
    execFileSync(
      requireTool('mariadb'),
      ['--no-defaults', `--socket=${server.socket}`, '-uroot', name],
      { input: sql },
    );
    return mysqlDatabase(server, name);
  }
  const server = servers.postgres!;
  await server.query(`CREATE DATABASE ${name} ENCODING 'UTF8' TEMPLATE template0;`);
  execFileSync(
    requireTool('psql'),
    [
      '-X',
      '-q',
      '-v',
      'ON_ERROR_STOP=1',
      '-h',
      server.socketDir,
      '-p',
      String(server.port),
      '-U',
      'postgres',
      '-d',
      name,
    ],
    { input: sql, stdio: ['pipe', 'ignore', 'pipe'] },
  );
  return pgsqlDatabase(server, name);
}

/** Every table, and every row of every table, equal. */
export async function expectSameDatabase(
  source: SampleDatabase,
  restored: SampleDatabase,
): Promise<number> {
  const tables = await source.tables();
  expect(await restored.tables()).toEqual(tables);
  let rows = 0;
  for (const table of tables) {
    const expected = await source.tableRows(table);
    expect(await restored.tableRows(table), table).toEqual(expected);
    rows += expected.length;
  }
  return rows;
}

/** Unpacks the files archive as the manifest's restore line says, into dir. */
/**
 * Unpacks a backup's files as its README says: the files archive, then (when the backup's
 * manifest lists one) the delta archive over it, with tar's incremental mode so that what
 * was deleted inside the maintenance window is deleted again.
 */
export function unpackFiles(archive: string, dir: string): void {
  mkdirSync(dir, { recursive: true });
  const extract = (path: string, incremental: boolean) =>
    execFileSync('tar', [
      '--extract',
      `--file=${path}`,
      ...(incremental ? ['--listed-incremental=/dev/null'] : []),
      '--numeric-owner',
      '--acls',
      '--xattrs',
      '--xattrs-include=*',
      '--same-permissions',
      path.endsWith('.zst') ? '--zstd' : '--gzip',
      `--directory=${dir}`,
    ]);
  extract(archive, false);
  const manifestPath = join(dirname(archive), 'manifest.json');
  if (!existsSync(manifestPath)) return;
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest;
  const base = manifest.archives.find((a) => a.role === 'files');
  const delta = manifest.archives.find((a) => a.role === 'files-delta');
  if (delta && base && join(dirname(archive), base.name) === archive)
    extract(join(dirname(archive), delta.name), true);
}

export function withoutMtime(snapshot: TreeSnapshot, path: string): TreeSnapshot {
  const entry = snapshot.get(path);
  if (entry) snapshot.set(path, { ...entry, mtime: 0 });
  return snapshot;
}

/**
 * The unpacked tree equals the instance: the data directory (bytes, modes, owners, ACLs,
 * xattrs, hard links, hidden files, empty dirs), config/, the theme and apps-external/; and,
 * for a package install, no server code.
 */
export async function expectSameFiles(
  sample: SampleInstance,
  unpacked: string,
  manifest: Manifest,
  options: { installation?: 'package' | 'whole' } = {},
): Promise<number> {
  const leftOut = new Set(manifest.files.leftOut);
  const data = await snapshotTree(sample.dataDir, { exclude: (p) => leftOut.has(p) });
  expect(diffTrees(data, await snapshotTree(join(unpacked, 'data')))).toEqual([]);
  const root = [sample.dataDir, join(unpacked, 'data')].map((p) => statSync(p));
  expect([root[1]!.mode, root[1]!.uid, root[1]!.gid]).toEqual([
    root[0]!.mode,
    root[0]!.uid,
    root[0]!.gid,
  ]);

  // occ rewrote config.php during the run (maintenance on, then off): same bytes, new mtime.
  const config = withoutMtime(await snapshotTree(join(sample.installDir, 'config')), 'config.php');
  expect(
    diffTrees(
      config,
      withoutMtime(await snapshotTree(join(unpacked, 'owncloud', 'config')), 'config.php'),
    ),
  ).toEqual([]);
  const theme = await snapshotTree(join(sample.installDir, 'themes'));
  expect(diffTrees(theme, await snapshotTree(join(unpacked, 'owncloud', 'themes')))).toEqual([]);
  const apps = await snapshotTree(join(sample.installDir, 'apps-external'));
  expect(diffTrees(apps, await snapshotTree(join(unpacked, 'owncloud', 'apps-external')))).toEqual(
    [],
  );
  // A package install: server code is not in the backup (a tarball install holds it all).
  const installation =
    options.installation ?? (manifest.source.installType === 'tarball' ? 'whole' : 'package');
  if (installation !== 'whole')
    expect(readdirSync(join(unpacked, 'owncloud')).sort()).toEqual([
      'apps-external',
      'config',
      'themes',
    ]);
  return data.size;
}

/** An instance's files, config.php values and rows, to compare before and after a restore. */
export interface InstanceState {
  install: TreeSnapshot;
  data: TreeSnapshot;
  config: Record<string, unknown>;
  tables: string[];
  rows: Map<string, string[]>;
}

/** Everything a restore must bring back (config.php compared by its values). */
/** Where an instance is, for instanceState: a sample instance, or one a restore created. */
export interface InstanceLocation {
  installDir: string;
  dataDir: string;
  database: SampleDatabase;
  readConfig(): Record<string, unknown>;
}

export async function instanceState(
  instance: InstanceLocation,
  manifest: { files: Pick<Manifest['files'], 'leftOut'> },
): Promise<InstanceState> {
  const leftOut = new Set(manifest.files.leftOut);
  const dataInside = instance.dataDir.slice(instance.installDir.length + 1);
  const install = await snapshotTree(instance.installDir, {
    exclude: (p) => p === dataInside || p.startsWith('.owncloud-restore-previous-'),
  });
  const config = install.get('config/config.php')!;
  install.set('config/config.php', { ...config, size: 0, sha256: '', mtime: 0 });
  const database: SampleDatabase = instance.database;
  const tables = await database.tables();
  const rows = new Map<string, string[]>();
  for (const table of tables) rows.set(table, await database.tableRows(table));
  // A restore renews the data fingerprint: compared apart.
  const values = instance.readConfig();
  delete values['data-fingerprint'];
  return {
    install,
    data: await snapshotTree(instance.dataDir, { exclude: (p) => leftOut.has(p) }),
    config: values,
    tables,
    rows,
  };
}

export function expectSameState(after: InstanceState, before: InstanceState): void {
  expect(diffTrees(before.install, after.install)).toEqual([]);
  expect(diffTrees(before.data, after.data)).toEqual([]);
  expect(after.data.size).toBeGreaterThan(60);
  expect(after.config).toEqual(before.config);
  expect(after.tables).toEqual(before.tables);
  expect(after.tables.length).toBeGreaterThan(8);
  expect(after.rows).toEqual(before.rows);
}

/** What an administrator's day does to an instance after its backup. */
export async function changeInstance(instance: SampleInstance): Promise<void> {
  const user = join(instance.dataDir, 'alice', 'files');
  writeFileSync(join(user, 'new after the backup.txt'), 'created after the backup\n');
  rmSync(join(user, 'Documents', 'Welcome.txt'));
  appendFileSync(
    join(user, 'Documents', 'Projects', '2026', 'plan.md'),
    '- changed after the backup\n',
  );
  const prefix = String(instance.config.dbtableprefix);
  await instance.database.query(
    `INSERT INTO ${prefix}users (uid, password) VALUES ('mallory', 'x');`,
  );
  execFileSync('runuser', [
    '-u',
    instance.owner.name,
    '--',
    'php',
    join(instance.installDir, 'occ'),
    'maintenance:mode',
    '--on',
  ]);
}
