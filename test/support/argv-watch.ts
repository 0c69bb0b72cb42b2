// Watches the command lines (/proc/PID/cmdline) of every process in this test's own process
// tree, for secrets that no argv may hold: a process list shows argv to every user of the
// machine. Only this test's own processes are looked at.
import { ProcessTree, type OwnProcess } from './processes.ts';

export interface ArgvWatch {
  /** Every process seen so far (one entry per pid and argv); the watch goes on. */
  seen(): OwnProcess[];
  stop(): Promise<OwnProcess[]>;
}

/** Starts recording the argv of each process of the test's tree, every few milliseconds. */
export function watchArgv(): ArgvWatch {
  const tree = new ProcessTree();
  const seen = new Map<string, OwnProcess>();
  let running = true;
  const scan = () => {
    for (const found of tree.list()) seen.set(`${found.pid} ${found.argv.join('\0')}`, found);
  };
  const loop = (async () => {
    while (running) {
      scan();
      // Unref'd: a watch nobody stopped never keeps the test process alive.
      await new Promise((resolve) => setTimeout(resolve, 2).unref());
    }
    scan();
  })();
  return {
    seen: () => [...seen.values()],
    async stop() {
      running = false;
      await loop;
      return [...seen.values()];
    },
  };
}

/** `pid argv: which secret` for every argv that holds one of the named secrets. */
export function argvLeaks(processes: OwnProcess[], secrets: Record<string, string>): string[] {
  const leaks: string[] = [];
  for (const { pid, argv } of processes)
    for (const [name, value] of Object.entries(secrets))
      if (value && argv.some((arg) => arg.includes(value)))
        leaks.push(`${pid} ${argv.join(' ')}: ${name}`);
  return leaks;
}
