// Copies the instance's files from the host into the staging directory on the runner with
// rsync, keeping ACLs, xattrs, owners (numeric), modes, hard links, hidden files and empty
// directories. Run twice: the bulk before maintenance mode, then only the delta inside it.
import { BackupError, InputError, InterruptedError } from '../errors.ts';
import type { Host } from '../host/host.ts';
import type { BackupPlan } from '../settings.ts';
import { existsOnHost, type Instance } from './discover.ts';
import { runProcess, stderrTail } from '../host/process.ts';
import { isNoSpace, noSpaceError, type RunnerPrivilege } from '../host/runner.ts';

/** What to copy, as paths on the host. */
export interface FileSet {
  installDir: string;
  /** Install-relative paths (config, the theme, extra paths); ['.'] for a tarball install. */
  installPaths: string[];
  /** Data dir relative to the install dir when it lies inside it (left out of installPaths '.'). */
  dataDirInsideInstall?: string;
  dataDir: string;
  /** Absolute extra paths outside the installation. */
  absolutePaths: string[];
  /** User patterns, applied to every part. */
  exclude: string[];
  /** Data-dir-relative files never copied (the live SQLite database: the dump is its backup). */
  dataExclude: string[];
  /**
   * How rsync runs on the host when the SSH user can read the files only through sudo
   * (e.g. `sudo -n rsync`); undefined for plain rsync.
   */
  remoteRsync?: string;
}

/** Archive member directories: where each part of the instance lands in the staging dir. */
export const LAYOUT = { install: 'owncloud', data: 'data', absolute: 'extra' } as const;

export interface SyncStats {
  files: number;
  bytes: number;
  transferredBytes: number;
  /** Files that vanished while being copied (rsync exit 24): normal on a live system. */
  vanished: boolean;
}

// -a (rlptgoD) + hard links, ACLs, xattrs, one file system, numeric owners; -s keeps
// names with spaces and shell characters intact on the remote side.
const RSYNC_FLAGS = ['-aHAXx', '--numeric-ids', '-s', '--stats'];

/** Parses `rsync --stats` (run with LC_ALL=C). */
export function parseRsyncStats(output: string): Omit<SyncStats, 'vanished'> {
  const number = (label: string) => {
    const match = new RegExp(`^${label}: ([\\d,]+)`, 'm').exec(output);
    return match ? Number(match[1]!.replaceAll(',', '')) : 0;
  };
  const files = /^Number of files: [\d,]+ \(reg: ([\d,]+)/m.exec(output);
  return {
    files: files ? Number(files[1]!.replaceAll(',', '')) : number('Number of files'),
    bytes: number('Total file size'),
    transferredBytes: number('Total transferred file size'),
  };
}

/** The rsync runs for one pass: argv for each part. Pure, so it is tested without processes. */
export function rsyncCommands(
  fileSet: FileSet,
  stagingDir: string,
  source: (path: string) => { args: string[]; source: string },
  options: { delete: boolean; parts: ('install' | 'data' | 'absolute')[] },
): string[][] {
  const common = [
    ...RSYNC_FLAGS,
    ...(fileSet.remoteRsync ? [`--rsync-path=${fileSet.remoteRsync}`] : []),
    ...(options.delete ? ['--delete'] : []),
    ...fileSet.exclude.map((p) => `--exclude=${p}`),
  ];
  const commands: string[][] = [];
  /** One rsync run: these host paths into this archive member, with these extra flags. */
  const copy = (paths: string[], flags: string[], member: string) => {
    const specs = paths.map(source);
    const shell = specs[0]?.args ?? [];
    commands.push([
      'rsync',
      ...common,
      ...flags,
      ...shell,
      '--',
      ...specs.map((s) => s.source),
      `${stagingDir}/${member}/`,
    ]);
  };

  if (options.parts.includes('install') && fileSet.installPaths.length > 0) {
    if (fileSet.installPaths.includes('.')) {
      const inside = fileSet.dataDirInsideInstall;
      copy([`${fileSet.installDir}/`], inside ? [`--exclude=/${inside}/`] : [], LAYOUT.install);
    } else {
      // --relative with /./ keeps each path's place below the install dir.
      copy(
        fileSet.installPaths.map((p) => `${fileSet.installDir}/./${p}`),
        ['--relative'],
        LAYOUT.install,
      );
    }
  }
  if (options.parts.includes('data'))
    copy(
      [`${fileSet.dataDir}/`],
      fileSet.dataExclude.map((p) => `--exclude=/${p}`),
      LAYOUT.data,
    );
  if (options.parts.includes('absolute') && fileSet.absolutePaths.length > 0)
    copy(
      fileSet.absolutePaths.map((p) => `/.${p}`),
      ['--relative'],
      LAYOUT.absolute,
    );
  return commands;
}

/** Runs one pass of rsync runs; fails on anything but success or vanished files. */
export async function syncFiles(
  host: Host,
  fileSet: FileSet,
  stagingDir: string,
  options: {
    delete: boolean;
    parts: ('install' | 'data' | 'absolute')[];
    signal: AbortSignal;
    /** Runs rsync through sudo on a runner that is not root, to keep owners. */
    privilege: RunnerPrivilege;
  },
): Promise<SyncStats> {
  const total: SyncStats = { files: 0, bytes: 0, transferredBytes: 0, vanished: false };
  for (const argv of rsyncCommands(fileSet, stagingDir, (p) => host.rsyncSource(p), options)) {
    const result = await runProcess([...options.privilege.prefix, ...argv], {
      signal: options.signal,
      env: { LC_ALL: 'C' },
    });
    if (options.signal.aborted) throw new InterruptedError();
    if (result.exitCode !== 0 && result.exitCode !== 24) {
      if (isNoSpace(result.stderr)) throw noSpaceError(stagingDir);
      const transport = host.transportFailure(result);
      throw new BackupError(
        `Copying files from ${host.label} failed (rsync exit ${result.exitCode}): ${transport ?? stderrTail(result.stderr)}`,
      );
    }
    const stats = parseRsyncStats(result.stdout);
    total.files += stats.files;
    total.bytes += stats.bytes;
    total.transferredBytes += stats.transferredBytes;
    total.vanished ||= result.exitCode === 24;
  }
  return total;
}

/** Where the theme lives: legacy themes/<name>, or (ownCloud 10) a theme app. */
async function themePath(host: Host, instance: Instance): Promise<string | undefined> {
  // A theme is a directory name; anything that could climb out of the installation is not one.
  if (!instance.theme || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(instance.theme)) return undefined;
  for (const candidate of [
    `themes/${instance.theme}`,
    `apps-external/${instance.theme}`,
    `apps/${instance.theme}`,
  ]) {
    if (await existsOnHost(host, instance.owner, '-d', `${instance.installDir}/${candidate}`))
      return candidate;
  }
  return undefined;
}

/**
 * What to copy for this instance: config/, the active theme and extra paths (or the whole
 * installation for a tarball install), the data directory without the live SQLite file,
 * and absolute extra paths. Checks that every path the user named exists.
 */
export async function planFileSet(
  host: Host,
  plan: BackupPlan,
  instance: Instance,
  warn: (message: string) => void,
): Promise<FileSet> {
  const relativeExtras = plan.extraPaths.filter((p) => !p.startsWith('/'));
  const absolutePaths = plan.extraPaths.filter((p) => p.startsWith('/'));
  for (const path of [
    ...relativeExtras.map((p) => `${instance.installDir}/${p}`),
    ...absolutePaths,
  ]) {
    if (!(await existsOnHost(host, instance.owner, '-e', path)))
      throw new InputError(`extra-paths: '${path}' does not exist on ${host.label}.`);
  }
  const inside = instance.dataDir.startsWith(`${instance.installDir}/`)
    ? instance.dataDir.slice(instance.installDir.length + 1)
    : undefined;
  let installPaths: string[];
  if (plan.installType === 'tarball') {
    installPaths = ['.'];
  } else {
    const theme = await themePath(host, instance);
    if (instance.theme && !theme)
      warn(
        `config.php names theme '${instance.theme}', but no themes/, apps-external/ or apps/ directory of that name exists.`,
      );
    installPaths = [...new Set(['config', ...(theme ? [theme] : []), ...relativeExtras])];
  }
  const dataExclude: string[] = [];
  const file = instance.database.file;
  if (file && file.startsWith(`${instance.dataDir}/`)) {
    const relative = file.slice(instance.dataDir.length + 1);
    dataExclude.push(relative, `${relative}-journal`, `${relative}-wal`, `${relative}-shm`);
  }
  // An SSH user that is neither root nor the instance's owner reads the files through sudo.
  const needsSudo =
    plan.target.kind === 'ssh' && host.account !== 'root' && host.account !== instance.owner;
  return {
    ...(needsSudo ? { remoteRsync: 'sudo -n rsync' } : {}),
    installDir: instance.installDir,
    installPaths,
    ...(inside ? { dataDirInsideInstall: inside } : {}),
    dataDir: instance.dataDir,
    absolutePaths,
    exclude: plan.exclude,
    dataExclude,
  };
}
