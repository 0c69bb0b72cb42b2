// Dumps the database on the host with the engine's own tool and streams the raw dump here,
// where it is checked (exit status, completion trailer, inline errors, inactivity) and
// compressed. Compressing here rather than on the host means no pipe on the host can hide
// the dump's exit status.
import { rmSync } from 'node:fs';
import { Transform, type Readable } from 'node:stream';
import type { DatabaseEngine, DumpTool } from '../database/index.ts';
import { BackupError, InterruptedError } from '../errors.ts';
import { guardedCommand, secretLine } from '../host/guarded.ts';
import type { Host } from '../host/host.ts';
import { stderrTail } from '../host/process.ts';
import type { DatabaseConnection } from '../instance.ts';
import type { StepProgress } from '../progress.ts';
import type { Compression } from '../settings.ts';
import { compressToFile, type WrittenFile } from './compress.ts';

const TAIL_BYTES = 4096;

/** Keeps the dump's last bytes, watches for an inline error marker and for silence. */
class DumpWatch extends Transform {
  tail = Buffer.alloc(0);
  bytes = 0;
  markerSeen = false;
  /** Told the bytes so far, chunk by chunk. */
  progress: StepProgress | undefined;
  private timer: NodeJS.Timeout | undefined;

  private readonly marker: string | undefined;
  private readonly idleMs: number;
  private readonly onIdle: () => void;

  constructor(marker: string | undefined, idleMs: number, onIdle: () => void) {
    super();
    this.marker = marker;
    this.idleMs = idleMs;
    this.onIdle = onIdle;
    this.arm();
  }

  private arm() {
    clearTimeout(this.timer);
    this.timer = setTimeout(this.onIdle, this.idleMs);
  }

  override _transform(chunk: Buffer, _encoding: string, callback: () => void) {
    this.arm();
    this.bytes += chunk.length;
    this.progress?.update({ bytes: this.bytes });
    const window = Buffer.concat([this.tail.subarray(-256), chunk]);
    if (this.marker && window.includes(this.marker)) this.markerSeen = true;
    this.tail = Buffer.concat([this.tail, chunk]).subarray(-TAIL_BYTES);
    this.push(chunk);
    callback();
  }

  override _flush(callback: () => void) {
    clearTimeout(this.timer);
    callback();
  }

  stop() {
    clearTimeout(this.timer);
  }
}

/**
 * The longest a connection check may take. The clients give up connecting after 15 s on
 * their own (connect-timeout, PGCONNECT_TIMEOUT); this bounds anything else that hangs.
 */
const CHECK_TIMEOUT_SECONDS = 60;

/**
 * Before anything changes on the host: a cheap query with the dump's own credentials and
 * secret delivery, so a stopped server, a wrong password or a missing database file stops
 * the run before the bulk copy and before maintenance mode, with the engine's own words.
 */
export async function checkDatabase(options: {
  host: Host;
  engine: DatabaseEngine;
  connection: DatabaseConnection;
  tool: DumpTool;
  owner: string;
}): Promise<void> {
  const { host, engine } = options;
  const context = {
    connection: options.connection,
    tool: options.tool,
    account: host.account,
    owner: options.owner,
  };
  const command = engine.checkCommand(context);
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), CHECK_TIMEOUT_SECONDS * 1000);
  let result;
  try {
    result = await host.run(guardedCommand(command.argv, command.delivery), {
      input: secretLine(command.secret),
      keepStdinOpen: true,
      signal: abort.signal,
    });
  } finally {
    clearTimeout(timer);
  }
  if (abort.signal.aborted)
    throw new BackupError(
      `The ${engine.type} database did not answer a connection check within ${CHECK_TIMEOUT_SECONDS} s: is the database server running and answering?`,
    );
  const transport = host.transportFailure(result);
  if (transport) throw new BackupError(`The database check failed: ${transport}`);
  if (result.exitCode === 127 && /not found/i.test(result.stderr))
    throw new BackupError(
      `${host.label} has no ${command.program} to check the ${engine.type} database before the backup: install it there.`,
    );
  const problem = engine.checkProblem(result, context);
  if (problem)
    throw new BackupError(`The database check failed (nothing was changed yet): ${problem}`);
}

export interface DumpResult extends WrittenFile {
  /** Uncompressed size of the dump. */
  rawBytes: number;
}

/** Where the dump's bytes go as they arrive (a file here, a restic repository). */
export interface DumpSink<T> {
  /** Takes the raw dump as it comes; resolves once all of it is stored. */
  store(source: Readable): Promise<T>;
  /** Removes what was stored of a dump that turned out incomplete or failed. */
  discard(): Promise<void>;
}

/** The dump compressed (and encrypted, with recipients) into a file on this machine. */
export function dumpFile(
  path: string,
  compression: Compression,
  /** age's recipients file: the dump is encrypted as it is written. */
  encryptTo?: string,
): DumpSink<WrittenFile> {
  return {
    store: (source) => compressToFile(source, compression, path, undefined, encryptTo),
    discard: async () => rmSync(path, { force: true }),
  };
}

export async function dumpDatabase<T = WrittenFile>(options: {
  host: Host;
  engine: DatabaseEngine;
  connection: DatabaseConnection;
  tool: DumpTool;
  owner: string;
  into: DumpSink<T>;
  idleTimeoutSeconds: number;
  signal: AbortSignal;
  /** Told the raw bytes dumped so far. */
  progress?: StepProgress;
}): Promise<T & { rawBytes: number }> {
  const { host, engine, connection } = options;
  const command = engine.dumpCommand({
    connection,
    tool: options.tool,
    account: host.account,
    owner: options.owner,
  });
  const abort = new AbortController();
  const cancel = () => abort.abort();
  options.signal.addEventListener('abort', cancel, { once: true });
  let idle = false;
  const dump = host.stream(guardedCommand(command.argv, command.delivery), {
    input: secretLine(command.secret),
    keepStdinOpen: true,
    signal: abort.signal,
  });
  const watch = new DumpWatch(engine.errorMarker, options.idleTimeoutSeconds * 1000, () => {
    idle = true;
    abort.abort();
  });
  watch.progress = options.progress;

  try {
    const [written, result] = await Promise.all([
      options.into.store(dump.stdout.pipe(watch)),
      dump.done,
    ]);
    watch.stop();
    if (options.signal.aborted) throw new InterruptedError();
    if (idle)
      throw new BackupError(
        `The database dump produced no output for ${options.idleTimeoutSeconds} s and was stopped (dump-timeout): is the database server answering?`,
      );
    const transport = host.transportFailure(result);
    if (transport) throw new BackupError(`The database dump failed: ${transport}`);
    if (result.exitCode !== 0) {
      const cause = engine.explainFailure(result.stderr, connection) ?? stderrTail(result.stderr);
      throw new BackupError(
        `The database dump (${options.tool.program}) failed with exit code ${result.exitCode}: ${cause}`,
      );
    }
    const tail = watch.tail.toString('utf8');
    const problem = watch.markerSeen
      ? `${options.tool.program} reported errors inside the dump`
      : engine.checkTail(tail);
    if (problem) {
      const cause = engine.explainFailure(`${result.stderr}\n${tail}`, connection);
      throw new BackupError(
        `The database dump is not complete: ${problem}.${cause ? ` ${cause}` : ''}`,
      );
    }
    return { ...written, rawBytes: watch.bytes };
  } catch (error) {
    watch.stop();
    dump.kill();
    await options.into.discard().catch(() => {});
    throw error;
  } finally {
    options.signal.removeEventListener('abort', cancel);
  }
}
