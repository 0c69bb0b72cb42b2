// Reads the instance's files on the host with GNU tar and streams them into compressed
// archives here, keeping ACLs, xattrs, owners (numeric), modes, hard links, hidden files and
// empty directories. Two passes: the base (level 0) while the instance is live, then inside
// the maintenance window the delta (level 1): only what changed, and what was deleted.
import { rmSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { finished } from 'node:stream/promises';
import { BackupError, InputError, InterruptedError, LinkError } from '../errors.ts';
import { guardedCommand } from '../host/guarded.ts';
import type { Host } from '../host/host.ts';
import type { BackupPlan, Compression } from '../settings.ts';
import type { Instance } from './discover.ts';
import { reached } from '../host/host.ts';
import { HostPaths, type PathKind } from './host-paths.ts';
import {
  appDirCandidates,
  detectInstallType,
  isWithin,
  planAppDirs,
  type AppDir,
  type InstallKind,
} from './installation.ts';
import { stderrTail, type StreamingProcess } from '../host/process.ts';
import { isNoSpace } from '../host/runner.ts';
import type { StepProgress } from '../progress.ts';
import { TAR_METADATA_FLAGS } from './archive.ts';
import { compressToFile, type WrittenFile } from './compress.ts';
import { TarScan, type TarMember } from './tar-scan.ts';

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
   * What tar reads, and the archive member each becomes (the data directory, each install
   * path, each absolute path; a symlinked top-level path is read where it points).
   */
  parts: TarPart[];
  /** Host paths never read (the live SQLite files, a linked path's link inside the install). */
  skip: string[];
  /**
   * The argv prefix that lets tar read every file: `sudo -n` when the session's user is
   * neither root nor the instance's owner, else nothing.
   */
  readAs: string[];
}

/** A top-level path of the file set as found on the host. */
export type { PathKind } from './host-paths.ts';

/** Archive member directories: where each part of the instance lands in the archive. */
export const LAYOUT = { install: 'owncloud', data: 'data', absolute: 'extra' } as const;

/** One top-level path as tar reads it on the host, and the archive member it becomes. */
export interface TarPart {
  /** Where it really is on the host: absolute, symlinks resolved (a linked one is followed). */
  source: string;
  /** Its name in the archive: `owncloud/config`, `owncloud`, `data`, `extra/etc/x`. */
  member: string;
  /** Only the data and absolute parts are read again inside the maintenance window. */
  part: 'install' | 'data' | 'absolute';
  /** The paths the user's anchored patterns are relative to: '' for the part's own root. */
  patternRoot: string;
}

/** The two passes: level 0 while the instance is live, level 1 (what changed) in the window. */
export type TarPhase = 'base' | 'delta';

/** What a pass read. */
export interface StreamStats {
  /** Regular files (and hard links) archived, and their bytes. */
  files: number;
  bytes: number;
  /** Some files changed or vanished while tar read them (tar exit 1). */
  changedWhileRead: boolean;
  /** tar's own words about them (a few lines). */
  complaints: string[];
}

/** A path in the form tar reads it with `--directory=/`: without the leading slash. Pure. */
export function fromRoot(path: string): string {
  const relative = path.replace(/^\/+/, '').replace(/\/+$/, '');
  if (relative === '') throw new BackupError('The root directory itself cannot be backed up.');
  if (/[\n\0]/.test(relative))
    throw new BackupError(`The path '${path}' contains a line break, which tar cannot be told.`);
  return relative;
}

/** `text` with every character an extended regex gives a meaning to escaped, and `,`. Pure. */
function escapeRegex(text: string): string {
  return text.replace(/[\\.[\](){}|*+?^$,]/g, '\\$&');
}

/**
 * tar --transform expressions that rename each part's host path to its archive member:
 * the innermost first, each result marked by a leading '/' (which no host path read with
 * --directory=/ has) so that no later expression renames it again, then the mark removed.
 * Symlink targets are left as they are. Pure.
 */
export function tarTransforms(parts: readonly TarPart[], rest?: string): string[] {
  const ordered = [...parts].sort((a, b) => b.source.length - a.source.length);
  return [
    ...ordered.map((p) => {
      const replacement = p.member.replace(/[\\&,]/g, '\\$&');
      return `--transform=s,^${escapeRegex(fromRoot(p.source))}(/|$),/${replacement}\\1,xrhS`;
    }),
    // `rest`: where every name no part renamed goes (below it, as it is).
    ...(rest ? [`--transform=s,^([^/]),/${rest}/\\1,xrhS`] : []),
    '--transform=s,^/,,rhS',
  ];
}

/** A glob as a regular expression for whole names (rsync's rules: `*` stops at '/'). Pure. */
function globRegex(glob: string): RegExp {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      out += '.*';
      i++;
    } else if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end === -1) out += '\\[';
      else {
        const body = glob
          .slice(i + 1, end)
          .replace(/^!/, '^')
          .replace(/\\/g, '\\\\');
        out += `[${body}]`;
        i = end;
      }
    } else out += c.replace(/[\\.(){}|+^$]/g, '\\$&');
  }
  return new RegExp(`^(?:${out})$`);
}

/**
 * The user's exclude patterns (rsync's form) as tar options. A pattern with a leading '/'
 * is anchored at the root of each part it falls in (the installation, the data directory,
 * '/' for absolute paths); any other matches at any depth, `*` within one name and `**`
 * across names. A trailing '/' is dropped: tar cannot restrict a pattern to directories.
 * A pattern that would match a part's own path (`data` against the data directory) is
 * refused: tar would leave out the whole part. Pure.
 */
export function tarExcludeOptions(
  patterns: readonly string[],
  parts: readonly TarPart[],
): string[] {
  const options: string[] = [];
  for (const raw of patterns) {
    const pattern = raw.replace(/\/+$/, '');
    if (pattern === '') continue;
    if (pattern.startsWith('/')) {
      for (const { part, within } of anchoredIn(pattern, parts)) {
        const target = within === '' ? fromRoot(part.source) : `${fromRoot(part.source)}/${within}`;
        options.push(
          '--anchored',
          '--wildcards',
          '--no-wildcards-match-slash',
          `--exclude=${target}`,
        );
      }
      continue;
    }
    const matcher = globRegex(pattern);
    for (const part of parts) {
      const names = fromRoot(part.source).split('/');
      for (let i = 0; i < names.length; i++)
        for (let j = i + 1; j <= names.length; j++)
          if (matcher.test(names.slice(i, j).join('/')))
            throw new InputError(
              `exclude: '${raw}' matches the name of '${part.source}' itself, which would leave it out whole. Anchor the pattern with a leading '/' (e.g. '/${pattern}') to mean a path inside it.`,
            );
    }
    const across = pattern.includes('**');
    options.push(
      '--no-anchored',
      '--wildcards',
      across ? '--wildcards-match-slash' : '--no-wildcards-match-slash',
      `--exclude=${across ? pattern.replaceAll('**', '*') : pattern}`,
    );
  }
  return options;
}

/**
 * The parts an anchored pattern (leading '/') falls in, and what of it lies within each:
 * '' when it names the part itself. Its root is each part's pattern root (the data
 * directory, the installation, '/' for absolute paths). Pure.
 */
export function anchoredIn(
  pattern: string,
  parts: readonly TarPart[],
): { part: TarPart; within: string }[] {
  const path = pattern.replace(/^\/+/, '');
  const found: { part: TarPart; within: string }[] = [];
  for (const part of parts) {
    const root = part.patternRoot;
    if (root === '') found.push({ part, within: path });
    else if (path.startsWith(`${root}/`)) found.push({ part, within: path.slice(root.length + 1) });
    else if (root === path) found.push({ part, within: '' });
  }
  return found;
}

/** The sources a pass gives tar: the outermost of its parts (an inner one is read with it). */
export function outermostSources(parts: readonly TarPart[]): string[] {
  const sources = [...new Set(parts.map((p) => p.source))];
  return sources.filter((s) => !sources.some((o) => o !== s && isWithin(s, o)));
}

/** Options every tar pass is given, for these parts. Pure. */
function commonOptions(fileSet: FileSet, parts: readonly TarPart[]): string[] {
  return [
    'tar',
    '--create',
    '--file=-',
    '--format=posix',
    '--directory=/',
    '--one-file-system',
    // atime/ctime records change on every read and say nothing a restore needs.
    '--pax-option=delete=atime,delete=ctime',
    ...TAR_METADATA_FLAGS,
    ...fileSet.skip.flatMap((path) => [
      '--anchored',
      '--no-wildcards',
      `--exclude=${fromRoot(path)}`,
    ]),
    ...tarExcludeOptions(fileSet.exclude, parts),
    // Wildcards stay the patterns' own: left on for the paths to read, they make tar's
    // incremental mode drop every directory record (GNU tar 1.34).
    '--no-wildcards',
  ];
}

/**
 * The directories above the nested install paths (`themes` above `themes/mytheme`) and
 * above the absolute paths (`/etc`, `/etc/apache2` above `/etc/apache2/x.conf`), each
 * archived alone so that it comes back with its own owner and mode: extracted by hand and
 * copied into place (`cp -a`), a directory tar made up would carry tar's defaults onto
 * the real one (`/tmp` losing its mode). Pure.
 */
function impliedParents(fileSet: FileSet): { install: string[]; absolute: string[] } {
  const install = new Set<string>();
  const absolute = new Set<string>();
  for (const part of fileSet.parts) {
    if (part.part === 'data') continue;
    const names = part.patternRoot.split('/');
    for (let i = 1; i < names.length; i++) {
      const prefix = names.slice(0, i).join('/');
      if (part.part === 'install') install.add(`${fileSet.installDir}/${prefix}`);
      else absolute.add(`/${prefix}`);
    }
  }
  const shallowFirst = (set: Set<string>) =>
    [...set].sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b));
  return { install: shallowFirst(install), absolute: shallowFirst(absolute) };
}

/**
 * The tar runs on the host for one pass, their archives joined into one here (each but the
 * last without its end-of-archive marker). The base pass reads the installation's parts
 * (and the directories above nested ones) in a plain run, then the data directory and the
 * absolute paths in GNU tar's incremental mode: the snapshot file remembers what it saw, so
 * that the delta pass archives only what changed since, with every directory's list of
 * entries (what was deleted is deleted on extraction too). Each part is read where it
 * really is and renamed to its archive member; owners are numeric, ACLs and xattrs kept,
 * one file system per path (as the size estimate measures). Pure.
 */
export function tarCommands(fileSet: FileSet, phase: TarPhase, snapshot: string): string[][] {
  const install = fileSet.parts.filter((p) => p.part === 'install');
  const live = fileSet.parts.filter((p) => p.part !== 'install');
  const commands: string[][] = [];
  if (phase === 'base' && install.length > 0) {
    const parents = impliedParents(fileSet);
    // A data directory inside the installation (a tarball install) is the next run's.
    const inside = live.filter((p) => install.some((i) => isWithin(p.source, i.source)));
    commands.push([
      ...commonOptions(fileSet, install),
      ...inside.flatMap((p) => ['--anchored', '--no-wildcards', `--exclude=${fromRoot(p.source)}`]),
      ...tarTransforms(
        [
          ...install,
          ...(parents.install.length > 0
            ? [
                {
                  source: fileSet.installDir,
                  member: LAYOUT.install,
                  part: 'install' as const,
                  patternRoot: '',
                },
              ]
            : []),
        ],
        // What no part renamed is a directory above an absolute path: it goes below extra/.
        parents.absolute.length > 0 ? LAYOUT.absolute : undefined,
      ),
      '--no-recursion',
      ...[...parents.install, ...parents.absolute].map((p) => `--add-file=${fromRoot(p)}`),
      '--recursion',
      ...outermostSources(install).map((s) => `--add-file=${fromRoot(s)}`),
    ]);
  }
  commands.push([
    ...commonOptions(fileSet, live),
    `--listed-incremental=${snapshot}`,
    // See FORGET_DEVICES: renames are not detected, moved directories are archived whole.
    ...(phase === 'delta' ? ['--no-check-device'] : []),
    // Every directory is new to the base pass: nothing worth a line.
    '--warning=no-new-dir',
    ...tarTransforms(live),
    ...outermostSources(live).map((s) => `--add-file=${fromRoot(s)}`),
  ]);
  return commands;
}

/**
 * Creates the private directory on the host that holds a run's tar snapshot file, as the
 * session's own user (tar, through sudo or not, can write there; the user can remove it).
 */
export async function createSnapshotDir(host: Host): Promise<string> {
  const result = reached(
    host,
    await host.run(['mktemp', '-d', '-t', 'owncloud-backup-snapshot.XXXXXXXXXX']),
  );
  const dir = result.stdout.trim();
  if (result.exitCode !== 0 || !dir.startsWith('/'))
    throw new BackupError(
      `Could not create a private temporary directory on ${host.label}: ${stderrTail(result.stderr) || 'mktemp gave no name'}`,
    );
  return dir;
}

/** Removes it again (it holds only the names and times of the files read). */
export async function removeSnapshotDir(host: Host, dir: string): Promise<void> {
  if (!/\/owncloud-backup-snapshot\.[A-Za-z0-9]+$/.test(dir)) return;
  await host.run(['rm', '-rf', '--', dir]);
}

// GNU tar's incremental mode takes a directory whose device and inode it saw under another
// name as renamed, and records the rename under the host paths (not the archive's member
// names): an extraction elsewhere would fail on it. With the snapshot's device numbers
// cleared and --no-check-device, a directory is matched by name and inode only, so a moved
// (or deleted and recreated) directory is archived whole in the delta instead.
const FORGET_DEVICES = String.raw`
$in = $argv[1]; $out = $argv[2];
$d = file_get_contents($in);
if ($d === false) { fwrite(STDERR, "cannot read $in\n"); exit(1); }
$nl = strpos($d, "\n");
if ($nl === false || substr($d, $nl - 2, 2) !== '-2') { fwrite(STDERR, "not a tar snapshot of format 2\n"); exit(1); }
$f = explode("\0", substr($d, $nl + 1));
$n = count($f);
for ($i = 2; $i + 5 < $n; ) {
  $f[$i + 3] = '0';
  $i += 6;
  while ($i < $n && $f[$i] !== '') $i++;
  while ($i < $n && $f[$i] === '') $i++;
}
if (file_put_contents($out, substr($d, 0, $nl + 1) . implode("\0", $f)) === false) { fwrite(STDERR, "cannot write $out\n"); exit(1); }
`;

/** The snapshot the delta pass starts from: the base's, with directory devices cleared. */
export async function deltaSnapshot(host: Host, snapshot: string): Promise<string> {
  const out = `${snapshot}-delta`;
  const result = reached(
    host,
    await host.run(['php', '-d', 'memory_limit=-1', '-r', FORGET_DEVICES, snapshot, out]),
  );
  if (result.exitCode !== 0)
    throw new BackupError(
      `Could not prepare tar's snapshot for the pass inside the maintenance window on ${host.label}: ${stderrTail(result.stderr) || stderrTail(result.stdout) || `php exit ${result.exitCode}`}`,
    );
  return out;
}

const KEPT_LINES = 20;

/**
 * One pass: tar on the host streams the parts here, where they are compressed into `path`
 * (hashed on the way) while their headers are read (`onMember`). tar's exit 1 (a file
 * changed or vanished while read) is reported, not failed: the base pass runs on a live
 * server and the delta pass catches up.
 */
export async function streamFiles(
  host: Host,
  fileSet: FileSet,
  options: {
    phase: TarPhase;
    snapshot: string;
    path: string;
    compression: Compression;
    /** age's recipients file: the archive is encrypted as it is written. */
    encryptTo?: string;
    signal: AbortSignal;
    progress?: StepProgress;
    onMember?: (member: TarMember) => void;
  },
): Promise<WrittenFile & StreamStats> {
  const complaints: string[] = [];
  let pending = '';
  const onStderr = (text: string) => {
    const lines = (pending + text).split('\n');
    pending = lines.pop()!;
    for (const line of lines)
      if (line.trim() !== '') {
        complaints.push(line);
        if (complaints.length > KEPT_LINES) complaints.shift();
      }
  };
  const stats = { files: 0, bytes: 0 };
  const commands = tarCommands(fileSet, options.phase, options.snapshot);
  // The runs' archives, joined: what the compressor reads.
  const joined = new PassThrough();
  const writing = compressToFile(
    joined,
    options.compression,
    options.path,
    options.signal,
    options.encryptTo,
  );
  // A write that fails (a full disk) stops the tar run feeding it, and is the cause told.
  let current: { tar: StreamingProcess; scan: TarScan } | undefined;
  let writeFailure: { error: unknown } | undefined;
  const stopCurrent = () => {
    current?.tar.kill();
    current?.tar.stdout.destroy();
    current?.scan.destroy();
  };
  writing.catch((error: unknown) => {
    writeFailure = { error };
    stopCurrent();
  });
  let readBefore = 0;
  let changedWhileRead = false;
  const fail = async (error: unknown): Promise<never> => {
    joined.destroy();
    await writing.catch(() => {});
    rmSync(options.path, { force: true });
    throw error;
  };
  for (const [index, argv] of commands.entries()) {
    const last = index === commands.length - 1;
    const scan = new TarScan(
      (member) => {
        if (member.type === 'file' || member.type === 'hardlink') {
          stats.files++;
          stats.bytes += member.size;
        }
        options.onMember?.(member);
      },
      (read) =>
        options.progress?.update({ bytes: readBefore + read.fileBytes, files: stats.files }),
      { keepEnd: last },
    );
    const tar = host.stream(guardedCommand([...fileSet.readAs, ...argv], 'none'), {
      input: '\n',
      keepStdinOpen: true,
      signal: options.signal,
      onStderr,
    });
    current = { tar, scan };
    if (writeFailure) stopCurrent();
    tar.stdout.pipe(scan).pipe(joined, { end: last });
    const [scanned, result] = await Promise.allSettled([finished(scan), tar.done]);
    readBefore += scan.fileBytes;
    if (options.signal.aborted) {
      tar.kill();
      return fail(new InterruptedError());
    }
    if (writeFailure) return fail(writeFailure.error);
    if (result.status === 'rejected') return fail(result.reason);
    const ended = result.value;
    const transport = host.transportFailure(ended);
    if (transport)
      return fail(new LinkError(`Reading the files on ${host.label} failed: ${transport}`));
    if (ended.exitCode > 1) {
      if (pending.trim() !== '') complaints.push(pending);
      const said = stderrTail(complaints.join('\n'));
      return fail(
        new BackupError(
          isNoSpace(said)
            ? `Reading the files on ${host.label} failed: ${said}`
            : `Reading the files on ${host.label} failed (tar exit ${ended.exitCode}): ${said || 'no message'}`,
        ),
      );
    }
    if (scanned.status === 'rejected')
      return fail(
        new BackupError(
          `Reading the files on ${host.label} failed: ${scanned.reason instanceof Error ? scanned.reason.message : String(scanned.reason)}`,
        ),
      );
    changedWhileRead ||= ended.exitCode === 1;
  }
  let written: WrittenFile;
  try {
    written = await writing;
  } catch (error) {
    return fail(error);
  }
  if (pending.trim() !== '') complaints.push(pending);
  return {
    ...written,
    ...stats,
    changedWhileRead,
    complaints: changedWhileRead ? complaints : [],
  };
}

/** A name's key in FileTally: two 32-bit FNV-1a hashes, 53 bits. Pure. */
function nameKey(name: string): number {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x5bd1e995;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193) >>> 0;
    b = Math.imul(b ^ c, 0x5bd1e995) >>> 0;
  }
  return (a & 0x1fffff) * 0x100000000 + b;
}

/**
 * The files a backup holds, counted from its two passes: the base pass's members, then
 * the delta's (its directories' entry lists say which files are unchanged, changed or
 * gone). Only a number per data file is kept, not its name.
 */
export class FileTally {
  private installFiles = 0;
  private installBytes = 0;
  private dataFiles = 0;
  private dataBytes = 0;
  private readonly sizes = new Map<number, number>();
  private finalFiles = 0;
  private finalBytes = 0;
  private readonly seen = new Set<number>();
  private readonly topFiles: string[];

  /** `topFiles`: data or absolute parts that are files, not directories (no listing holds them). */
  constructor(topFiles: readonly string[]) {
    this.topFiles = [...topFiles];
  }

  base(member: TarMember): void {
    if (member.type !== 'file' && member.type !== 'hardlink') return;
    if (member.name.startsWith(`${LAYOUT.install}/`) || member.name === LAYOUT.install) {
      this.installFiles++;
      this.installBytes += member.size;
      return;
    }
    this.dataFiles++;
    this.dataBytes += member.size;
    this.sizes.set(nameKey(member.name), member.size);
  }

  delta(member: TarMember): void {
    if (member.dumpdir) {
      for (const entry of member.dumpdir) {
        if (entry.flag !== 'N') continue;
        const key = nameKey(`${member.name}/${entry.name}`);
        const size = this.sizes.get(key);
        if (size === undefined || this.seen.has(key)) continue;
        this.seen.add(key);
        this.finalFiles++;
        this.finalBytes += size;
      }
      return;
    }
    if (member.type !== 'file' && member.type !== 'hardlink') return;
    const key = nameKey(member.name);
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.finalFiles++;
    this.finalBytes += member.size;
  }

  /** Without a delta pass: what the base pass read. */
  total(withDelta: boolean): { files: number; bytes: number } {
    if (!withDelta)
      return {
        files: this.installFiles + this.dataFiles,
        bytes: this.installBytes + this.dataBytes,
      };
    let files = this.finalFiles;
    let bytes = this.finalBytes;
    for (const name of this.topFiles) {
      const key = nameKey(name);
      const size = this.sizes.get(key);
      if (size === undefined || this.seen.has(key)) continue;
      files++;
      bytes += size;
    }
    return { files: this.installFiles + files, bytes: this.installBytes + bytes };
  }
}

/** Where the theme may live, install-relative: legacy themes/<name>, or (ownCloud 10) a theme app. */
function themeCandidates(instance: Instance): string[] {
  // A theme is a directory name; anything that could climb out of the installation is not one.
  if (!instance.theme || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(instance.theme)) return [];
  return [`themes/${instance.theme}`, `apps-external/${instance.theme}`, `apps/${instance.theme}`];
}

/** Where the theme lives: the first candidate that is a directory. */
async function themePath(paths: HostPaths, instance: Instance): Promise<string | undefined> {
  for (const candidate of themeCandidates(instance))
    if (await paths.isDir(`${instance.installDir}/${candidate}`)) return candidate;
  return undefined;
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
  const extras = [...relativeExtras.map((p) => `${instance.installDir}/${p}`), ...extraAbsolute];
  // One question to the host about every path the plan below may look at.
  const paths = await HostPaths.inspect(host, instance.owner, [
    ...extras,
    instance.installDir,
    `${instance.installDir}/config`,
    instance.dataDir,
    ...appDirCandidates(instance),
    ...themeCandidates(instance).map((p) => `${instance.installDir}/${p}`),
  ]);
  for (const path of extras) {
    if (!(await paths.exists(path)))
      throw new InputError(`extra-paths: '${path}' does not exist on ${host.label}.`);
  }
  const inside = instance.dataDir.startsWith(`${instance.installDir}/`)
    ? instance.dataDir.slice(instance.installDir.length + 1)
    : undefined;
  const install = await detectInstallType(host, plan.installType, instance, paths);
  const apps = await planAppDirs(host, instance, install, warn, paths);
  const theme = await themePath(paths, instance);
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
  const inspected = await paths.factsOf([
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

  // An SSH user that is neither root nor the instance's owner reads the files through sudo
  // (on this machine, the runner's own privilege decides: see preflight).
  const needsSudo =
    plan.target.kind === 'ssh' && host.account !== 'root' && host.account !== instance.owner;
  const realOf = (i: number) => inspected[i]!.real;
  // (Only a whole-installation copy has paths below the top level: named[0] is the installation.)
  const installReal = realOf(0);
  const parts: TarPart[] = [];
  const skip: string[] = [];
  named.forEach((n, i) => {
    if (i < installPaths.length)
      parts.push({
        source: realOf(i),
        member: n.key === '.' ? LAYOUT.install : `${LAYOUT.install}/${n.key}`,
        part: 'install',
        patternRoot: n.key === '.' ? '' : n.key,
      });
    else if (i === installPaths.length)
      parts.push({ source: realOf(i), member: LAYOUT.data, part: 'data', patternRoot: '' });
    else
      parts.push({
        source: realOf(i),
        member: `${LAYOUT.absolute}${n.path}`,
        part: 'absolute',
        patternRoot: n.path.replace(/^\/+/, ''),
      });
  });
  below.forEach((p, i) => {
    const found = inspected[named.length + i]!;
    if (!found.link || found.kind === 'missing') return;
    parts.push({
      source: found.real,
      member: `${LAYOUT.install}/${p}`,
      part: 'install',
      patternRoot: p,
    });
    skip.push(`${installReal}/${p}`);
  });
  const dataReal = parts.find((p) => p.part === 'data')!.source;
  for (const p of dataExclude) skip.push(`${dataReal}/${p}`);
  return {
    readAs: needsSudo ? ['sudo', '-n'] : [],
    parts,
    skip,
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
