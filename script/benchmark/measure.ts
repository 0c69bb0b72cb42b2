// What the benchmark watches while a variant runs: a process's peak resident memory (VmHWM,
// polled from /proc), and the bytes under a directory on the runner (polled with `du -sb`).
import { execFile, spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';

export interface ProcessResult {
  seconds: number;
  stdout: string;
  stderr: string;
  /** Peak resident memory of the process itself (not its children), MiB. */
  peakRssMiB: number;
}

/** The VmHWM of a process, in KiB; 0 once it has gone. */
function highWaterKiB(pid: number): number {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

/** Polls a started process's VmHWM every 20 ms until it closes; VmHWM only grows, so the last reading counts. */
export function watchMemory(child: ChildProcess): () => number {
  let peakKiB = 0;
  const poll = () => {
    if (child.pid !== undefined) peakKiB = Math.max(peakKiB, highWaterKiB(child.pid));
  };
  const timer = setInterval(poll, 20);
  child.once('exit', () => clearInterval(timer));
  return () => peakKiB / 1024;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Where the process's stdout goes instead of being collected. */
  stdoutFile?: string;
}

/** Runs a command to its end; a non-zero exit throws with its stderr. */
export async function runMeasured(
  argv: string[],
  options: RunOptions = {},
): Promise<ProcessResult> {
  const started = performance.now();
  const out = options.stdoutFile ? openSync(options.stdoutFile, 'w') : undefined;
  const stdio: StdioOptions = ['ignore', out ?? 'pipe', 'pipe'];
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: options.cwd ?? '/',
    env: options.env,
    stdio,
  });
  if (out !== undefined) closeSync(out);
  const peak = watchMemory(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  const seconds = (performance.now() - started) / 1000;
  if (code !== 0)
    throw new Error(`${argv.slice(0, 3).join(' ')} … failed (exit ${code}):\n${stderr || stdout}`);
  return { seconds, stdout, stderr, peakRssMiB: peak() };
}

/**
 * `producer | consumer > file`, every exit status checked (a shell pipeline would report
 * only the last one).
 */
export async function runPipeline(
  producer: string[],
  consumer: string[],
  outFile: string,
): Promise<{ seconds: number }> {
  const started = performance.now();
  const first = spawn(producer[0]!, producer.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = openSync(outFile, 'w');
  const second = spawn(consumer[0]!, consumer.slice(1), { stdio: [first.stdout, out, 'pipe'] });
  closeSync(out);
  // The producer's stdout stays open in this process too (it is the consumer's stdin), so
  // the producer's end is its exit, not its 'close'.
  const ended = (child: ChildProcess, argv: string[], event: 'exit' | 'close') => {
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    return new Promise<void>((resolve, reject) =>
      child.once(event, (code) =>
        code === 0
          ? resolve()
          : reject(new Error(`${argv.slice(0, 3).join(' ')} … failed (exit ${code}):\n${stderr}`)),
      ),
    );
  };
  await Promise.all([ended(first, producer, 'exit'), ended(second, consumer, 'close')]);
  first.stdout.destroy();
  return { seconds: (performance.now() - started) / 1000 };
}

function bytesUnder(dir: string): Promise<number> {
  return new Promise((resolve) =>
    // Files vanish while du walks (the staging copy being removed): its total still counts.
    execFile('nice', ['-n', '10', 'du', '-sb', dir], (_error, stdout) =>
      resolve(Number(/^(\d+)/.exec(stdout)?.[1] ?? 0)),
    ),
  );
}

/**
 * The peak of the bytes under a directory while something runs: `du -sb` (apparent sizes)
 * every 200 ms, one walk at a time, niced. Returns the stop function, which takes one more
 * reading and resolves to the peak.
 */
export function watchDisk(dir: string): () => Promise<number> {
  let peak = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      peak = Math.max(peak, await bytesUnder(dir));
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  return async () => {
    running = false;
    await loop;
    return Math.max(peak, await bytesUnder(dir));
  };
}
