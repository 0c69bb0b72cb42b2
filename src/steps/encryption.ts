// Server-side encryption: what the instance's app config says about it, and, when it is on,
// an index of the file cache entries of encrypted files (storage, path, the `encrypted`
// version counter, `size`, `unencrypted_size`), taken inside the maintenance window beside
// the dump. Restoring a single encrypted file needs those values exactly as they were: a
// files:scan of the restored file writes its encrypted size and `encrypted = 0`.
// Both run with the engine's own client and the dump's credentials (secret on stdin); the
// index streams from the client through a line parser into the compressor, one line at a
// time, so millions of rows never sit in memory.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Transform, type TransformCallback } from 'node:stream';
import type { DatabaseEngine, DumpContext } from '../database/index.ts';
import {
  parseEncryptedFileLine,
  type EncryptedFileEntry,
  parseEncryptionSettings,
  type EncryptionState,
} from '../database/engine.ts';
import { BackupError, InterruptedError } from '../errors.ts';
import { guardedCommand, secretLine } from '../host/guarded.ts';
import type { Host } from '../host/host.ts';
import { archiveFile, type Manifest } from '../manifest.ts';
import type { Compression } from '../settings.ts';
import { compressToFile, openArchive, type WrittenFile } from './compress.ts';
import {
  clientFailure,
  queryOnHost,
  SilenceTimer,
  timedOutMessage,
  unexpectedOutput,
  type QueryTimeout,
} from './client-query.ts';

export interface EncryptionOutcome {
  state: EncryptionState;
  /** The index file, when encryption is on. */
  index?: { file: WrittenFile; files: number };
}

/** Reads the encryption settings from `<prefix>appconfig` on the host, in one invocation. */
export async function readEncryptionState(
  host: Host,
  engine: DatabaseEngine,
  context: DumpContext,
  signal?: AbortSignal,
  timeout?: QueryTimeout,
): Promise<EncryptionState> {
  return queryOnHost(host, engine, context, engine.encryptionStateCommand(context), {
    purpose: {
      what: `Reading the encryption settings of the ${engine.type} database`,
      need: `read the ${engine.type} database's encryption settings`,
    },
    parse: parseEncryptionSettings,
    signal,
    timeout,
  });
}

/** Client output lines in, JSON lines out (one per encrypted file), counted. */
class IndexLines extends Transform {
  files = 0;
  /** The first line that could not be read. */
  failure: Error | undefined;
  private partial = '';
  private readonly onData: () => void;

  constructor(onData: () => void) {
    super();
    this.onData = onData;
  }

  private record(line: string): string {
    const entry = parseEncryptedFileLine(line);
    if (!entry) return '';
    this.files++;
    return `${JSON.stringify(entry)}\n`;
  }

  override _transform(chunk: Buffer, _encoding: string, callback: TransformCallback): void {
    this.onData();
    // Only hex digits, digits and tabs: ASCII, so no character spans two chunks.
    const lines = (this.partial + chunk.toString('latin1')).split('\n');
    this.partial = lines.pop() ?? '';
    try {
      callback(null, lines.map((line) => this.record(line)).join(''));
    } catch (error) {
      this.failure ??= error as Error;
      callback(error as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      callback(null, this.record(this.partial));
    } catch (error) {
      this.failure ??= error as Error;
      callback(error as Error);
    }
  }
}

/**
 * Writes the index of the encrypted files' file cache entries to `path`: JSON lines
 * (EncryptedFileEntry), compressed. One client invocation, streamed.
 */
export async function writeEncryptionIndex(
  host: Host,
  engine: DatabaseEngine,
  context: DumpContext,
  options: {
    path: string;
    compression: Compression;
    /** age's recipients file: the archive is encrypted as it is written. */
    encryptTo?: string;
    signal?: AbortSignal;
    timeout?: QueryTimeout;
  },
): Promise<{ file: WrittenFile; files: number }> {
  const purpose = {
    what: `Listing the encrypted files in the ${engine.type} database's file cache`,
    need: `list the encrypted files of the ${engine.type} database`,
  };
  const command = engine.encryptedFilesCommand(context);
  const abort = new AbortController();
  const cancel = () => abort.abort();
  options.signal?.addEventListener('abort', cancel, { once: true });
  const silence = new SilenceTimer(options.timeout, cancel);
  const query = host.stream(guardedCommand(command.argv, command.delivery), {
    input: secretLine(command.secret),
    keepStdinOpen: true,
    signal: abort.signal,
  });
  const lines = new IndexLines(() => silence.touch());
  try {
    const [written, result] = await Promise.allSettled([
      // A line that cannot be read, or a failed write, stops the client (it would wait
      // forever for its output to be read).
      compressToFile(
        query.stdout.pipe(lines),
        options.compression,
        options.path,
        undefined,
        options.encryptTo,
      ).catch((error: unknown) => {
        query.kill();
        throw error;
      }),
      query.done,
    ]);
    silence.stop();
    if (options.signal?.aborted) throw new InterruptedError();
    if (silence.fired) throw new BackupError(timedOutMessage(purpose.what, options.timeout!));
    if (result.status === 'rejected') throw result.reason;
    // A line that could not be read stopped the client: that line is the cause.
    if (lines.failure) throw new BackupError(unexpectedOutput(purpose, command, lines.failure));
    const failure = clientFailure(host, engine, context, command, result.value, purpose);
    if (failure) throw new BackupError(failure);
    if (written.status === 'rejected') throw written.reason;
    return { file: written.value, files: lines.files };
  } catch (error) {
    silence.stop();
    query.kill();
    rmSync(options.path, { force: true });
    throw error;
  } finally {
    options.signal?.removeEventListener('abort', cancel);
  }
}

/**
 * The encryption record of a backup: the settings, and when encryption is on, the index.
 * The index's clock (dump-timeout of silence) starts once the dump beside it has ended.
 */
export async function recordEncryption(
  host: Host,
  engine: DatabaseEngine,
  context: DumpContext,
  options: {
    indexPath: string;
    compression: Compression;
    /** age's recipients file: the archive is encrypted as it is written. */
    encryptTo?: string;
    signal?: AbortSignal;
    timeout?: QueryTimeout;
  },
): Promise<EncryptionOutcome> {
  const state = await readEncryptionState(host, engine, context, options.signal, options.timeout);
  if (!state.enabled) return { state };
  const index = await writeEncryptionIndex(host, engine, context, {
    path: options.indexPath,
    compression: options.compression,
    ...(options.encryptTo ? { encryptTo: options.encryptTo } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.timeout ? { timeout: options.timeout } : {}),
  });
  return { state, index };
}

/** An encrypted file's cache values at backup time, as a restore of single paths uses them. */
export interface EncryptedFile {
  /** The storage's string id, e.g. `home::alice`. */
  storage: string;
  /** The path in the storage, e.g. `files/Documents/report.odt`. */
  path: string;
  encrypted: number;
  size: number;
  unencryptedSize: number;
}

/**
 * The backup's index of encrypted files, read back here (none when the backup has none).
 * Entries whose names were not UTF-8 (recorded lossily) or without a size are left out: no
 * restored file can be matched to them exactly.
 */
export async function readEncryptionIndex(
  directory: string,
  manifest: Manifest,
  /** Which entries to keep (an index can hold millions; they stream through). */
  wanted: (storage: string, path: string) => boolean,
  /** The age identity file, for an encrypted backup. */
  identityFile?: string,
): Promise<EncryptedFile[]> {
  const name = manifest.encryption?.index?.name;
  if (!name) return [];
  const archive = manifest.archives.find((a) => a.name === name);
  if (!archive) throw new BackupError(`The manifest does not list the index ${name}.`);
  const path = join(directory, name);
  const reading = openArchive(archiveFile(directory, archive, identityFile));
  const files: EncryptedFile[] = [];
  let unreadable: string | undefined;
  for await (const line of createInterface({ input: reading.stdout, crlfDelay: Infinity })) {
    if (line.trim() === '') continue;
    let entry: EncryptedFileEntry;
    try {
      entry = JSON.parse(line) as EncryptedFileEntry;
    } catch {
      unreadable ??= line.slice(0, 200);
      continue;
    }
    if (entry.pathHex !== undefined || entry.storageHex !== undefined || entry.size === null)
      continue;
    if (!wanted(entry.storage, entry.path)) continue;
    files.push({
      storage: entry.storage,
      path: entry.path,
      encrypted: entry.encrypted,
      size: entry.size,
      unencryptedSize: entry.unencrypted_size ?? 0,
    });
  }
  const result = await reading.done;
  if (!result.ok || unreadable !== undefined)
    throw new BackupError(
      `Reading ${path} failed: ${unreadable !== undefined ? `a line is not JSON: '${unreadable}'` : result.problem}`,
    );
  return files;
}
