// Compressing a stream into a file on the runner, hashing the result on the way: every
// byte is read once, nothing is held in memory beyond stream buffers.
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BackupError } from '../errors.ts';
import { stderrTail, streamProcess } from '../host/process.ts';
import { isNoSpace, noSpaceError } from '../host/runner.ts';
import type { Compression } from '../settings.ts';

export interface WrittenFile {
  path: string;
  size: number;
  sha256: string;
}

const COMPRESSORS: Record<Compression, string[]> = {
  // Multi-threaded; level 3 is zstd's default balance of speed and size.
  zstd: ['zstd', '-T0', '-3', '-q', '-c'],
  gzip: ['gzip', '-6', '-c', '-n'],
};

/** The program that compresses with this method (for preflight checks). */
export function compressorProgram(compression: Compression): string {
  return COMPRESSORS[compression][0]!;
}

/** The compressor as one command string, for tar's --use-compress-program (split on spaces). */
export function compressorCommand(compression: Compression): string {
  return COMPRESSORS[compression].join(' ');
}

/** Counts and hashes what passes through. */
class Digest extends Transform {
  readonly hash = createHash('sha256');
  size = 0;
  override _transform(chunk: Buffer, _encoding: string, callback: () => void) {
    this.hash.update(chunk);
    this.size += chunk.length;
    this.push(chunk);
    callback();
  }
}

/**
 * Pipes `source` through the compressor into `path`. Rejects if any part fails; the
 * caller removes the file then.
 */
export async function compressToFile(
  source: Readable,
  compression: Compression,
  path: string,
  signal?: AbortSignal,
): Promise<WrittenFile> {
  const compressor = streamProcess(COMPRESSORS[compression], {
    feedStdin: true,
    ...(signal ? { signal } : {}),
  });
  const feeding = pipeline(source, compressor.stdin);
  const writing = writeHashed(compressor.stdout, path);
  const [fed, written, result] = await Promise.allSettled([feeding, writing, compressor.done]);
  // A failed write (a full disk) kills the compressor with SIGPIPE: the write's cause is the
  // one to report. A stream cut short is only the compressor's failure seen from here.
  if (
    written.status === 'rejected' &&
    (written.reason as NodeJS.ErrnoException | undefined)?.code !== 'ERR_STREAM_PREMATURE_CLOSE'
  )
    throw asError(written.reason);
  if (result.status === 'fulfilled' && result.value.exitCode !== 0)
    throw new BackupError(
      `${compression} failed (exit ${result.value.exitCode}): ${stderrTail(result.value.stderr)}`,
    );
  if (fed.status === 'rejected') throw asError(fed.reason);
  if (result.status === 'rejected') throw asError(result.reason);
  if (written.status === 'rejected') throw asError(written.reason);
  return written.value;
}

/** Writes an (already compressed) stream to `path`, counting and hashing it on the way. */
export async function writeHashed(source: Readable, path: string): Promise<WrittenFile> {
  const digest = new Digest();
  try {
    await pipeline(source, digest, createWriteStream(path, { mode: 0o600 }));
  } catch (error) {
    throw isNoSpace(error) ? noSpaceError(path) : error;
  }
  return { path, size: digest.size, sha256: digest.hash.digest('hex') };
}

function asError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}
