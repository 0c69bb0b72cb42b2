// The test's own processes, and only those: the descendants of this test process (the
// command under test, the servers the harness started, and what those servers run, such
// as the dump an sshd session starts). Unrelated programs elsewhere on the machine (another
// suite's sqlite3, a CPU hog) are never looked at, so they cannot change a result.
//
// A process of ours that loses its parent (an orphan re-parented to init after a kill) is
// no longer a descendant; once seen, it stays tracked by pid and start time until it ends,
// so "nothing of ours is left running" can still fail.
import { readdirSync, readFileSync } from 'node:fs';

export interface OwnProcess {
  pid: number;
  argv: string[];
}

interface Stat {
  ppid: number;
  /** Start time in clock ticks since boot: with the pid, it names one process. */
  start: string;
}

function readStat(pid: number): Stat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const state = fields[0];
    if (state === 'Z' || state === 'X') return undefined;
    return { ppid: Number(fields[1]), start: fields[19]! };
  } catch {
    return undefined;
  }
}

function readArgv(pid: number): string[] | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return raw ? raw.replace(/\0$/, '').split('\0') : undefined;
  } catch {
    return undefined;
  }
}

/** Tracks the descendants of one root process (default: this test process). */
export class ProcessTree {
  private readonly root: number;
  /** pid → start time of every descendant seen so far. */
  private readonly seen = new Map<number, string>();

  constructor(root = process.pid) {
    this.root = root;
  }

  /** The root's descendants now, plus earlier ones that still run (orphans included). */
  list(): OwnProcess[] {
    const children = new Map<number, number[]>();
    const stats = new Map<number, Stat>();
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      const pid = Number(name);
      const stat = readStat(pid);
      if (!stat) continue;
      stats.set(pid, stat);
      const siblings = children.get(stat.ppid);
      if (siblings) siblings.push(pid);
      else children.set(stat.ppid, [pid]);
    }
    const found = new Set<number>();
    const queue = [...(children.get(this.root) ?? [])];
    while (queue.length > 0) {
      const pid = queue.pop()!;
      if (found.has(pid)) continue;
      found.add(pid);
      this.seen.set(pid, stats.get(pid)!.start);
      queue.push(...(children.get(pid) ?? []));
    }
    for (const [pid, start] of this.seen) {
      if (found.has(pid)) continue;
      const stat = stats.get(pid);
      if (stat && stat.start === start) found.add(pid);
      else this.seen.delete(pid);
    }
    const result: OwnProcess[] = [];
    for (const pid of found) {
      const argv = readArgv(pid);
      if (argv) result.push({ pid, argv });
    }
    return result;
  }

  /** The environment of one of the listed processes (NUL-separated `NAME=value` pairs). */
  static environ(pid: number): string[] {
    try {
      return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean);
    } catch {
      return [];
    }
  }
}

/** One tracker for the whole test file: orphans seen by any run stay visible to later checks. */
export const ownProcesses = new ProcessTree();
