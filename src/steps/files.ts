// Copies the instance's files from the host into the staging directory on the runner with
// rsync, keeping ACLs, xattrs, owners (numeric), modes, hard links, hidden files and empty
// directories. Run twice: the bulk before maintenance mode, then only the delta inside it.
import { finished } from 'node:stream/promises';
import { BackupError, InputError, InterruptedError } from '../errors.ts';
import type { Host } from '../host/host.ts';
import type { BackupPlan } from '../settings.ts';
import { existsOnHost, type Instance } from './discover.ts';
import { asUser, reached } from '../host/host.ts';
import {
  detectInstallType,
  isWithin,
  planAppDirs,
  type AppDir,
  type InstallKind,
} from './installation.ts';
import { runProcess, stderrTail, streamProcess, type ProcessResult } from '../host/process.ts';
import { isNoSpace, noSpaceError, type RunnerPrivilege } from '../host/runner.ts';
import type { ProgressCount, StepProgress } from '../progress.ts';

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
   * What each top-level path (an installPaths entry, or an absolute path) is on the host:
   * a directory is copied as `path/`, which follows a symlinked one; a symlink to a file is
   * copied with --copy-links. Links below the top level stay links. Absent: as it is.
   */
  kinds?: Record<string, PathKind>;
  /**
   * Install-relative paths that are symlinks inside a whole-installation copy (config/
   * linked elsewhere): copied again after it, followed, in place of the link.
   */
  linkedInside?: string[];
  /** Package or tarball install, and why. */
  install: InstallKind;
  /** The instance's app directories and what of each is copied. */
  appDirs: AppDir[];
  /** What of the installation is deliberately not copied, and why (package installs). */
  serverCode?: { what: string; why: string };
  /** Every top-level path copied (data dir included), and where it really is on the host. */
  included: { path: string; real: string; what: string }[];
  /**
   * How rsync runs on the host when the SSH user can read the files only through sudo
   * (e.g. `sudo -n rsync`); undefined for plain rsync.
   */
  remoteRsync?: string;
}

/** A top-level path of the file set as found on the host. */
export type PathKind = 'dir' | 'file' | 'file-link';

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
// names with spaces and shell characters intact on the remote side; progress2 reports
// the whole run's bytes and files as it goes (one \r-ended line per update, on stdout).
const RSYNC_FLAGS = ['-aHAXx', '--numeric-ids', '-s', '--stats', '--info=progress2'];

/**
 * One `--info=progress2` update (LC_ALL=C):
 * `     32,768,000  90%   1.07GB/s    0:00:00 (xfr#1, to-chk=3/5)`: bytes so far, files so far.
 */
export function parseRsyncProgress(line: string): ProgressCount | undefined {
  const match = /^\s*([\d,]+)\s+\d+%\s+\S+\s+\S+(?:\s+\(xfr#(\d+),[^)]*\))?\s*$/.exec(line);
  if (!match) return undefined;
  const bytes = Number(match[1]!.replaceAll(',', ''));
  // The first update comes before any file is done: it has no xfr# yet.
  return { bytes, files: match[2] === undefined ? 0 : Number(match[2]) };
}

const KEPT_LINES = 200;

/**
 * Splits rsync's stdout as it streams: progress updates (ended by \r) go to `onProgress`,
 * the last lines of the rest (the --stats block) are kept for parseRsyncStats.
 */
export class RsyncOutput {
  private pending = '';
  private kept: string[] = [];
  private readonly onProgress: (count: ProgressCount) => void;

  constructor(onProgress: (count: ProgressCount) => void) {
    this.onProgress = onProgress;
  }

  write(chunk: string): void {
    const pieces = (this.pending + chunk).split(/[\r\n]/);
    this.pending = pieces.pop()!;
    for (const piece of pieces) this.take(piece);
  }

  /** Everything that was not a progress update, one line each. */
  end(): string {
    if (this.pending) this.take(this.pending);
    this.pending = '';
    return this.kept.join('\n');
  }

  private take(piece: string): void {
    const progress = parseRsyncProgress(piece);
    if (progress) this.onProgress(progress);
    else if (piece.trim() !== '') {
      this.kept.push(piece);
      // The --stats block is a few lines at the end; anything else must not pile up.
      if (this.kept.length > KEPT_LINES) this.kept.shift();
    }
  }
}

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

  // A directory goes as `path/` (which follows a symlinked one); a symlink to a file needs
  // --copy-links, in a run of its own so that links anywhere else stay links.
  const kind = (key: string) => fileSet.kinds?.[key];
  const spelled = (key: string, path: string) => (kind(key) === 'dir' ? `${path}/` : path);
  const copyRelative = (keys: string[], path: (key: string) => string, member: string) => {
    const links = keys.filter((k) => kind(k) === 'file-link');
    const others = keys.filter((k) => kind(k) !== 'file-link');
    if (others.length > 0)
      copy(
        others.map((k) => spelled(k, path(k))),
        ['--relative'],
        member,
      );
    if (links.length > 0) copy(links.map(path), ['--relative', '--copy-links'], member);
  };

  if (options.parts.includes('install') && fileSet.installPaths.length > 0) {
    if (fileSet.installPaths.includes('.')) {
      const inside = fileSet.dataDirInsideInstall;
      copy([`${fileSet.installDir}/`], inside ? [`--exclude=/${inside}/`] : [], LAYOUT.install);
      if (fileSet.linkedInside?.length)
        copyRelative(fileSet.linkedInside, (p) => `${fileSet.installDir}/./${p}`, LAYOUT.install);
    } else {
      // --relative with /./ keeps each path's place below the install dir.
      copyRelative(fileSet.installPaths, (p) => `${fileSet.installDir}/./${p}`, LAYOUT.install);
    }
  }
  if (options.parts.includes('data'))
    copy(
      [`${fileSet.dataDir}/`],
      fileSet.dataExclude.map((p) => `--exclude=/${p}`),
      LAYOUT.data,
    );
  if (options.parts.includes('absolute') && fileSet.absolutePaths.length > 0)
    copyRelative(fileSet.absolutePaths, (p) => `/.${p}`, LAYOUT.absolute);
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
    /** Told rsync's counts as it goes (the step's progress lines). */
    progress?: StepProgress;
  },
): Promise<SyncStats> {
  const total: SyncStats = { files: 0, bytes: 0, transferredBytes: 0, vanished: false };
  for (const argv of rsyncCommands(fileSet, stagingDir, (p) => host.rsyncSource(p), options)) {
    const result = await runRsync([...options.privilege.prefix, ...argv], options);
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
    options.progress?.endRun({ bytes: stats.bytes, files: stats.files });
  }
  return total;
}

/** One rsync run, its stdout streamed: progress updates out as they come, the rest kept. */
async function runRsync(
  argv: string[],
  options: { signal: AbortSignal; progress?: StepProgress },
): Promise<ProcessResult> {
  const rsync = streamProcess(argv, { signal: options.signal, env: { LC_ALL: 'C' } });
  const output = new RsyncOutput((count) => options.progress?.update(count));
  rsync.stdout.setEncoding('utf8');
  rsync.stdout.on('data', (chunk: string) => output.write(chunk));
  const [result] = await Promise.all([
    rsync.done,
    // An aborted run's stdout may end in an error; its exit status tells what happened.
    finished(rsync.stdout).catch(() => {}),
  ]);
  return { ...result, stdout: output.end() };
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

// For each path, NUL-separated: what it is (following a symlink), whether it is a symlink,
// and its real path.
const INSPECT = `for p; do
  if [ -d "$p" ]; then k=dir; elif [ -L "$p" ] && [ -e "$p" ]; then k=file-link; elif [ -e "$p" ]; then k=file; else k=missing; fi
  if [ -L "$p" ]; then l=link; else l=; fi
  printf '%s\\0%s\\0%s\\0' "$k" "$l" "$(readlink -f -- "$p")"
done`;

/** What each path is on the host, as its owner sees it, and where it really is. */
async function inspectPaths(
  host: Host,
  owner: string,
  paths: string[],
): Promise<{ kind: PathKind | 'missing'; link: boolean; real: string }[]> {
  if (paths.length === 0) return [];
  const result = reached(
    host,
    await host.run(asUser(host.account, owner, ['sh', '-c', INSPECT, 'sh', ...paths])),
  );
  const fields = result.stdout.split('\0');
  if (result.exitCode !== 0 || fields.length < paths.length * 3)
    throw new BackupError(
      `Could not inspect the paths to back up on ${host.label}: ${stderrTail(result.stderr)}`,
    );
  return paths.map((path, i) => ({
    kind: fields[i * 3] as PathKind | 'missing',
    link: fields[i * 3 + 1] === 'link',
    real: fields[i * 3 + 2] || path,
  }));
}

/** Drops paths that lie inside another path of the list (the theme app inside apps-external/). */
function outermost(paths: string[]): string[] {
  const unique = [...new Set(paths)];
  return unique.filter((p) => !unique.some((q) => q !== p && isWithin(p, q)));
}

/**
 * What to copy for this instance: config/, the active theme, the app directories that are
 * not shipped server code and extra paths (or the whole installation for a tarball
 * install), the data directory without the live SQLite file, and absolute extra paths.
 * Checks that every path the user named exists.
 */
export async function planFileSet(
  host: Host,
  plan: BackupPlan,
  instance: Instance,
  warn: (message: string) => void,
): Promise<FileSet> {
  const relativeExtras = plan.extraPaths.filter((p) => !p.startsWith('/'));
  const extraAbsolute = plan.extraPaths.filter((p) => p.startsWith('/'));
  for (const path of [
    ...relativeExtras.map((p) => `${instance.installDir}/${p}`),
    ...extraAbsolute,
  ]) {
    if (!(await existsOnHost(host, instance.owner, '-e', path)))
      throw new InputError(`extra-paths: '${path}' does not exist on ${host.label}.`);
  }
  const inside = instance.dataDir.startsWith(`${instance.installDir}/`)
    ? instance.dataDir.slice(instance.installDir.length + 1)
    : undefined;
  const install = await detectInstallType(host, plan.installType, instance);
  const apps = await planAppDirs(host, instance, install, warn);
  const theme = await themePath(host, instance);
  if (instance.theme && !theme)
    warn(
      `config.php names theme '${instance.theme}', but no themes/, apps-external/ or apps/ directory of that name exists.`,
    );
  // The parts of the installation a restore needs; a tarball install copies all of it.
  const wanted = outermost([
    'config',
    ...(theme ? [theme] : []),
    ...apps.installPaths,
    ...relativeExtras,
  ]);
  const installPaths = install.type === 'tarball' ? ['.'] : wanted;
  const absolutePaths = outermost([...apps.absolutePaths, ...extraAbsolute]);

  const dataExclude: string[] = [];
  const file = instance.database.file;
  if (file && file.startsWith(`${instance.dataDir}/`)) {
    const relative = file.slice(instance.dataDir.length + 1);
    dataExclude.push(relative, `${relative}-journal`, `${relative}-wal`, `${relative}-shm`);
  }

  // Every top-level path: what it is (a symlinked one is followed) and where it really is.
  const named = [
    ...installPaths.map((p) => ({
      key: p,
      path: p === '.' ? instance.installDir : `${instance.installDir}/${p}`,
      what: p === '.' ? 'the installation' : `the installation's ${p}`,
    })),
    { key: '', path: instance.dataDir, what: 'the data directory' },
    ...absolutePaths.map((p) => ({
      key: p,
      path: p,
      what: apps.absolutePaths.includes(p) ? 'an app directory' : 'an extra path',
    })),
  ];
  // In a whole-installation copy, config/, the theme and app dirs are below the top level;
  // symlinked ones are copied again, followed, over the link.
  const below = install.type === 'tarball' ? wanted : [];
  const inspected = await inspectPaths(host, instance.owner, [
    ...named.map((n) => n.path),
    ...below.map((p) => `${instance.installDir}/${p}`),
  ]);
  const kinds: Record<string, PathKind> = {};
  named.forEach((n, i) => {
    const { kind } = inspected[i]!;
    if (n.key !== '' && kind !== 'missing') kinds[n.key] = kind;
  });
  const linkedInside = below.filter((p, i) => {
    const found = inspected[named.length + i]!;
    if (found.link && found.kind !== 'missing') kinds[p] = found.kind;
    return found.link && found.kind !== 'missing';
  });

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
    kinds,
    ...(linkedInside.length > 0 ? { linkedInside } : {}),
    install,
    appDirs: apps.appDirs,
    ...(install.type === 'package'
      ? {
          serverCode: {
            what: `everything else in ${instance.installDir}`,
            why: `server code: package install, reinstall the same version (${instance.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud'} ${instance.version}${install.package ? `, package ${install.package}` : ''})`,
          },
        }
      : {}),
    included: [
      ...named.map((n, i) => ({ path: n.path, real: inspected[i]!.real, what: n.what })),
      ...below.flatMap((p, i) =>
        linkedInside.includes(p)
          ? [
              {
                path: `${instance.installDir}/${p}`,
                real: inspected[named.length + i]!.real,
                what: `the installation's ${p}`,
              },
            ]
          : [],
      ),
    ],
  };
}

/**
 * Fails unless the staged copy holds config.php as a regular file: a backup without it
 * cannot be restored, whatever else it holds.
 */
export async function checkStagedConfig(
  stagingDir: string,
  privilege: RunnerPrivilege,
): Promise<void> {
  const dir = `${stagingDir}/${LAYOUT.install}/config`;
  const staged = `${dir}/config.php`;
  // Not through a symlink: a staged link would point at the live file, not hold a copy.
  const result = await runProcess([
    ...privilege.prefix,
    'test',
    '!',
    '-h',
    dir,
    '-a',
    '!',
    '-h',
    staged,
    '-a',
    '-f',
    staged,
    '-a',
    '-s',
    staged,
  ]);
  if (result.exitCode !== 0)
    throw new BackupError(
      `config.php did not arrive in the backup (${LAYOUT.install}/config/config.php is missing, empty or a symlink after the copy): without it the backup cannot be restored. Check the exclude patterns.`,
    );
}
