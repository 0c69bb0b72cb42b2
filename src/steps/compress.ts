// Compressing a stream into a file on the runner, hashing the result on the way: every
// byte is read once, nothing is held in memory beyond stream buffers.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BackupError, InputError } from '../errors.ts';
import { stderrTail, streamProcess } from '../host/process.ts';
import { isNoSpace, noSpaceError } from '../host/runner.ts';
import type { Compression } from '../settings.ts';
import { decryptCommand, encryptCommand, explainAgeFailure } from './age.ts';

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
 * Pipes `source` through the compressor (and, with `encryptTo`, age encrypting to the
 * recipients in that file) into `path`: no plaintext byte reaches the disk. Rejects if any
 * part fails; the caller removes the file then.
 */
export async function compressToFile(
  source: Readable,
  compression: Compression,
  path: string,
  signal?: AbortSignal,
  encryptTo?: string,
): Promise<WrittenFile> {
  const options = signal ? { signal } : {};
  const compressor = streamProcess(COMPRESSORS[compression], { ...options, feedStdin: true });
  // age reads the compressor's output pipe itself: those bytes never pass through here. A
  // failed write below stops age, and then the compressor (EPIPE): the exit codes tell.
  const encryptor = encryptTo
    ? streamProcess(encryptCommand(encryptTo), { ...options, stdinFrom: compressor.stdout })
    : undefined;
  const feeding = pipeline(source, compressor.stdin);
  const writing = writeHashed((encryptor ?? compressor).stdout, path);
  const [fed, written, result, sealed] = await Promise.allSettled([
    feeding,
    writing,
    compressor.done,
    encryptor?.done,
  ]);
  // A failed write (a full disk) kills the compressor with SIGPIPE: the write's cause is the
  // one to report. A stream cut short is only the compressor's failure seen from here.
  if (
    written.status === 'rejected' &&
    (written.reason as NodeJS.ErrnoException | undefined)?.code !== 'ERR_STREAM_PREMATURE_CLOSE'
  )
    throw asError(written.reason);
  if (sealed.status === 'fulfilled' && sealed.value && sealed.value.exitCode !== 0)
    throw new BackupError(
      `age failed (exit ${sealed.value.exitCode}): ${explainAgeFailure(sealed.value.stderr, sealed.value.exitCode)}`,
    );
  if (result.status === 'fulfilled' && result.value.exitCode !== 0)
    throw new BackupError(
      `${compression} failed (exit ${result.value.exitCode}): ${stderrTail(result.value.stderr)}`,
    );
  if (fed.status === 'rejected') throw asError(fed.reason);
  if (result.status === 'rejected') throw asError(result.reason);
  if (sealed.status === 'rejected') throw asError(sealed.reason);
  if (written.status === 'rejected') throw asError(written.reason);
  return written.value;
}

/**
 * A backup's archive as a reader opens it: where it is, how it is compressed, and, when it
 * is encrypted, the identity file that decrypts it (undefined: none was given).
 */
export interface ArchiveFile {
  path: string;
  compression: Compression;
  age?: { identityFile: string | undefined };
}

export interface OpenedArchive {
  /** The plaintext: the decompressed (and decrypted) content. */
  readonly stdout: Readable;
  /** Ends when every stage ended; `problem` says in words what failed, if anything did. */
  readonly done: Promise<{ ok: boolean; problem: string }>;
  kill(): void;
}

/** Refuses to open an encrypted archive without an identity, naming what to give. */
export function missingIdentity(path: string): InputError {
  return new InputError(
    `${path.split('/').pop()} is encrypted (age): give the identity that decrypts it (option --identity-file, environment variable OWNCLOUD_BACKUP_IDENTITY, or the action's input 'identity').`,
  );
}

/**
 * The archive's compressed bytes, decrypted here when it is encrypted: what a tar on the
 * host that decompresses by itself reads (the identity never leaves this machine).
 */
export function openCompressed(file: ArchiveFile, signal?: AbortSignal): OpenedArchive {
  if (!file.age) {
    const stream = createReadStream(file.path);
    return {
      stdout: stream,
      // A read error reaches whoever pipes the stream.
      done: Promise.resolve({ ok: true, problem: '' }),
      kill: () => stream.destroy(),
    };
  }
  const identityFile = file.age.identityFile;
  if (identityFile === undefined) throw missingIdentity(file.path);
  const decrypting = streamProcess(
    decryptCommand(identityFile, file.path),
    signal ? { signal } : {},
  );
  return {
    stdout: decrypting.stdout,
    done: decrypting.done.then((d) =>
      d.exitCode === 0
        ? { ok: true, problem: '' }
        : { ok: false, problem: `decrypting failed: ${explainAgeFailure(d.stderr, d.exitCode)}` },
    ),
    kill: () => decrypting.kill(),
  };
}

/**
 * Opens an archive for reading its content: age (when encrypted) and the decompressor read
 * the file and hand over the plaintext as a stream; nothing is written anywhere.
 */
export function openArchive(file: ArchiveFile, signal?: AbortSignal): OpenedArchive {
  const options = signal ? { signal } : {};
  const decompressor = [compressorProgram(file.compression), '-dc'];
  if (!file.age) {
    const reading = streamProcess([...decompressor, '--', file.path], options);
    return {
      stdout: reading.stdout,
      done: reading.done.then((r) => ({
        ok: r.exitCode === 0,
        problem:
          r.exitCode === 0
            ? ''
            : `decompressing failed (exit ${r.exitCode}): ${stderrTail(r.stderr) || 'no message'}`,
      })),
      kill: () => reading.kill(),
    };
  }
  const identityFile = file.age.identityFile;
  if (identityFile === undefined) throw missingIdentity(file.path);
  const decrypting = streamProcess(decryptCommand(identityFile, file.path), options);
  // The decompressor reads age's output pipe itself.
  const decompressing = streamProcess(decompressor, { ...options, stdinFrom: decrypting.stdout });
  return {
    stdout: decompressing.stdout,
    done: Promise.all([decrypting.done, decompressing.done]).then(([d, u]) =>
      d.exitCode !== 0
        ? { ok: false, problem: `decrypting failed: ${explainAgeFailure(d.stderr, d.exitCode)}` }
        : u.exitCode !== 0
          ? {
              ok: false,
              problem: `decompressing failed (exit ${u.exitCode}): ${stderrTail(u.stderr) || 'no message'}`,
            }
          : { ok: true, problem: '' },
    ),
    kill: () => {
      decrypting.kill();
      decompressing.kill();
    },
  };
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

/**
 * tar reading an archive's content on its stdin, straight from the decompressor's pipe
 * (nothing passes through this process). tar reads to the end of its input
 * (`--ignore-zeros`): stopping at the end-of-archive marker would close the pipe while the
 * zero padding after it is still on its way, killing the decompressor (and age) before they
 * checked their own ends, a complete read that looks like a failed one. `problem` names what
 * failed: the reading (damage, a wrong key) before tar, which then only saw its input end.
 */
export function tarOnArchive(
  file: ArchiveFile,
  tarArgs: readonly string[],
  options: { env?: Record<string, string>; signal?: AbortSignal } = {},
): {
  stdout: Readable;
  /** `readFailed`: the archive could not be read (the command's failure follows from it). */
  done: Promise<{ ok: boolean; problem: string; readFailed: boolean }>;
} {
  const content = openArchive(file, options.signal);
  const argv = ['tar', '--ignore-zeros', ...tarArgs];
  const command = streamProcess(argv, { ...options, stdinFrom: content.stdout });
  return {
    stdout: command.stdout,
    done: Promise.all([command.done, content.done]).then(([result, read]) => {
      const said = `${argv[0]} exit ${result.exitCode}: ${stderrTail(result.stderr) || 'no message'}`;
      if (!read.ok)
        return {
          ok: false,
          problem: result.exitCode === 0 ? read.problem : `${read.problem} (${said})`,
          readFailed: true,
        };
      return result.exitCode === 0
        ? { ok: true, problem: '', readFailed: false }
        : { ok: false, problem: said, readFailed: false };
    }),
  };
}
