// The restore comparison (--restore): `owncloud-backup restore` of a backup over the instance
// it came from, against the README's restore by hand, its heavy part (unpack the archives,
// load the dump into a new database). Both read the same backup, made once by the CLI
// outside the timing; archive names come from its manifest.
import { chmodSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { mysqlIdentifier } from '../../test/harness/sql.ts';
import { runMeasured, runPipeline, watchDisk } from './measure.ts';
import { stepsFromLog, type Bench, type Measurement, type Variant } from './variants.ts';

const CLI = resolve(import.meta.dirname, '..', '..', 'dist', 'cli', 'index.js');

interface Archive {
  name: string;
  role: string;
}

/** The backup directory the CLI wrote into `out` (its only entry). */
export async function makeRestoreSource(bench: Bench, out: string): Promise<string> {
  mkdirSync(out, { recursive: true });
  await runMeasured([
    process.execPath,
    CLI,
    'backup',
    ...['--owncloud-dir', bench.sample.installDir, '--backup-dir', out],
  ]);
  const [name] = readdirSync(out);
  return join(out, name!);
}

function archives(backup: string): Archive[] {
  return (
    JSON.parse(readFileSync(join(backup, 'manifest.json'), 'utf8')) as { archives: Archive[] }
  ).archives;
}

function source(bench: Bench): string {
  if (!bench.restoreSource) throw new Error('the restore variants need a backup (--restore)');
  return bench.restoreSource;
}

/** `owncloud-backup restore` in place, as the instance's database user; the moved-aside state is removed outside the timing. */
export const restoreCli: Variant = {
  id: 'restore-cli',
  label:
    '`owncloud-backup restore`, local, in place (verify, safety copy, files, database, checks)',
  uploads: false,
  keepsManyFiles: false,
  async run({ bench, dir }) {
    // As /tmp is: the restore hands files in it to the instance's owner (php reads config.php).
    const tmp = join(dir, 'tmp');
    mkdirSync(tmp);
    chmodSync(tmp, 0o1777);
    const env = { ...process.env, TMPDIR: tmp };
    const install = ['--owncloud-dir', bench.sample.installDir];
    const stopDisk = watchDisk(tmp);
    const restore = await runMeasured(
      [process.execPath, CLI, 'restore', source(bench), ...install],
      { env },
    ).catch(async (error: unknown) => {
      await stopDisk();
      throw error;
    });
    await stopDisk();
    await runMeasured([process.execPath, CLI, 'restore', '--cleanup', ...install], { env });
    // It writes on the host, not the runner: no runner disk figure.
    return {
      seconds: restore.seconds,
      peakRssMiB: restore.peakRssMiB,
      steps: stepsFromLog(restore.stderr),
    };
  },
};

const TAR_OPTIONS = [
  '--numeric-owner',
  '--acls',
  '--xattrs',
  '--xattrs-include=*',
  '--same-permissions',
];

let loads = 0;

/** The README's steps 4 and 5: tar extract (the delta after the base), the dump into a new database. */
export const restoreManual: Variant = {
  id: 'restore-manual',
  label: 'restore by hand: tar --extract (base, then delta), dump into a new database (no checks)',
  uploads: false,
  keepsManyFiles: true,
  async run({ bench, dir }): Promise<Measurement> {
    const backup = source(bench);
    const list = archives(backup);
    const files = list.filter((a) => a.role === 'files' || a.role === 'files-delta');
    const dump = list.find((a) => a.role === 'database');
    if (!files[0] || files[0].role !== 'files' || !dump)
      throw new Error(`${backup}/manifest.json lists no files archive or no dump`);
    const into = join(dir, 'extract');
    mkdirSync(into);
    const database = `owncloud_restored_${++loads}`;
    const admin = ['mariadb', '--no-defaults', `--socket=${bench.mariadb.socket}`, '-uroot'];
    const stopDisk = watchDisk(dir);
    const started = performance.now();
    const work = async () => {
      for (const archive of files)
        await runMeasured(
          [
            'tar',
            '--extract',
            ...(archive.role === 'files-delta' ? ['--listed-incremental=/dev/null'] : []),
            '--file',
            join(backup, archive.name),
            ...TAR_OPTIONS,
          ],
          { cwd: into },
        );
      await runMeasured([
        ...admin,
        '-e',
        `CREATE DATABASE ${mysqlIdentifier(database)} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci`,
      ]);
      const loaded = join(dir, 'load.out');
      await runPipeline(['zstd', '-dc', join(backup, dump.name)], [...admin, database], loaded);
    };
    await work().catch(async (error: unknown) => {
      await stopDisk();
      throw error;
    });
    const seconds = (performance.now() - started) / 1000;
    const peakDiskBytes = await stopDisk();
    await runMeasured([...admin, '-e', `DROP DATABASE ${mysqlIdentifier(database)}`]);
    return { seconds, peakDiskBytes };
  },
};
