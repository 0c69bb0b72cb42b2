// Watches the environment (/proc/PID/environ) of every process in this test's own process
// tree while a backup runs: the tool's children, the sshd the test started and the sessions
// under it (occ as the web server's user among them). Other processes on the machine are
// only looked at for their parent pid, to find the tree; nothing else of theirs is read.
import { readFileSync } from 'node:fs';
import { ProcessTree } from './processes.ts';

export interface EnvironSighting {
  pid: number;
  uid: number;
  argv: string[];
}

export interface EnvironReport {
  /** Every process of the tree whose environment was read (one entry per pid and argv). */
  seen: EnvironSighting[];
  /** `pid argv: which secret` for every environment that held one. */
  leaks: string[];
  /** How many times the tree was walked, and environments read in all. */
  scans: number;
  environsRead: number;
}

export interface EnvironWatch {
  stop(): Promise<EnvironReport>;
}

function read(pid: number): { argv: string[]; environ: string; uid: number } | undefined {
  try {
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0$/, '').split('\0');
    const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
    return { argv, environ, uid };
  } catch {
    return undefined; // gone meanwhile
  }
}

/**
 * Starts watching. `secrets` are named values no environment may hold; processes for which
 * `isTool` says yes (the tool's own process, which the caller gave the secrets) are
 * skipped. `onSighting` is told of each new process once, after its environment was read.
 */
export function watchEnvironments(options: {
  secrets: Record<string, string>;
  isTool: (sighting: EnvironSighting) => boolean;
  onSighting?: (sighting: EnvironSighting) => void;
}): EnvironWatch {
  const seen = new Map<string, EnvironSighting>();
  const leaks = new Set<string>();
  let scans = 0;
  let environsRead = 0;
  let running = true;
  const secrets = Object.entries(options.secrets).filter(([, value]) => value.length > 0);

  const tree = new ProcessTree();
  const scan = () => {
    scans++;
    for (const { pid } of tree.list()) {
      const found = read(pid);
      if (!found || found.argv[0] === '') continue;
      const sighting = { pid, uid: found.uid, argv: found.argv };
      if (options.isTool(sighting)) continue;
      environsRead++;
      for (const [name, value] of secrets)
        if (found.environ.includes(value)) leaks.add(`${pid} ${found.argv.join(' ')}: ${name}`);
      const key = `${pid} ${found.argv.join('\0')}`;
      if (!seen.has(key)) {
        seen.set(key, sighting);
        options.onSighting?.(sighting);
      }
    }
  };
  const loop = (async () => {
    while (running) {
      scan();
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    scan();
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { seen: [...seen.values()], leaks: [...leaks], scans, environsRead };
    },
  };
}
