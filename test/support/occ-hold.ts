// A deterministic moment inside a backup: the occ stand-in, at the call named here, does
// its work and then waits (see test/sample/occ.php) until the test releases it.
import { chownSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { SampleInstance } from '../sample/instance.ts';

export interface OccHold {
  /** Resolves with occ's pid once occ has done the call's work and waits (-1 if released first). */
  reached(): Promise<number>;
  /** Lets occ answer and exit (no-op when released already). */
  release(): void;
}

export function holdOccAt(instance: SampleInstance, args: string): OccHold {
  const root = dirname(instance.installDir);
  const hold = join(root, 'occ-hold');
  const held = join(root, 'occ-held');
  // occ runs as the instance's owner and may not create files beside the installation.
  writeFileSync(held, '');
  chownSync(held, instance.owner.uid, instance.owner.gid);
  writeFileSync(hold, `${args}\n`);
  let released = false;
  return {
    async reached() {
      while (!released) {
        const pid = existsSync(held) ? readFileSync(held, 'utf8').trim() : '';
        if (pid) return Number(pid);
        await new Promise((r) => setTimeout(r, 10));
      }
      return -1;
    },
    release() {
      released = true;
      rmSync(hold, { force: true });
    },
  };
}
