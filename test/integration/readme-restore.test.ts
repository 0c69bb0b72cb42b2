// The README's restore section, followed literally: its shell blocks, with only the settings
// it documents filled in from the manifest, run with bash on a fresh backup of a sample
// instance that has meanwhile been lost (files and database gone, only the server code
// reinstalled), against real servers. The restored files equal the source (bytes, owners,
// modes, ACLs, xattrs, hard links), the database holds every row, and occ was told that the
// server went back in time.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { quoteArg } from '../../src/host/shell.ts';
import type { Manifest } from '../../src/manifest.ts';
import { startMariaDb, type MariaDbServer } from '../harness/mariadb.ts';
import { startPostgres, type PostgresServer } from '../harness/postgres.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import type { SampleDatabase } from '../sample/database.ts';
import type { SampleInstance } from '../sample/instance.ts';
import { CLI } from '../support/backup-run.ts';
import { sampleOn, type Engine } from '../support/instances.ts';
import { finishedBackup } from '../support/restore.ts';
import { diffTrees, snapshotTree, type TreeSnapshot } from '../support/tree.ts';

const README = join(import.meta.dirname, '..', '..', 'README.md');

let mariadb: MariaDbServer;
let postgres: PostgresServer;
const scratch = makeScratchDir('readme-restore');
chmodSync(scratch.path, 0o755); // occ runs as the instance's owner, who must reach it
let counter = 0;

beforeAll(async () => {
  [mariadb, postgres] = await Promise.all([startMariaDb(), startPostgres()]);
});
afterAll(async () => {
  await Promise.all([mariadb?.stop(), postgres?.stop()]);
  scratch.remove();
});

/** The shell block right after `<!-- restore:NAME -->` in the README. */
function readmeBlock(name: string): string {
  const readme = readFileSync(README, 'utf8');
  const match = new RegExp(`<!-- restore:${name} -->\\s*\`\`\`sh\\n([\\s\\S]*?)\`\`\`\\n`).exec(
    readme,
  );
  expect(match, `README.md has no shell block marked restore:${name}`).not.toBeNull();
  return match![1]!;
}

/** A value from the manifest by the path the README names, e.g. `archives[0].compression`. */
function manifestValue(manifest: Manifest, path: string): string {
  let value: unknown = manifest;
  for (const part of path.split(/\.|\[(\d+)\]/).filter(Boolean))
    value = (value as Record<string, unknown>)[part];
  expect(typeof value, `manifest: ${path}`).toBe('string');
  return value as string;
}

/**
 * The settings block with each documented placeholder set: `NAME=... # manifest: PATH` from
 * the manifest, `NAME=... # the backup directory` to the backup. Every other line is kept.
 */
function fillSettings(block: string, manifest: Manifest, backupDir: string): string {
  const set: string[] = [];
  const lines = block.split('\n').map((line) => {
    const match = /^([A-Z]+)=\S+\s+# (?:manifest: (\S+)|(the backup directory))$/.exec(line);
    if (!match) return line;
    set.push(match[1]!);
    const value = match[3] ? backupDir : manifestValue(manifest, match[2]!);
    return `${match[1]}=${quoteArg(value)}`;
  });
  expect(set.sort()).toEqual(
    ['BACKUP', 'COMPRESSION', 'DATADIR', 'DB', 'DBUSER', 'INSTALLDIR', 'OWNER'].sort(),
  );
  return lines.join('\n');
}

interface DatabaseSnapshot {
  tables: string[];
  rows: Map<string, string[]>;
}

async function snapshotDatabase(database: SampleDatabase): Promise<DatabaseSnapshot> {
  const tables = await database.tables();
  const rows = new Map<string, string[]>();
  for (const table of tables) rows.set(table, await database.tableRows(table));
  return { tables, rows };
}

function ownerAndMode(path: string): { mode: number; uid: number; gid: number } {
  const stat = statSync(path);
  return { mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid };
}

/** Everything the restore must bring back, taken from the live instance after the backup. */
async function snapshotInstance(instance: SampleInstance, extra: string, manifest: Manifest) {
  const leftOut = new Set(manifest.files.leftOut);
  const dataInside = instance.dataDir.slice(instance.installDir.length + 1);
  return {
    install: await snapshotTree(instance.installDir, { exclude: (p) => p === dataInside }),
    installRoot: ownerAndMode(instance.installDir),
    data: await snapshotTree(instance.dataDir, { exclude: (p) => leftOut.has(p) }),
    dataRoot: ownerAndMode(instance.dataDir),
    extra: await snapshotTree(extra),
    extraRoot: ownerAndMode(extra),
    config: instance.readConfig(),
    database: await snapshotDatabase(instance.database),
    databaseFile:
      manifest.database.type === 'sqlite' ? ownerAndMode(manifest.database.file!) : undefined,
  };
}

/**
 * The instance is lost: its installation, data directory, extra path and database are gone.
 * For a package install the same server version is installed again (what the README's first
 * step asks): here, the server code the backup left out, as it was.
 */
function loseInstance(instance: SampleInstance, extra: string, manifest: Manifest): void {
  const packaged = join(scratch.path, `package-${counter}`);
  mkdirSync(packaged);
  const backedUp = new Set(manifest.files.installPaths.map((p) => p.split('/')[0]));
  const dataInside = instance.dataDir.slice(instance.installDir.length + 1);
  const code = backedUp.has('.')
    ? []
    : readdirSync(instance.installDir).filter((n) => !backedUp.has(n) && n !== dataInside);
  for (const name of code)
    execFileSync('cp', ['-a', '-t', packaged, '--', join(instance.installDir, name)]);
  const root = ownerAndMode(instance.installDir);

  for (const path of [instance.installDir, instance.dataDir, extra])
    rmSync(path, { recursive: true, force: true });

  if (code.length > 0) {
    mkdirSync(instance.installDir);
    chownSync(instance.installDir, root.uid, root.gid);
    chmodSync(instance.installDir, root.mode);
    for (const name of code)
      execFileSync('cp', ['-a', '-t', instance.installDir, '--', join(packaged, name)]);
  }
  rmSync(packaged, { recursive: true, force: true });
}

async function dropDatabase(engine: Engine, name: string): Promise<void> {
  if (engine === 'mysql') await mariadb.query(`DROP DATABASE \`${name}\`;`);
  if (engine === 'pgsql') await postgres.query(`DROP DATABASE "${name}";`);
}

/** How the database administrator reaches the test's servers: ~/.my.cnf, PGHOST/PGPORT. */
function administratorEnvironment(): NodeJS.ProcessEnv {
  const home = join(scratch.path, `admin-home-${counter}`);
  mkdirSync(home, { recursive: true });
  writeFileSync(join(home, '.my.cnf'), `[client]\nsocket=${mariadb.socket}\nuser=root\n`, {
    mode: 0o600,
  });
  return {
    ...process.env,
    HOME: home,
    PGHOST: postgres.socketDir,
    PGPORT: String(postgres.port),
  };
}

type Case = readonly [Engine, 'package' | 'tarball', 'zstd' | 'gzip'];
type RestoreScript = (
  backup: { dir: string; manifest: Manifest },
  engine: Engine,
) => { script: string; cwd: string };

/**
 * Backs up a sample instance, loses it, restores it with the script and compares the result
 * with what was lost.
 */
async function backUpLoseAndRestore(
  [engine, installType, compression]: Case,
  restoreScript: RestoreScript,
): Promise<void> {
  const instance = await sampleOn(engine, { mariadb, postgres }, scratch.path, counter++);
  // An absolute extra path, outside the installation: restored under its full path.
  const extra = join(instance.root, 'site extras');
  mkdirSync(join(extra, 'certs'), { recursive: true });
  writeFileSync(join(extra, 'certs', 'cloud.pem'), `certificate ${instance.root}\n`);
  execFileSync('chown', ['-R', `${instance.owner.uid}:${instance.owner.gid}`, extra]);
  chmodSync(extra, 0o750);

  const backupDir = join(instance.root, 'backups');
  mkdirSync(backupDir);
  const run = spawnSync(
    process.execPath,
    [
      CLI,
      'backup',
      '--owncloud-dir',
      instance.installDir,
      '--backup-dir',
      backupDir,
      '--install-type',
      installType,
      '--compression',
      compression,
      '--extra-paths',
      extra,
    ],
    { encoding: 'utf8' },
  );
  expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0);
  const backup = finishedBackup(backupDir);
  expect(backup.manifest.files.absolutePaths).toEqual([extra]);
  expect(backup.manifest.archives.map((a) => a.compression)).toEqual([
    compression,
    compression,
    compression,
  ]);

  const before = await snapshotInstance(instance, extra, backup.manifest);
  expect(before.config['data-fingerprint']).toBeUndefined();
  const callsBefore = instance.occCalls().length;
  loseInstance(instance, extra, backup.manifest);
  await dropDatabase(engine, backup.manifest.database.name);
  expect(existsSync(instance.dataDir)).toBe(false);

  // The directories above the extra path (/tmp among them) keep their owner and mode.
  const ancestors: string[] = [];
  for (let dir = dirname(extra); dir !== '/'; dir = dirname(dir)) ancestors.push(dir);
  const modes = () =>
    ancestors.map((dir) => {
      const stat = statSync(dir);
      return `${dir} ${stat.mode.toString(8)} ${stat.uid}:${stat.gid}`;
    });
  const ancestorsBefore = modes();
  const { script, cwd } = restoreScript(backup, engine);
  const restore = spawnSync('bash', ['-e', '-u', '-c', script], {
    cwd,
    env: administratorEnvironment(),
    encoding: 'utf8',
  });
  expect(restore.status, `${restore.stdout}\n${restore.stderr}`).toBe(0);
  expect(modes()).toEqual(ancestorsBefore);

  // Files: the installation (server code reinstalled, the rest from the backup), the data
  // directory and the extra path, entry by entry. occ rewrote config.php (a new data
  // fingerprint): compared below by its values.
  const after = await snapshotInstance(instance, extra, backup.manifest);
  const ignoreConfigContent = (snapshot: TreeSnapshot) => {
    const entry = snapshot.get('config/config.php')!;
    snapshot.set('config/config.php', { ...entry, size: 0, sha256: '', mtime: 0 });
    return snapshot;
  };
  expect(
    diffTrees(ignoreConfigContent(before.install), ignoreConfigContent(after.install)),
  ).toEqual([]);
  expect(after.install.size).toBe(before.install.size);
  if (installType === 'package') expect(after.installRoot).toEqual(before.installRoot);
  expect(diffTrees(before.data, after.data)).toEqual([]);
  expect(after.data.size).toBeGreaterThan(60);
  expect(after.dataRoot).toEqual(before.dataRoot);
  expect(diffTrees(before.extra, after.extra)).toEqual([]);
  expect(after.extraRoot).toEqual(before.extraRoot);
  // The SQLite file is new: the web server's user's, mode as in the source.
  expect(after.databaseFile).toEqual(before.databaseFile);
  expect(readdirSync(dirname(instance.dataDir)).filter((n) => n.endsWith('.restore'))).toEqual([]);

  // config.php: as backed up, with a new fingerprint, maintenance mode off.
  const fingerprint = after.config['data-fingerprint'];
  expect(fingerprint).toMatch(/^[0-9a-f]{32}$/);
  expect(after.config).toEqual({ ...before.config, 'data-fingerprint': fingerprint });
  expect(
    instance
      .occCalls()
      .slice(callsBefore)
      .map((c) => `${c.user} ${c.args.join(' ')} exit ${c.exit}`),
  ).toEqual([
    'www-data maintenance:data-fingerprint exit 0',
    'www-data maintenance:mode --off exit 0',
  ]);

  // Database: every table and every row, and created as the README says.
  expect(after.database.tables).toEqual(before.database.tables);
  expect(after.database.tables.length).toBeGreaterThan(8);
  expect(after.database.rows).toEqual(before.database.rows);
  const name = backup.manifest.database.name;
  if (engine === 'mysql')
    expect(
      await instance.database.query(
        `SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '${name}';`,
      ),
    ).toEqual([['utf8mb4', 'utf8mb4_general_ci']]);
  if (engine === 'pgsql') {
    const user = backup.manifest.database.user;
    expect(
      await instance.database.query(
        `SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding) FROM pg_database WHERE datname = '${name}';`,
      ),
    ).toEqual([[user, 'UTF8']]);
    expect(
      await instance.database.query(
        `SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public';`,
      ),
    ).toEqual([[user]]);
  }
  for (const dir of ['/', instance.root, scratch.path])
    expect(existsSync(join(dir, 'pwned')), `${dir}/pwned`).toBe(false);
  instance.remove();
}

const CASES: Case[] = [
  ['sqlite', 'package', 'zstd'],
  ['mysql', 'package', 'zstd'],
  ['pgsql', 'package', 'gzip'],
  ['sqlite', 'tarball', 'gzip'],
];

describe.each(CASES)('a restore of %s (%s install, %s)', (...testCase) => {
  it("by the README's commands, run literally, brings back every file, owner, mode and row, and a new data fingerprint", () =>
    backUpLoseAndRestore(testCase, (backup, engine) => ({
      script: [
        fillSettings(readmeBlock('settings'), backup.manifest, backup.dir),
        readmeBlock('files'),
        readmeBlock(engine),
        readmeBlock('finish'),
      ].join('\n'),
      cwd: scratch.path,
    })));

  it("by the manifest's restore commands, run from the backup directory, does the same", () =>
    backUpLoseAndRestore(testCase, (backup) => {
      const { restore } = backup.manifest;
      expect(restore.before).toContain(
        backup.manifest.source.installType === 'package'
          ? `Install owncloud ${backup.manifest.instance.version} (the same version) first`
          : 'create the database user',
      );
      return {
        script: [restore.files, restore.database, restore.finish].join('\n'),
        cwd: backup.dir,
      };
    }));
});
