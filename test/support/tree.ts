// Snapshots a directory tree with all metadata a backup must preserve (content, mode, owner,
// mtime, symlink targets, hard links, xattrs, POSIX ACLs) and diffs two snapshots, so tests
// can prove that a tree restored from an archive equals its source.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Stats } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';

export interface TreeEntry {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  sha256?: string;
  mtime?: number;
  target?: string;
  xattrs: Record<string, string>;
  acl?: string;
  hardLinkGroup?: string;
}

export type TreeSnapshot = Map<string, TreeEntry>;

interface WalkedPath {
  relativePath: string;
  stats: Stats;
}

// Enough parallel lstat/hash calls to keep the disk busy without exhausting file descriptors.
const PARALLELISM = 8;
// Tool output for 20,000 files with ACLs and xattrs runs to megabytes; never truncate it.
const MAX_TOOL_OUTPUT = 1024 * 1024 * 1024;

const byCodeUnit = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

export async function snapshotTree(
  root: string,
  options: { exclude?: (relativePath: string) => boolean } = {},
): Promise<TreeSnapshot> {
  const exclude = options.exclude ?? (() => false);
  // One getfacl and one getfattr for the whole tree, concurrently with the walk.
  const [walked, acls, xattrs] = await Promise.all([
    walkTree(root, exclude),
    readAcls(root),
    readXattrs(root),
  ]);
  const hardLinkGroups = groupHardLinks(walked);
  const entries = await mapLimited(walked, PARALLELISM, async ({ relativePath, stats }) => {
    const entry = await describeEntry(join(root, relativePath), stats);
    entry.xattrs = xattrs.get(relativePath) ?? {};
    const acl = acls.get(relativePath);
    if (acl !== undefined) entry.acl = acl;
    const group = hardLinkGroups.get(relativePath);
    if (group !== undefined) entry.hardLinkGroup = group;
    return [relativePath, entry] as const;
  });
  return new Map(entries);
}

async function walkTree(
  root: string,
  exclude: (relativePath: string) => boolean,
): Promise<WalkedPath[]> {
  const walked: WalkedPath[] = [];
  const pendingDirs = [''];
  for (let dir = pendingDirs.pop(); dir !== undefined; dir = pendingDirs.pop()) {
    const names = (await readdir(join(root, dir))).sort(byCodeUnit);
    const relativePaths = names
      .map((name) => (dir === '' ? name : `${dir}/${name}`))
      .filter((relativePath) => !exclude(relativePath));
    const statted = await mapLimited(relativePaths, PARALLELISM, async (relativePath) => ({
      relativePath,
      stats: await lstat(join(root, relativePath)),
    }));
    for (const item of statted) {
      walked.push(item);
      // An excluded directory was filtered above, so its subtree is never entered.
      if (item.stats.isDirectory()) pendingDirs.push(item.relativePath);
    }
  }
  return walked.sort((a, b) => byCodeUnit(a.relativePath, b.relativePath));
}

async function describeEntry(absolutePath: string, stats: Stats): Promise<TreeEntry> {
  const base = { mode: stats.mode & 0o7777, uid: stats.uid, gid: stats.gid, xattrs: {} };
  if (stats.isFile()) {
    return {
      type: 'file',
      ...base,
      size: stats.size,
      sha256: await hashFile(absolutePath),
      mtime: Math.floor(stats.mtimeMs / 1000),
    };
  }
  if (stats.isSymbolicLink()) {
    return { type: 'symlink', ...base, target: await readlink(absolutePath) };
  }
  return { type: stats.isDirectory() ? 'dir' : 'other', ...base };
}

async function hashFile(absolutePath: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(absolutePath)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

// Maps each path of a hard-linked file to the first (sorted) path of its inode in the tree.
// Only inodes seen at least twice count: a link to outside the tree is not something a backup
// of this tree can restore, and cp/tar would not either.
function groupHardLinks(walked: WalkedPath[]): Map<string, string> {
  const pathsByInode = new Map<string, string[]>();
  for (const { relativePath, stats } of walked) {
    if (!stats.isFile() || stats.nlink < 2) continue;
    const inode = `${stats.dev}:${stats.ino}`;
    pathsByInode.set(inode, [...(pathsByInode.get(inode) ?? []), relativePath]);
  }
  const groups = new Map<string, string>();
  for (const paths of pathsByInode.values()) {
    if (paths.length < 2) continue;
    const first = [...paths].sort(byCodeUnit)[0] ?? '';
    for (const path of paths) groups.set(path, first);
  }
  return groups;
}

async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let index = next++; index < items.length; index = next++) {
      results[index] = await fn(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

// Runs a tool on the whole tree with cwd = root, so `# file:` headers are `./relative`.
// Output stays bytes (latin1 = one char per byte) until names are unescaped, then becomes UTF-8.
function runTool(root: string, command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      {
        cwd: root,
        encoding: 'buffer',
        maxBuffer: MAX_TOOL_OUTPUT,
        env: { ...process.env, LC_ALL: 'C' },
      },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`${command} failed: ${error.message}\n${stderr.toString()}`));
        else resolve(stdout.toString('latin1'));
      },
    );
  });
}

// getfacl writes `\\` for a backslash, getfattr `\134`; both write `\ooo` for control bytes.
function unescapeName(escaped: string): string {
  const bytes = escaped.replace(/\\(\\|[0-7]{3})/g, (_, code: string) =>
    code === '\\' ? '\\' : String.fromCharCode(parseInt(code, 8)),
  );
  return Buffer.from(bytes, 'latin1').toString('utf8');
}

// Splits tool output into per-path blocks of body lines, keyed by relative path.
function parseFileBlocks(output: string): Map<string, string[]> {
  const blocks = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of output.split('\n')) {
    const header = /^# file: (.*)$/.exec(line);
    if (header) {
      const name = unescapeName(header[1] ?? '');
      current = [];
      // The root itself (`.`) is not part of the snapshot; its block is parsed and dropped.
      if (name !== '.') blocks.set(name.replace(/^\.\//, ''), current);
    } else if (line !== '' && current) {
      current.push(line);
    }
  }
  return blocks;
}

// -s skips entries with only base ACLs; -n keeps ids numeric so the passwd db does not matter.
async function readAcls(root: string): Promise<Map<string, string>> {
  const output = await runTool(root, 'getfacl', ['-R', '-P', '-p', '-s', '-n', '--', '.']);
  const acls = new Map<string, string>();
  for (const [relativePath, lines] of parseFileBlocks(output)) {
    const acl = normalizeAcl(lines);
    if (acl !== '') acls.set(relativePath, acl);
  }
  return acls;
}

// Keeps named, mask and default entries. Drops `# owner/group/flags` comments, `#effective`
// annotations (derived from the mask) and the access base entries (covered by `mode`).
function normalizeAcl(lines: string[]): string {
  return lines
    .map((line) => line.replace(/\s*#.*$/, ''))
    .filter((line) => line !== '' && !/^(user|group|other)::/.test(line))
    .join(',');
}

// -h/-P: report xattrs of symlinks themselves and never follow them.
async function readXattrs(root: string): Promise<Map<string, Record<string, string>>> {
  const args = ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', '--', '.'];
  const output = await runTool(root, 'getfattr', args);
  const xattrs = new Map<string, Record<string, string>>();
  for (const [relativePath, lines] of parseFileBlocks(output)) {
    const attributes: Record<string, string> = {};
    for (const line of lines) {
      // getfattr escapes '=' inside names as \075, so the first '=' separates name and value.
      const separator = line.indexOf('=');
      const name = unescapeName(separator < 0 ? line : line.slice(0, separator));
      // ACLs are compared via getfacl in readable form.
      if (name.startsWith('system.posix_acl_')) continue;
      attributes[name] = separator < 0 ? '' : line.slice(separator + 1);
    }
    if (Object.keys(attributes).length > 0) xattrs.set(relativePath, attributes);
  }
  return xattrs;
}

const octal = (mode: number): string => mode.toString(8).padStart(4, '0');

export function diffTrees(expected: TreeSnapshot, actual: TreeSnapshot): string[] {
  const differences: string[] = [];
  for (const [path, want] of expected) {
    const got = actual.get(path);
    if (got === undefined) differences.push(`missing: ${path}`);
    else differences.push(...diffEntries(want, got).map((difference) => `${path}: ${difference}`));
  }
  for (const path of actual.keys()) {
    if (!expected.has(path)) differences.push(`extra: ${path}`);
  }
  return differences.sort(byCodeUnit);
}

function diffEntries(want: TreeEntry, got: TreeEntry): string[] {
  if (want.type !== got.type) return [`type ${want.type} != ${got.type}`];
  const differences: string[] = [];
  if (want.mode !== got.mode) differences.push(`mode ${octal(want.mode)} != ${octal(got.mode)}`);
  if (want.uid !== got.uid || want.gid !== got.gid) {
    differences.push(`owner ${want.uid}:${want.gid} != ${got.uid}:${got.gid}`);
  }
  if (want.size !== got.size) differences.push(`size ${want.size} != ${got.size}`);
  if (want.sha256 !== got.sha256) differences.push('content differs');
  if (want.mtime !== got.mtime) differences.push(`mtime ${want.mtime} != ${got.mtime}`);
  if (want.target !== got.target) {
    differences.push(
      `symlink target ${JSON.stringify(want.target)} != ${JSON.stringify(got.target)}`,
    );
  }
  differences.push(...diffXattrs(want.xattrs, got.xattrs));
  if (want.acl !== got.acl) {
    differences.push(`acl differs (${want.acl ?? 'none'} != ${got.acl ?? 'none'})`);
  }
  if (want.hardLinkGroup !== got.hardLinkGroup) {
    differences.push(`hard link ${want.hardLinkGroup ?? 'none'} != ${got.hardLinkGroup ?? 'none'}`);
  }
  return differences;
}

function diffXattrs(want: Record<string, string>, got: Record<string, string>): string[] {
  const names = new Set([...Object.keys(want), ...Object.keys(got)]);
  return [...names].flatMap((name) => {
    if (!Object.hasOwn(got, name)) return [`xattr ${name} missing`];
    if (!Object.hasOwn(want, name)) return [`xattr ${name} extra`];
    return want[name] === got[name] ? [] : [`xattr ${name} differs`];
  });
}
