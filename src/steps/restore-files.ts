// Files back into place: the archive streams from here into tar on the host, which puts
// each member directory where the manifest (or the user) says, with owners, modes, ACLs,
// xattrs and hard links as archived. One pass over the archive, nothing unpacked here.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { BackupError, LinkError } from '../errors.ts';
import type { Host } from '../host/host.ts';
import { runProcess, stderrTail, type ProcessResult } from '../host/process.ts';
import type { StepProgress } from '../progress.ts';
import type { Compression } from '../settings.ts';
import { tarOnArchive, openArchive, openCompressed, type ArchiveFile } from './compress.ts';
import { TAR_METADATA_FLAGS } from './archive.ts';
import { LAYOUT } from './files.ts';
import { recordingPid } from './previous-state.ts';
import { TarFilter } from './tar-filter.ts';

/**
 * A GNU tar --transform expression that maps member directory `member` (and everything
 * below it) to `target` (absolute), with the extended-regex flag and symlink targets left
 * alone. The replacement escapes what sed gives a meaning to. Pure.
 */
export function memberTransform(member: string, target: string): string {
  if (!/^[a-z]+$/.test(member)) throw new Error(`unexpected archive member '${member}'`);
  if (/[\n\0]/.test(target)) throw new BackupError(`The path '${target}' contains a line break.`);
  const relative = target.replace(/^\/+/, '');
  const replacement = (relative === '' ? '.' : relative).replace(/[\\&,]/g, '\\$&');
  // `member` itself becomes the target; `member/x` becomes `target/x`.
  return `s,^${member}(/|$),${replacement}\\1,xS`;
}

/** tar on the host that extracts the archive from stdin into place. Pure. */
export function tarExtractCommand(
  layout: Record<string, string>,
  compression: Compression,
  incremental = false,
): string[] {
  return [
    'tar',
    '--extract',
    '--file=-',
    compression === 'zstd' ? '--zstd' : '--gzip',
    '--directory=/',
    // A delta archive: its directories' entry lists remove what was deleted since the base.
    ...(incremental ? ['--listed-incremental=/dev/null'] : []),
    ...TAR_METADATA_FLAGS,
    '--same-permissions',
    '--same-owner',
    // A directory that stays (the installation of a package install, /, a mount point)
    // keeps its own owner and mode; only what was moved aside comes back as archived.
    '--no-overwrite-dir',
    ...Object.entries(layout).map(
      ([member, target]) => `--transform=${memberTransform(member, target)}`,
    ),
  ];
}

/** Counts the bytes read from the archive, for progress. */
class Counter extends Transform {
  bytes = 0;
  progress: StepProgress | undefined;
  override _transform(chunk: Buffer, _encoding: string, callback: () => void) {
    this.bytes += chunk.length;
    this.progress?.update({ bytes: this.bytes });
    this.push(chunk);
    callback();
  }
}

export async function extractFiles(options: {
  host: Host;
  /** argv prefix that runs a command as root on the host ([] when the session is root). */
  root: string[];
  archive: ArchiveFile;
  layout: Record<string, string>;
  /** A delta archive (GNU tar level 1), extracted over its base. */
  incremental?: boolean;
  signal: AbortSignal;
  progress?: StepProgress;
  /** Where tar on the host records its pid (see stepPidFile). */
  pidFile?: string;
}): Promise<void> {
  const { host } = options;
  const { archive } = options;
  const tar = tarExtractCommand(options.layout, archive.compression, options.incremental);
  const extracting = host.stream(
    [...options.root, ...(options.pidFile ? recordingPid(options.pidFile, tar) : tar)],
    {
      feedStdin: true,
      signal: options.signal,
    },
  );
  const counter = new Counter();
  counter.progress = options.progress;
  // tar's output is nothing but complaints: drain it so it never blocks.
  extracting.stdout.resume();
  // The compressed archive, decrypted here if it is encrypted: the host decompresses it.
  const source = openCompressed(archive, options.signal);
  const feeding = pipeline(source.stdout, counter, extracting.stdin).catch(
    (error: unknown) => error,
  );
  const [result, read] = await Promise.all([extracting.done, source.done]);
  if (!read.ok && !host.transportFailure(result))
    throw new BackupError(`Reading ${archive.path} failed: ${read.problem}`);
  judgeExtraction(host, result, await feeding, archive.path, 'restoring the files');
}

/** Throws what went wrong with tar extracting on the host (the link, the disk, tar, the feed). */
function judgeExtraction(
  host: Host,
  result: ProcessResult,
  fed: unknown,
  archivePath: string,
  doing: string,
): void {
  const Doing = doing[0]!.toUpperCase() + doing.slice(1);
  const transport = host.transportFailure(result);
  if (transport) throw new LinkError(`${Doing} failed: ${transport}`);
  if (result.exitCode !== 0) {
    const said = stderrTail(result.stderr);
    throw new BackupError(
      /No space left on device|Disk quota exceeded/.test(said)
        ? `No space left on device on ${host.label} while ${doing}: ${said}`
        : `${Doing} failed (tar exit ${result.exitCode} on ${host.label}): ${said || 'no message'}`,
    );
  }
  if (fed instanceof Error) throw new BackupError(`Reading ${archivePath} failed: ${fed.message}`);
}

/**
 * Extracts only the given members (exact names; a directory brings what is below it) of the
 * archive's member directory `member` into `target` on the host. The archive is decompressed
 * and cut down to those members here (TarFilter), so the host receives only what it
 * extracts: one pass over the archive, streaming, with owners, modes, ACLs, xattrs and hard
 * links as archived.
 */
export async function extractMembers(options: {
  host: Host;
  root: string[];
  archive: ArchiveFile;
  member: string;
  target: string;
  members: readonly string[];
  /**
   * A delta archive over the base: its directories' entry lists remove what was deleted.
   * It holds only what changed, so tar takes whatever the filter lets through (some of the
   * members may not be in it at all).
   */
  incremental?: boolean;
  signal: AbortSignal;
}): Promise<{ sentBytes: number }> {
  const { host } = options;
  const tar = [
    'tar',
    '--extract',
    '--file=-',
    '--directory=/',
    ...TAR_METADATA_FLAGS,
    '--same-permissions',
    '--same-owner',
    `--transform=${memberTransform(options.member, options.target)}`,
    ...(options.incremental
      ? ['--listed-incremental=/dev/null']
      : ['--no-wildcards', '--', ...options.members]),
  ];
  const decompress = openArchive(options.archive, options.signal);
  const extracting = host.stream([...options.root, ...tar], {
    feedStdin: true,
    signal: options.signal,
  });
  extracting.stdout.resume();
  const filter = new TarFilter(options.members);
  const counter = new Counter();
  const feeding = pipeline(decompress.stdout, filter, counter, extracting.stdin).catch(
    (error: unknown) => error,
  );
  const [result, unpacked] = await Promise.all([extracting.done, decompress.done]);
  const fed = await feeding;
  if (!unpacked.ok && !host.transportFailure(result))
    throw new BackupError(`Reading ${options.archive.path} failed: ${unpacked.problem}`);
  judgeExtraction(host, result, fed, options.archive.path, 'extracting the paths');
  return { sentBytes: counter.bytes };
}

/**
 * The backup's config files (config.php and *.config.php), read from the archive here
 * into memory through a private directory that is removed at once. They hold the database
 * password: never written anywhere else.
 */
export async function readArchivedConfig(archive: ArchiveFile): Promise<Record<string, string>> {
  const dir = mkdtempSync(join(tmpdir(), 'owncloud-restore-config-'));
  try {
    const only = [
      `--directory=${dir}`,
      '--no-same-owner',
      '--no-same-permissions',
      '--wildcards',
      '--no-wildcards-match-slash',
      '--',
      `${LAYOUT.install}/config/*.php`,
    ];
    // tar reads to the end of the archive (a member may come again later): the file itself
    // when it is plain, the decrypted stream when it is encrypted.
    let extracted: { ok: boolean; problem: string; readFailed: boolean };
    if (archive.age) {
      const tar = tarOnArchive(archive, ['--extract', '--file=-', ...only]);
      tar.stdout.resume();
      extracted = await tar.done;
    } else {
      const result = await runProcess([
        'tar',
        '--extract',
        `--file=${archive.path}`,
        archive.compression === 'zstd' ? '--zstd' : '--gzip',
        ...only,
      ]);
      extracted = {
        ok: result.exitCode === 0,
        problem: stderrTail(result.stderr) || `tar exit ${result.exitCode}`,
        readFailed: false,
      };
    }
    if (extracted.readFailed)
      throw new BackupError(`Reading ${archive.path} failed: ${extracted.problem}`);
    if (!extracted.ok)
      throw new BackupError(
        `The backup's files archive holds no ${LAYOUT.install}/config/config.php (${extracted.problem}): it cannot be restored.`,
      );
    const configDir = join(dir, LAYOUT.install, 'config');
    const files: Record<string, string> = {};
    for (const name of readdirSync(configDir))
      if (name === 'config.php' || name.endsWith('.config.php'))
        files[name] = readFileSync(join(configDir, name), 'utf8');
    if (!files['config.php'])
      throw new BackupError(
        "The backup's files archive holds no config/config.php: it cannot be restored.",
      );
    return files;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
