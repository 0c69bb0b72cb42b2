import { execFileSync } from 'node:child_process';
import { isProcessRunning, onProcessExit, runId } from './scratch.ts';
import { requireTool } from './tools.ts';

/**
 * A separate "ownCloud host": a network namespace joined to this one by a veth pair.
 * It shares the file system (so instances built here are visible there) but not the
 * network, so its link can be cut or black-holed to test what a dead connection does.
 */
export interface NetworkHost {
  readonly name: string;
  /** The namespace's own address, where its servers listen. */
  readonly hostAddress: string;
  /** This side's address on the link. */
  readonly runnerAddress: string;
  /** argv prefix that runs a command inside the namespace. */
  readonly execPrefix: string[];
  /** Takes the link down (the host vanishes from the network). */
  cut(): void;
  /** Brings the link back. */
  restore(): void;
  /** Drops every packet to the host silently (no reset, no unreachable). */
  blackhole(): void;
  stop(): void;
}

let counter = 0;
const PREFIX = 'ocb-harness-';

/**
 * Removes namespaces (and with them their veth pairs) of test processes that were killed
 * outright, and returns the names of those that belonged to this test run.
 */
export function sweepStaleNetworkHosts(): string[] {
  const ip = requireTool('ip');
  const removed: string[] = [];
  const names = execFileSync(ip, ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '');
  for (const name of names) {
    const match = new RegExp(`^${PREFIX}(\\d+)-`).exec(name);
    if (!match || isProcessRunning(Number(match[1]))) continue;
    try {
      for (const pid of execFileSync(ip, ['netns', 'pids', name], { encoding: 'utf8' })
        .split('\n')
        .filter(Boolean))
        process.kill(Number(pid), 'SIGKILL');
    } catch {
      // no processes left
    }
    execFileSync(ip, ['netns', 'del', name]);
    if (name.startsWith(`${PREFIX}${match[1]}-${runId()}-`)) removed.push(name);
  }
  return removed;
}

export function createNetworkHost(): NetworkHost {
  const ip = requireTool('ip');
  const run = (...args: string[]) =>
    execFileSync(ip, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  // Unique per process and call; interface names are limited to 15 characters.
  const id = `${process.pid % 100000}x${counter++}`;
  const name = `${PREFIX}${process.pid}-${runId()}-${counter}`;
  const outside = `ocb${id}o`;
  const inside = `ocb${id}i`;
  const subnet = ((process.pid * 7 + counter * 13) % 250) + 1;
  const runnerAddress = `10.231.${subnet}.1`;
  const hostAddress = `10.231.${subnet}.2`;

  const remove = onProcessExit(() => {
    try {
      const pids = execFileSync(ip, ['netns', 'pids', name], { encoding: 'utf8' })
        .split('\n')
        .filter(Boolean);
      for (const pid of pids) process.kill(Number(pid), 'SIGKILL');
    } catch {
      // namespace already gone
    }
    try {
      run('route', 'del', 'blackhole', `${hostAddress}/32`);
    } catch {
      // never black-holed
    }
    try {
      run('link', 'del', outside);
    } catch {
      // deleted with the namespace
    }
    try {
      run('netns', 'del', name);
    } catch {
      // never created
    }
  });

  try {
    run('netns', 'add', name);
    run('link', 'add', outside, 'type', 'veth', 'peer', 'name', inside);
    run('link', 'set', inside, 'netns', name);
    run('addr', 'add', `${runnerAddress}/24`, 'dev', outside);
    run('link', 'set', outside, 'up');
    run('-n', name, 'addr', 'add', `${hostAddress}/24`, 'dev', inside);
    run('-n', name, 'link', 'set', inside, 'up');
    run('-n', name, 'link', 'set', 'lo', 'up');
  } catch (error) {
    remove();
    const detail = (error as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`could not create network namespace ${name}: ${detail ?? String(error)}`, {
      cause: error,
    });
  }

  return {
    name,
    hostAddress,
    runnerAddress,
    execPrefix: [ip, 'netns', 'exec', name],
    cut: () => run('-n', name, 'link', 'set', inside, 'down'),
    restore: () => {
      run('-n', name, 'link', 'set', inside, 'up');
      // The runner's side remembers the host as unreachable for a while (a FAILED neighbor
      // entry from the ARP requests while cut): forget it, so the next connection asks again.
      run('neigh', 'flush', 'dev', outside);
    },
    blackhole: () => run('route', 'add', 'blackhole', `${hostAddress}/32`),
    stop: remove,
  };
}
