// Running programs on this machine: the one place that spawns processes. Commands are
// argv arrays; secrets travel on stdin only, so no argv (and no error message built from
// one) ever holds them, and no child inherits a secret-bearing environment variable.
import { constants } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { execa } from 'execa';
import { childEnvironment } from './environment.ts';
import { forgetGroup, killWithUs, selfRegistering } from './reaper.ts';

export interface ProcessOptions {
  /** Written to stdin; stdin is then closed unless keepStdinOpen is set. */
  input?: string;
  /**
   * Keep stdin open after the input until the command ends: a remote watchdog takes
   * stdin's end as "the client went away" and stops the command.
   */
  keepStdinOpen?: boolean;
  /** The caller writes stdin itself (streamProcess's `stdin`), e.g. data into a compressor. */
  feedStdin?: boolean;
  /**
   * stdin is this stream's pipe, handed over as it is (another command's stdout): the bytes
   * go from one command to the next without passing through this process.
   */
  stdinFrom?: Readable;
  /** Aborting kills the command (SIGTERM, then SIGKILL after 3 s). */
  signal?: AbortSignal;
  /**
   * Work that must finish (switching maintenance mode, removing a failed backup): it is
   * not killed when this process dies (an occ killed halfway through rewriting config.php
   * would leave it truncated). Every other command dies with this process, whatever way
   * it ends. No command sees a terminal's Ctrl-C directly: this process handles it.
   */
  shielded?: boolean;
  /** Kill the command when it runs longer than this. */
  timeoutMs?: number;
  /**
   * Told stderr as it arrives, instead of capturing it (the result's stderr is then ''):
   * for a command that reports progress there for hours.
   */
  onStderr?: (text: string) => void;
  /** Set on top of this process's environment (which is passed on without its secrets). */
  env?: Record<string, string>;
  cwd?: string;
}

export interface ProcessResult {
  /** The exit status; 128 + n style values stand for a kill by signal. */
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface StreamingProcess {
  /** The command's output, to be consumed by the caller. */
  readonly stdout: Readable;
  /** Its stdin, when the caller feeds data (e.g. tar into a compressor). */
  readonly stdin: Writable;
  /** Ends when the command exits; stdout holds '' (it was streamed). */
  readonly done: Promise<ProcessResult>;
  kill(): void;
}

// Generous: execa ends a command whose output outgrows its buffer, and rsync can warn
// about every one of thousands of files. Streamed stdout is not buffered at all.
const OUTPUT_LIMIT = 64 * 1024 * 1024;

function signalNumber(signal: string): number {
  return constants.signals[signal as keyof typeof constants.signals] ?? 0;
}

function decode(output: unknown): string {
  if (output === undefined || output === null) return '';
  if (typeof output === 'string') return output;
  if (output instanceof Uint8Array) return Buffer.from(output).toString('utf8');
  return String(output);
}

function spawn(argv: readonly string[], options: ProcessOptions, streamStdout: boolean) {
  if (argv.length === 0) throw new Error('empty command');
  // Unless shielded, a command registers itself with the watcher that kills what is left of
  // ours if we die (see reaper.ts).
  const registered = options.shielded ? undefined : selfRegistering(argv);
  const [file, ...args] = registered?.argv ?? argv;
  const child = execa(file!, args, {
    // fd 3, when there is one, is the watcher's pipe, shared as it is (execa takes a file
    // descriptor there; its types know only the three standard ones as numbers).
    stdio: (registered
      ? [options.stdinFrom ?? 'pipe', 'pipe', 'pipe', registered.fd]
      : [options.stdinFrom ?? 'pipe', 'pipe', 'pipe']) as unknown as ['pipe', 'pipe', 'pipe'],
    buffer: { stdout: !streamStdout, stderr: !options.onStderr },
    maxBuffer: { stdout: OUTPUT_LIMIT, stderr: OUTPUT_LIMIT },
    reject: false,
    stripFinalNewline: false,
    ...(options.signal ? { cancelSignal: options.signal } : {}),
    forceKillAfterDelay: 3000,
    // Its own process group: with its children (rsync forks), killed as one if we die.
    detached: true,
    ...(options.timeoutMs ? { timeout: options.timeoutMs } : {}),
    // execa would add all of process.env to whatever is given here.
    extendEnv: false,
    env: childEnvironment(process.env, options.env),
    ...(options.cwd ? { cwd: options.cwd } : {}),
    encoding: streamStdout ? 'buffer' : 'utf8',
  });
  const onStderr = options.onStderr;
  if (onStderr)
    child.stderr.on('data', (chunk: Buffer | string) =>
      onStderr(typeof chunk === 'string' ? chunk : chunk.toString('utf8')),
    );
  if (registered) {
    const forget = () => forgetGroup(child.pid);
    void child.then(forget, forget);
  } else if (!options.shielded) {
    const forget = killWithUs(child.pid);
    void child.then(forget, forget);
  }
  // The other command's pipe is the child's now: this process lets go of its end, or the
  // other command's stream would wait here forever for a reader.
  options.stdinFrom?.destroy();
  // A command that exits without reading its stdin must not crash us with EPIPE.
  if (!options.stdinFrom) {
    child.stdin.on('error', () => {});
    if (options.input !== undefined) child.stdin.write(options.input);
    if (!options.keepStdinOpen && !options.feedStdin) child.stdin.end();
  }

  const done = child.then((result): ProcessResult => {
    if (options.keepStdinOpen && !options.stdinFrom) child.stdin.end();
    const stdout = streamStdout ? '' : decode(result.stdout);
    return {
      exitCode: result.exitCode ?? 128 + (result.signal ? signalNumber(result.signal) : 0),
      stdout,
      stderr: decode(result.stderr),
    };
  });
  return { child, done };
}

/** Runs a command to its end and captures its (small) output. Never throws for an exit code. */
export async function runProcess(
  argv: readonly string[],
  options: ProcessOptions = {},
): Promise<ProcessResult> {
  return spawn(argv, options, false).done;
}

/** Starts a command whose stdout the caller streams (dumps, archives). */
export function streamProcess(
  argv: readonly string[],
  options: ProcessOptions = {},
): StreamingProcess {
  const { child, done } = spawn(argv, options, true);
  return {
    stdout: child.stdout,
    stdin: child.stdin,
    done,
    kill: () => {
      child.kill('SIGTERM');
    },
  };
}

/** The last lines of a command's stderr, for an error message. */
export function stderrTail(stderr: string, lines = 5): string {
  return stderr
    .trim()
    .split('\n')
    .map((line) => line.trimEnd())
    .filter(Boolean)
    .slice(-lines)
    .join('\n');
}
