// Scratch directories and processes that must not outlive the test process, whatever
// way it ends: normal teardown, a failed test, SIGINT/SIGTERM, or an uncaught error.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const PREFIX = 'ocb-harness-';

/**
 * Names this test run (set by the global setup, inherited by every test process), so that
 * the end-of-run check judges only what this run made, never another suite's servers on
 * the same machine.
 */
export const RUN_VARIABLE = 'OCB_HARNESS_RUN';
export function runId(): string {
  return process.env[RUN_VARIABLE] || `r${process.pid}`;
}
const cleanups = new Map<number, () => void>();
let nextId = 0;
let handlersInstalled = false;

function runAllCleanups(): void {
  for (const [id, cleanup] of [...cleanups].reverse()) {
    cleanups.delete(id);
    try {
      cleanup();
    } catch {
      // best effort: the process is going away
    }
  }
  killStrays();
}

/**
 * Ends processes that name one of this process's scratch dirs in their command line but
 * are nobody's to stop any more: an ssh ControlMaster whose command was killed by a test
 * and whose test then failed before the post step ran, say. Runs on every way out.
 */
export function killStrays(): number[] {
  const mine = `/${PREFIX}${process.pid}-`;
  const killed: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (!readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(mine)) continue;
      process.kill(Number(name), 'SIGKILL');
      killed.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return killed;
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', runAllCleanups);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      runAllCleanups();
      process.kill(process.pid, signal);
    });
  }
}

/**
 * Registers a synchronous cleanup that runs when the process exits or is interrupted.
 * Returns a function that runs it now (once) and unregisters it.
 */
export function onProcessExit(cleanup: () => void): () => void {
  installHandlers();
  const id = nextId++;
  cleanups.set(id, cleanup);
  return () => {
    if (cleanups.delete(id)) cleanup();
  };
}

/** A fresh directory under the system temp dir, removed when the process ends. */
export function makeScratchDir(label: string): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), `${PREFIX}${process.pid}-${runId()}-${label}-`));
  const remove = onProcessExit(() => rmSync(path, { recursive: true, force: true }));
  return { path, remove };
}

/** True while a process with this pid exists and is not a zombie. */
export function isProcessRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 3, after the parenthesised command name, is the state.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/**
 * Scratch directories of a process (by default this one; '\\d+' for any process of this
 * test run) still present.
 */
export function listScratchDirs(pid: number | string = process.pid): string[] {
  const pattern = new RegExp(`^${PREFIX}${pid}-${runId()}-`);
  return readdirSync(tmpdir())
    .filter((name) => pattern.test(name))
    .map((name) => join(tmpdir(), name));
}

/**
 * Removes scratch directories left by test processes that were killed outright (SIGKILL
 * leaves no chance to clean up); their servers died with them through the parent-death
 * signal.
 */
export function sweepStaleScratchDirs(): string[] {
  const removed: string[] = [];
  for (const name of readdirSync(tmpdir())) {
    const match = new RegExp(`^${PREFIX}(\\d+)-`).exec(name);
    if (!match || isProcessRunning(Number(match[1]))) continue;
    rmSync(join(tmpdir(), name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}
