// `owncloud-backup verify DIR`: proves a backup directory is whole, from its manifest alone:
// every archive has the recorded size and SHA-256, decompresses completely, the dump ends
// with its engine's completion line and has the recorded size, and the files archive
// lists the data directory with ownCloud's marker and ends with tar's end-of-archive
// marker and nothing but zero padding; the index of encrypted files (when there is one) holds
// the recorded number of entries, each a valid one. Reads each archive once, every byte of
// it, and nothing outside the backup directory.
import { createHash } from 'node:crypto';
import {
  closeSync,
  constants,
  createReadStream,
  fstatSync,
  openSync,
  readFileSync,
  statSync,
} from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StringDecoder } from 'node:string_decoder';
import { engineFor } from './database/index.ts';
import { stderrTail, streamProcess, type ProcessResult } from './host/process.ts';
import { archiveFile, MANIFEST_FORMAT, type ArchiveRecord, type Manifest } from './manifest.ts';
import { MANIFEST_NAME } from './naming.ts';
import { decryptCommand, explainAgeFailure } from './steps/age.ts';
import { ListingFacts, runRestoreTest, type RestoreTestRecord } from './steps/restore-test.ts';

export interface Check {
  ok: boolean;
  what: string;
  /**
   * Not run, rather than failed (ok is false too): the content of an encrypted archive
   * when no identity was given. A backup with such checks is intact only as far as checked.
   */
  unchecked?: boolean;
}

/**
 * The backup directory cannot be checked at all (missing, unreadable, no manifest): the
 * check fails, as it does for a damaged backup.
 */
export class UnverifiableError extends Error {
  override name = 'UnverifiableError';
}

const TAR_BLOCK = 512;

function errnoCode(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? String(error);
}

/** An error opening a file, in words: 'permission denied (EACCES)'. */
function openFailure(error: unknown): string {
  const code = errnoCode(error);
  return code === 'EACCES' || code === 'EPERM' ? `permission denied (${code})` : code;
}

function readManifestText(directory: string, doing: 'verify' | 'read' = 'verify'): string {
  let stat;
  try {
    stat = statSync(directory);
  } catch (error) {
    throw new UnverifiableError(
      errnoCode(error) === 'ENOENT'
        ? `Cannot ${doing} ${directory}: no such directory.`
        : `Cannot ${doing} ${directory}: ${openFailure(error)}.`,
    );
  }
  if (!stat.isDirectory())
    throw new UnverifiableError(`Cannot ${doing} ${directory}: it is not a directory.`);
  const path = join(directory, MANIFEST_NAME);
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT')
      throw new UnverifiableError(
        `${directory} has no ${MANIFEST_NAME}: it is not a finished backup.`,
      );
    throw new UnverifiableError(`Cannot read ${path}: ${openFailure(error)}.`);
  }
}

/**
 * Why an archive name from a manifest must not be opened, or undefined for a plain file
 * name in the backup directory (no '/', not '.' or '..', no NUL, no control character).
 */
export function archiveNameProblem(name: string): string | undefined {
  const shown = JSON.stringify(name);
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0'))
    return `damaged: manifest names a file outside the backup: ${shown} (not read)`;
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(name))
    return `damaged: manifest names a file with a control character in its name: ${shown} (not read)`;
  return undefined;
}

/** What in a parsed manifest.json makes it unusable for a check, or undefined. */
export function manifestProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return 'it is not a JSON object';
  const manifest = value as Partial<Manifest>;
  if (!Array.isArray(manifest.archives)) return "it has no 'archives' list";
  const database = manifest.database as Partial<Manifest['database']> | undefined;
  if (typeof database !== 'object' || database === null) return "it has no 'database' record";
  if (!['mysql', 'pgsql', 'sqlite'].includes(String(database.type)))
    return `database.type ${JSON.stringify(database.type)} is not mysql, pgsql or sqlite`;
  if (!Number.isSafeInteger(database.dumpBytes) || database.dumpBytes! < 0)
    return 'database.dumpBytes is not a byte count';
  // Printed in the report: no line breaks that could forge a line of it.
  // eslint-disable-next-line no-control-regex
  if (typeof database.dumpTool !== 'string' || /[\x00-\x1f\x7f]/.test(database.dumpTool))
    return 'database.dumpTool is not a program name';
  for (const [index, entry] of (manifest.archives as unknown[]).entries()) {
    const archive = entry as Partial<ArchiveRecord> | null;
    const at = `archives[${index}]`;
    if (typeof archive !== 'object' || archive === null) return `${at} is not an object`;
    if (typeof archive.name !== 'string') return `${at}.name is not a string`;
    if (!['files', 'files-delta', 'database', 'encryption-index'].includes(String(archive.role)))
      return `${at}.role is not 'files', 'files-delta', 'database' or 'encryption-index'`;
    if (archive.compression !== 'zstd' && archive.compression !== 'gzip')
      return `${at}.compression is not 'zstd' or 'gzip'`;
    if (!Number.isSafeInteger(archive.size) || archive.size! < 0)
      return `${at}.size is not a byte count`;
    if (typeof archive.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(archive.sha256))
      return `${at}.sha256 is not a SHA-256`;
    if (archive.encryption !== undefined && archive.encryption !== 'age')
      return `${at}.encryption is not 'age'`;
  }
  // Either every archive is encrypted, to the recipients recorded, or none is.
  const encrypted = manifest.archives.filter(
    (a) => (a as ArchiveRecord).encryption === 'age',
  ).length;
  const age = manifest.age as Manifest['age'] | undefined;
  if (age !== undefined && (!Array.isArray(age.recipients) || age.recipients.length === 0))
    return 'age.recipients is not a list of recipients';
  if (encrypted > 0 && encrypted < manifest.archives.length)
    return `${encrypted} of ${manifest.archives.length} archives are encrypted, not all`;
  if (encrypted > 0 !== (age !== undefined))
    return age
      ? 'age is recorded, but no archive is encrypted'
      : 'archives are encrypted, but age is not recorded';
  for (const role of ['files', 'database'] as const) {
    const count = manifest.archives.filter((a) => (a as ArchiveRecord).role === role).length;
    if (count !== 1) return `it lists ${count} ${role} archives, not one`;
  }
  const deltas = manifest.archives.filter(
    (a) => (a as ArchiveRecord).role === 'files-delta',
  ).length;
  if (deltas > 1) return `it lists ${deltas} files-delta archives, not one at most`;
  const indexes = manifest.archives.filter(
    (a) => (a as ArchiveRecord).role === 'encryption-index',
  ).length;
  const index = (manifest.encryption as Manifest['encryption'] | undefined)?.index;
  if (indexes > 1) return `it lists ${indexes} encryption-index archives, not one at most`;
  if (index !== undefined && (!Number.isSafeInteger(index.files) || index.files < 0))
    return 'encryption.index.files is not a count';
  if ((index !== undefined) !== (indexes === 1))
    return index
      ? 'encryption.index is recorded, but no encryption-index archive is listed'
      : 'an encryption-index archive is listed, but encryption.index is not recorded';
  return undefined;
}

/**
 * Passes data on to a command's stdin for as long as the command reads it, and lets the
 * caller observe every chunk, also those after the command stopped reading: tar stops at
 * its end-of-archive marker, and what follows must still be read and checked.
 */
class ForwardWhileRead extends Writable {
  private reading = true;
  private resume: (() => void) | undefined;
  private readonly target: Writable;
  private readonly observe: (chunk: Buffer) => void;

  constructor(target: Writable, observe: (chunk: Buffer) => void) {
    super();
    this.target = target;
    this.observe = observe;
    const stopped = () => {
      this.reading = false;
      this.resume?.();
    };
    target.once('error', stopped);
    target.once('close', stopped);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.observe(chunk);
    if (!this.reading || this.target.write(chunk)) {
      callback();
      return;
    }
    const resume = () => {
      this.target.off('drain', resume);
      this.resume = undefined;
      callback();
    };
    this.resume = resume;
    this.target.once('drain', resume);
  }

  override _final(callback: () => void): void {
    if (this.reading) this.target.end();
    callback();
  }
}

/** Where the last non-zero byte of a stream is, seen chunk by chunk (-1: none yet). */
export class ZeroTail {
  bytes = 0;
  lastNonZero = -1;
  private zeros = Buffer.alloc(0);

  add(chunk: Buffer): void {
    if (this.zeros.length < chunk.length) this.zeros = Buffer.alloc(chunk.length);
    if (!chunk.equals(this.zeros.subarray(0, chunk.length))) {
      let index = chunk.length - 1;
      while (chunk[index] === 0) index--;
      this.lastNonZero = this.bytes + index;
    }
    this.bytes += chunk.length;
  }
}

/**
 * The block number at which tar found the end of the archive, from the last line of
 * `tar --list --block-number`: `block N: ** Block of NULs **` (the end-of-archive marker)
 * or `block N: ** End of File **` (the data ended without one).
 */
export function tarEndBlock(lastLine: string): number | undefined {
  const match = /^block (\d+): \*\* (?:Block of NULs|End of File) \*\*$/.exec(lastLine);
  return match ? Number(match[1]) : undefined;
}

/**
 * What is wrong with the end of a tar stream, or undefined: tar writes two zero blocks at
 * its end-of-archive marker, then zero padding to the end of its record, nothing else.
 */
export function tarEndProblem(end: {
  endBlock: number | undefined;
  bytes: number;
  lastNonZero: number;
}): string | undefined {
  if (end.endBlock === undefined) return 'tar did not report where the archive ends';
  const start = end.endBlock * TAR_BLOCK;
  if (end.lastNonZero >= start)
    return `${end.bytes - start} bytes after tar's end-of-archive marker (at byte ${start}) are not the zero padding tar writes`;
  if (end.bytes < start + 2 * TAR_BLOCK)
    return `it has no end-of-archive marker: the archive was cut short after ${end.bytes} bytes`;
  if (end.bytes % TAR_BLOCK !== 0)
    return `it ends in a partial ${TAR_BLOCK}-byte block (${end.bytes} bytes)`;
  return undefined;
}

interface DecompressionFailure {
  /** The compressed data ends early (rather than holding damaged data). */
  cutShort: boolean;
  /** What went wrong, in words. */
  text: string;
}

/** Why the decompressor failed, in words: cut short, or damaged. */
function decompressionFailure(
  result: PromiseSettledResult<ProcessResult>,
  readError: string | undefined,
): DecompressionFailure {
  if (readError) return { cutShort: false, text: `the archive could not be read (${readError})` };
  if (result.status === 'rejected')
    return { cutShort: false, text: 'the decompressor could not be run' };
  const { exitCode, stderr } = result.value;
  const said = stderrTail(stderr, 1).replace(/\s+/g, ' ').trim();
  const cutShort = /premature end|unexpected end of file|truncated/i.test(stderr);
  return {
    cutShort,
    text: `the compressed data is ${cutShort ? 'cut short' : 'damaged'} (exit ${exitCode}${said ? `: ${said}` : ''})`,
  };
}

interface ArchiveRead {
  sha256: string;
  /** Undefined when the archive decompressed to its very end with exit 0. */
  failure: DecompressionFailure | undefined;
}

/**
 * Reads the whole archive, hashing every byte, through the decompressor to the end of its
 * output, which goes to `sink` (which must read to the end, too).
 */
async function readArchive(
  fd: number,
  archive: ArchiveRecord,
  sink: Writable,
  identityFile: string | undefined,
) {
  const hash = createHash('sha256');
  // An encrypted archive passes through age first (the decompressor reads age's output pipe
  // itself); the hash is the file's: the ciphertext.
  const decrypt =
    archive.encryption === 'age' && identityFile !== undefined
      ? streamProcess(decryptCommand(identityFile), { feedStdin: true })
      : undefined;
  const decompress = streamProcess(
    archive.compression === 'zstd' ? ['zstd', '-dc', '-q'] : ['gzip', '-dc'],
    decrypt ? { stdinFrom: decrypt.stdout } : { feedStdin: true },
  );
  // Every byte is hashed, even after a damaged archive made the decompressor give up.
  const feed = new ForwardWhileRead((decrypt ?? decompress).stdin, (chunk) => hash.update(chunk));
  // A read that fails half-way (EIO) leaves the decompressor waiting for more: end it.
  const stopOnFailure = (error: unknown) => {
    decrypt?.kill();
    decompress.kill();
    throw error;
  };
  // age stops at the first damaged chunk: the decompressor then sees its input end.
  const [read, drained, result, decrypted] = await Promise.allSettled([
    pipeline(createReadStream('', { fd }), feed).catch(stopOnFailure),
    pipeline(decompress.stdout, sink).catch(stopOnFailure),
    decompress.done,
    decrypt?.done,
  ]);
  const readError =
    read.status === 'rejected'
      ? errnoCode(read.reason)
      : drained.status === 'rejected'
        ? errnoCode(drained.reason)
        : undefined;
  const ageFailed =
    decrypt !== undefined &&
    (decrypted.status === 'rejected' || (decrypted.value?.exitCode ?? 0) !== 0);
  const ok =
    !readError && !ageFailed && result.status === 'fulfilled' && result.value.exitCode === 0;
  return {
    sha256: hash.digest('hex'),
    failure: ok
      ? undefined
      : !readError && ageFailed
        ? decryptionFailure(decrypted)
        : decompressionFailure(result, readError),
  } satisfies ArchiveRead;
}

/** Why age failed, in words: cut short, damaged, or the wrong identity. */
function decryptionFailure(
  result: PromiseSettledResult<ProcessResult | undefined>,
): DecompressionFailure {
  if (result.status === 'rejected' || !result.value)
    return { cutShort: false, text: 'age could not be run' };
  const text = explainAgeFailure(result.value.stderr, result.value.exitCode);
  return { cutShort: /cut short/.test(text), text: `decryption failed: ${text}` };
}

/** Hashes the whole file, for an encrypted archive whose content cannot be read here. */
async function hashOnly(fd: number): Promise<ArchiveRead> {
  const hash = createHash('sha256');
  try {
    await pipeline(
      createReadStream('', { fd }),
      new Writable({
        write(chunk: Buffer, _encoding, callback) {
          hash.update(chunk);
          callback();
        },
      }),
    );
  } catch (error) {
    return {
      sha256: hash.digest('hex'),
      failure: { cutShort: false, text: `the archive could not be read (${errnoCode(error)})` },
    };
  }
  return { sha256: hash.digest('hex'), failure: undefined };
}

async function checkDump(
  fd: number,
  archive: ArchiveRecord,
  manifest: Manifest,
  identityFile: string | undefined,
): Promise<{ read: ArchiveRead; checks: Check[] }> {
  let bytes = 0;
  let tail = Buffer.alloc(0);
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      tail = Buffer.concat([tail, chunk]).subarray(-4096);
      callback();
    },
  });
  const read = await readArchive(fd, archive, sink, identityFile);
  const expected = manifest.database.dumpBytes;
  if (read.failure)
    return {
      read,
      checks: [
        {
          ok: false,
          what: `${archive.name}: the dump is ${read.failure.cutShort ? 'cut short' : 'damaged'}: decompression stopped after ${bytes} bytes of SQL (manifest: ${expected})`,
        },
      ],
    };
  const problem = engineFor(manifest.database.type).checkTail(tail.toString('utf8'));
  return {
    read,
    checks: [
      {
        ok: problem === undefined,
        what: `${archive.name}: ${problem ?? `ends with the ${manifest.database.dumpTool} completion line`}`,
      },
      {
        ok: bytes === expected,
        what: `${archive.name}: ${bytes} bytes of SQL (manifest: ${expected})`,
      },
    ],
  };
}

async function checkFiles(
  fd: number,
  archive: ArchiveRecord,
  identityFile: string | undefined,
  facts?: ListingFacts,
): Promise<{ read: ArchiveRead; checks: Check[] }> {
  const stream = new ZeroTail();
  const tar = streamProcess(['tar', '--list', '--block-number', '--file=-'], { feedStdin: true });
  const [read, listing, result] = await Promise.all([
    readArchive(
      fd,
      archive,
      new ForwardWhileRead(tar.stdin, (chunk) => stream.add(chunk)),
      identityFile,
    ),
    scanListing(tar.stdout, facts),
    tar.done,
  ]);
  const { entries, marker, lastLine } = listing;
  let listed: Check;
  if (result.exitCode !== 0) {
    // tar's first complaint names the cause ('Unexpected EOF in archive'); the last is 'exiting now'.
    const said = (stderrTail(result.stderr, 1000).split('\n')[0] ?? '').replace(/\s+/g, ' ').trim();
    listed = {
      ok: false,
      what: `${archive.name}: tar stops after ${entries} entries (exit ${result.exitCode}${said ? `: ${said}` : ''})`,
    };
  } else {
    const problem = read.failure
      ? 'decompression failed, so its end is unproven'
      : tarEndProblem({
          endBlock: tarEndBlock(lastLine),
          bytes: stream.bytes,
          lastNonZero: stream.lastNonZero,
        });
    listed = {
      ok: problem === undefined,
      what: `${archive.name}: tar lists ${entries} entries${problem ? `, but ${problem}` : ', then its end-of-archive marker and zero padding'}`,
    };
  }
  return {
    read,
    checks: [
      listed,
      // The marker is in the base archive; the delta holds only what changed.
      ...(archive.role === 'files'
        ? [
            {
              ok: marker,
              what: `${archive.name}: ${marker ? 'holds' : 'lacks'} the data directory's .ocdata/.ncdata marker`,
            },
          ]
        : []),
    ],
  };
}

/** Why an index line is not an encrypted file's entry, or undefined. */
export function indexLineProblem(line: string): string | undefined {
  let entry: unknown;
  try {
    entry = JSON.parse(line);
  } catch {
    return 'it is not JSON';
  }
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry))
    return 'it is not a JSON object';
  const e = entry as Record<string, unknown>;
  for (const key of ['storage', 'path'])
    if (typeof e[key] !== 'string') return `its ${key} is not a string`;
  for (const key of ['fileid', 'encrypted'])
    if (!Number.isSafeInteger(e[key])) return `its ${key} is not a whole number`;
  for (const key of ['size', 'unencrypted_size'])
    if (e[key] !== null && !Number.isSafeInteger(e[key]))
      return `its ${key} is not a whole number or null`;
  if (e.encrypted === 0) return 'its encrypted is 0 (the index lists encrypted files only)';
  return undefined;
}

async function checkEncryptionIndex(
  fd: number,
  archive: ArchiveRecord,
  manifest: Manifest,
  identityFile: string | undefined,
): Promise<{ read: ArchiveRead; checks: Check[] }> {
  let entries = 0;
  let problem: string | undefined;
  let partial = '';
  const decoder = new StringDecoder('utf8');
  const take = (line: string) => {
    entries++;
    if (problem) return;
    const wrong = indexLineProblem(line);
    if (wrong) problem = `line ${entries} is not an encrypted file's entry: ${wrong}`;
  };
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      const lines = (partial + decoder.write(chunk)).split('\n');
      partial = lines.pop() ?? '';
      lines.forEach(take);
      callback();
    },
    final(callback) {
      partial += decoder.end();
      if (partial !== '') take(partial);
      callback();
    },
  });
  const read = await readArchive(fd, archive, sink, identityFile);
  const expected = manifest.encryption?.index?.files;
  if (read.failure)
    return {
      read,
      checks: [
        {
          ok: false,
          what: `${archive.name}: the index is ${read.failure.cutShort ? 'cut short' : 'damaged'}: decompression stopped after ${entries} entries (manifest: ${expected})`,
        },
      ],
    };
  return {
    read,
    checks: [
      {
        ok: problem === undefined,
        what: `${archive.name}: ${problem ?? "every line is an encrypted file's file cache entry"}`,
      },
      {
        ok: entries === expected,
        what: `${archive.name}: ${entries} encrypted files (manifest: ${expected})`,
      },
    ],
  };
}

async function checkArchive(
  directory: string,
  archive: ArchiveRecord,
  manifest: Manifest,
  identityFile: string | undefined,
  facts?: ListingFacts,
) {
  const nameProblem = archiveNameProblem(archive.name);
  if (nameProblem) return [{ ok: false, what: nameProblem }];
  // No symlink is followed (O_NOFOLLOW), and opening a FIFO does not wait for a writer.
  let fd: number;
  try {
    fd = openSync(
      join(directory, archive.name),
      constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
    );
  } catch (error) {
    const code = errnoCode(error);
    const what =
      code === 'ENOENT'
        ? `${archive.name} is missing`
        : code === 'ELOOP'
          ? `${archive.name} is a symbolic link (not read)`
          : `${archive.name} cannot be read: ${openFailure(error)}`;
    return [{ ok: false, what }];
  }
  const stat = fstatSync(fd);
  if (!stat.isFile()) {
    closeSync(fd);
    return [{ ok: false, what: `${archive.name} is not a regular file (not read)` }];
  }
  const checks: Check[] = [
    {
      ok: stat.size === archive.size,
      what: `${archive.name}: size ${stat.size} (manifest: ${archive.size})`,
    },
  ];
  // Without the identity, an encrypted archive's bytes are checked, its content is not.
  if (archive.encryption === 'age' && identityFile === undefined) {
    const read = await hashOnly(fd);
    checks.push(
      {
        ok: read.sha256 === archive.sha256 && read.failure === undefined,
        what: `${archive.name}: sha256 ${read.failure ? `unknown: ${read.failure.text}` : read.sha256 === archive.sha256 ? 'matches' : `is ${read.sha256}, manifest says ${archive.sha256}`}`,
      },
      {
        ok: false,
        unchecked: true,
        what: `${archive.name}: content not checked: it is encrypted (age) and no identity was given`,
      },
    );
    return checks;
  }
  // The read stream closes the file when it ends.
  const { read, checks: content } =
    archive.role === 'database'
      ? await checkDump(fd, archive, manifest, identityFile)
      : archive.role === 'encryption-index'
        ? await checkEncryptionIndex(fd, archive, manifest, identityFile)
        : await checkFiles(fd, archive, identityFile, archive.role === 'files' ? facts : undefined);
  checks.push(
    {
      ok: read.sha256 === archive.sha256,
      what: `${archive.name}: sha256 ${read.sha256 === archive.sha256 ? 'matches' : `is ${read.sha256}, manifest says ${archive.sha256}`}`,
    },
    {
      ok: read.failure === undefined,
      what: `${archive.name}: ${archive.encryption === 'age' ? 'decrypts and decompresses' : 'decompresses'} ${read.failure === undefined ? 'completely' : `with errors: ${read.failure.text}`}`,
    },
    ...content,
  );
  return checks;
}

/**
 * A backup's manifest, checked for its form but without reading the archives (for what a
 * backup holds): missing, not JSON, or malformed is an UnverifiableError naming the file.
 */
export function readManifest(directory: string): Manifest {
  const path = join(directory, MANIFEST_NAME);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readManifestText(directory, 'read'));
  } catch (error) {
    if (error instanceof UnverifiableError) throw error;
    throw new UnverifiableError(`${path} is not valid JSON: the backup is damaged.`);
  }
  const problem = manifestProblem(parsed);
  if (problem) throw new UnverifiableError(`${path}: damaged: ${problem}`);
  return parsed as Manifest;
}

/**
 * Checks a backup directory. Throws UnverifiableError when there is nothing to check (no
 * such directory, no manifest); a manifest that cannot be trusted is a failed check.
 * `facts`, when given, collects from the files archive's listing what the restore test
 * checks (the same single pass).
 */
export async function verifyBackup(
  directory: string,
  facts?: ListingFacts,
  /** The age identity file for an encrypted backup (without it, only its bytes are checked). */
  identityFile?: string,
): Promise<Check[]> {
  const text = readManifestText(directory);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return [{ ok: false, what: `${MANIFEST_NAME}: damaged: it is not valid JSON` }];
  }
  if ((parsed as Partial<Manifest> | null)?.format !== MANIFEST_FORMAT)
    throw new UnverifiableError(
      `${join(directory, MANIFEST_NAME)} is not an ${MANIFEST_FORMAT} manifest.`,
    );
  const problem = manifestProblem(parsed);
  if (problem) return [{ ok: false, what: `${MANIFEST_NAME}: damaged: ${problem}` }];
  const manifest = parsed as Manifest;
  const checks: Check[] = [];
  for (const archive of manifest.archives)
    checks.push(...(await checkArchive(directory, archive, manifest, identityFile, facts)));
  return checks;
}

/**
 * Counts tar's `--block-number` listing line by line (never holding it whole), looks for
 * the marker, and keeps the last line (where tar says the archive ends).
 */
async function scanListing(
  stream: NodeJS.ReadableStream,
  facts?: ListingFacts,
): Promise<{ entries: number; marker: boolean; lastLine: string }> {
  let entries = 0;
  let marker = false;
  let partial = '';
  let lastLine = '';
  const decoder = new StringDecoder('utf8');
  const take = (line: string) => {
    lastLine = line;
    if (tarEndBlock(line) !== undefined) return;
    entries++;
    const name = line.replace(/^block \d+: /, '');
    if (name === 'data/.ocdata' || name === 'data/.ncdata') marker = true;
    facts?.add(name);
  };
  for await (const chunk of stream) {
    const lines = (partial + decoder.write(chunk as Buffer)).split('\n');
    partial = lines.pop() ?? '';
    lines.forEach(take);
  }
  partial += decoder.end();
  if (partial !== '') take(partial);
  return { entries, marker, lastLine };
}

/**
 * `verify --restore-test`: the checks above, then, when they all pass, the restore test
 * on the backup, with what the one pass over the files archive collected.
 */
export async function verifyAndTestRestore(
  directory: string,
  options: { signal: AbortSignal; env?: NodeJS.ProcessEnv; identityFile?: string },
): Promise<{ checks: Check[]; restoreTest?: RestoreTestRecord }> {
  const facts = new ListingFacts();
  const checks = await verifyBackup(directory, facts, options.identityFile);
  if (checks.some((c) => !c.ok)) return { checks };
  const manifest = JSON.parse(readManifestText(directory)) as Manifest;
  const dump = manifest.archives.find((a) => a.role === 'database')!;
  const files = manifest.archives.find((a) => a.role === 'files')!;
  const restoreTest = await runRestoreTest(
    engineFor(manifest.database.type),
    {
      dump: archiveFile(directory, dump, options.identityFile),
      filesArchive: archiveFile(directory, files, options.identityFile),
      database: manifest.database,
    },
    { signal: options.signal, facts, ...(options.env ? { env: options.env } : {}) },
  );
  return { checks, restoreTest };
}
