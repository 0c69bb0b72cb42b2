// What a files archive holds under some paths, read here from tar's verbose listing: names,
// types, sizes, mtimes and hard link targets. One pass over the archive, line by line, only
// the wanted entries kept. The listing is asked for in C quoting (every byte that is not
// printable ASCII as an escape) and UTC, so any name and any runner's locale parse the same.
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BackupError } from '../errors.ts';
import { tarOnArchive, openArchive, type ArchiveFile } from './compress.ts';
import { TarScan } from './tar-scan.ts';

export interface ArchiveEntry {
  /** The member name as archived, without a trailing slash (e.g. `data/alice/files/a.txt`). */
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'hardlink' | 'other';
  /** Bytes (0 for everything but files). */
  size: number;
  /** Modification time, `YYYY-MM-DD HH:MM:SS` in UTC. */
  mtime: string;
  /** `rwxr-x---` style permissions. */
  mode: string;
  uid: number;
  gid: number;
  /** A hard link's target member, or a symlink's target. */
  linkTarget?: string;
}

/** Undoes tar's C quoting: `\\`, `\"`, `\n`, `\t` and friends, and `\ooo` octal bytes. Pure. */
export function unquoteC(text: string): string {
  const bytes: number[] = [];
  const simple: Record<string, number> = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11 };
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c !== '\\') {
      bytes.push(...Buffer.from(c, 'utf8'));
      continue;
    }
    const next = text[i + 1] ?? '';
    if (/[0-7]/.test(next)) {
      const octal = /^[0-7]{1,3}/.exec(text.slice(i + 1))![0];
      bytes.push(parseInt(octal, 8));
      i += octal.length;
    } else {
      bytes.push(simple[next] ?? next.charCodeAt(0));
      i += 1;
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

const QUOTED = String.raw`"((?:[^"\\]|\\.)*)"`;
const LINE = new RegExp(
  String.raw`^(.)(\S{9})\S*\s+(\d+)/(\d+)\s+(\d+|\d+,\s*\d+)\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.\d+)?\s+${QUOTED}(?: (->|link to) ${QUOTED})?$`,
);

/** One line of `tar --list --verbose --full-time --numeric-owner --quoting-style=c`. Pure. */
export function parseListingLine(line: string): ArchiveEntry | undefined {
  const m = LINE.exec(line);
  if (!m) return undefined;
  const [, kind, mode, uid, gid, size, mtime, name, link, target] = m;
  const type =
    kind === '-'
      ? 'file'
      : kind === 'd'
        ? 'directory'
        : kind === 'l'
          ? 'symlink'
          : kind === 'h'
            ? 'hardlink'
            : 'other';
  return {
    name: unquoteC(name!).replace(/\/+$/, ''),
    type,
    size: type === 'file' ? Number(size) : 0,
    mtime: mtime!,
    mode: mode!,
    uid: Number(uid),
    gid: Number(gid),
    ...(link && target !== undefined ? { linkTarget: unquoteC(target) } : {}),
  };
}

/** True when `name` is `path` or lies below it. Pure. */
export function isAtOrBelow(name: string, path: string): boolean {
  return name === path || name.startsWith(`${path}/`);
}

/**
 * The entries of an archive for which `wanted` is true, in archive order. A listing line
 * that cannot be parsed, or a tar that fails, fails the listing: a partial answer would
 * look like a backup without those files.
 */
export async function listArchive(
  archive: ArchiveFile,
  wanted: (name: string) => boolean,
  signal?: AbortSignal,
): Promise<ArchiveEntry[]> {
  const archivePath = archive.path;
  const tar = tarOnArchive(
    archive,
    ['--list', '--verbose', '--full-time', '--numeric-owner', '--quoting-style=c', '--file=-'],
    { env: { TZ: 'UTC', LC_ALL: 'C' }, ...(signal ? { signal } : {}) },
  );
  const entries: ArchiveEntry[] = [];
  let unparsed: string | undefined;
  for await (const line of createInterface({ input: tar.stdout, crlfDelay: Infinity })) {
    if (line === '') continue;
    const entry = parseListingLine(line);
    if (!entry) {
      unparsed ??= line;
      continue;
    }
    if (wanted(entry.name)) entries.push(entry);
  }
  const listed = await tar.done;
  if (!listed.ok) throw new BackupError(`Listing ${archivePath} failed: ${listed.problem}`);
  if (unparsed !== undefined)
    throw new BackupError(
      `Listing ${archivePath}: a line of tar's listing could not be read: '${unparsed.slice(0, 200)}'`,
    );
  return entries;
}

/**
 * The directories' entry lists (GNU.dumpdir) of an incremental archive, for the directories
 * for which `wanted` is true: directory member → the names it held when it was archived.
 */
export async function readDumpdirs(
  archive: ArchiveFile,
  wanted: (directory: string) => boolean,
  signal?: AbortSignal,
): Promise<Map<string, Set<string>>> {
  const lists = new Map<string, Set<string>>();
  const decompress = openArchive(archive, signal);
  const scan = new TarScan((member) => {
    if (member.dumpdir && wanted(member.name))
      lists.set(member.name, new Set(member.dumpdir.map((e) => e.name)));
  });
  const [scanned, result] = await Promise.allSettled([
    pipeline(decompress.stdout, scan, new Writable({ write: (_c, _e, done) => done() })),
    decompress.done,
  ]);
  const ended = result.status === 'fulfilled' ? result.value : undefined;
  if (!ended?.ok)
    throw new BackupError(`Reading ${archive.path} failed: ${ended?.problem ?? 'no message'}`);
  if (scanned.status === 'rejected')
    throw new BackupError(`Reading ${archive.path} failed: ${describe(scanned.reason)}`);
  return lists;
}

function describe(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}

/**
 * The state a base archive and its delta hold together (pure): the base's entries, those
 * the delta archived again in their place, and without what the delta's entry lists say was
 * gone (with everything below it).
 */
export function mergeListings(
  base: readonly ArchiveEntry[],
  delta: readonly ArchiveEntry[],
  dumpdirs: ReadonlyMap<string, ReadonlySet<string>>,
): ArchiveEntry[] {
  const merged = new Map<string, ArchiveEntry>();
  for (const entry of base) merged.set(entry.name, entry);
  for (const entry of delta) merged.set(entry.name, entry);
  const gone = (name: string): boolean => {
    // Gone when some listed directory above it no longer held the next name down.
    for (let slash = name.lastIndexOf('/'); slash > 0; slash = name.lastIndexOf('/', slash - 1)) {
      const listed = dumpdirs.get(name.slice(0, slash));
      if (!listed) continue;
      const child = name.slice(slash + 1).split('/')[0]!;
      if (!listed.has(child)) return true;
    }
    return false;
  };
  return [...merged.values()].filter((entry) => !gone(entry.name));
}

/** A backup's files archives as the manifest lists them: the base, and its delta if any. */
export interface FilesArchives {
  base: ArchiveFile;
  delta?: ArchiveFile;
}

/**
 * The entries of the files the backup holds (base and delta together) for which `wanted`
 * is true. The delta is small: it holds only what changed inside the maintenance window.
 */
export async function listBackupFiles(
  archives: FilesArchives,
  wanted: (name: string) => boolean,
  signal?: AbortSignal,
): Promise<ArchiveEntry[]> {
  const { base, delta } = archives;
  const baseEntries = listArchive(base, wanted, signal);
  if (!delta) return baseEntries;
  const [listed, deltaEntries] = await Promise.all([
    baseEntries,
    listArchive(delta, wanted, signal),
  ]);
  // The lists of the directories above the wanted entries say whether each is still there.
  const above = new Set<string>();
  for (const { name } of [...listed, ...deltaEntries])
    for (let slash = name.lastIndexOf('/'); slash > 0; slash = name.lastIndexOf('/', slash - 1))
      above.add(name.slice(0, slash));
  const dumpdirs = await readDumpdirs(delta, (d) => above.has(d), signal);
  return mergeListings(listed, deltaEntries, dumpdirs);
}
