import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { makeScratchDir } from './scratch.ts';

const CACHE = resolve(
  import.meta.dirname,
  '..',
  '..',
  'node_modules',
  '.cache',
  'owncloud-backup-harness',
);

/**
 * A server data directory initialised once per server version and copied for each
 * instance: initialising takes seconds, copying a fraction of that. Safe when several
 * test processes race to build it (build aside, then rename into place).
 */
export async function copyFromTemplate(
  key: string,
  build: (dir: string) => Promise<void>,
  target: string,
): Promise<void> {
  const template = join(CACHE, key);
  if (!existsSync(template)) {
    // Built in a scratch dir of its own: the server's user (postgres) must reach the
    // directory it initialises, and the checkout may sit where only root can go.
    const scratch = makeScratchDir(`template-${key}`);
    mkdirSync(CACHE, { recursive: true });
    const staging = mkdtempSync(join(CACHE, `${key}.building-`));
    try {
      await build(join(scratch.path, 'data'));
      execFileSync('cp', ['-a', join(scratch.path, 'data'), join(staging, 'data')]);
      try {
        renameSync(join(staging, 'data'), template);
      } catch (error) {
        if (!existsSync(template)) throw error; // someone else won the race otherwise
      }
    } finally {
      rmSync(staging, { recursive: true, force: true });
      scratch.remove();
    }
  }
  // cp -a keeps owners and modes (PostgreSQL insists on a 0700 data dir).
  execFileSync('cp', ['-a', '--reflink=auto', template, target]);
}
