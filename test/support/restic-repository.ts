// A restic backend as the command line and an administrator reach it in the tests: the
// CLI's options and environment (the repository, its password and keys in env only), and
// restic itself run on the repository.
import { execFileSync } from 'node:child_process';
import type { ResticBackend } from '../harness/restic-backends.ts';
import { requireTool } from '../harness/tools.ts';

/** The repositories' password: with the characters a shell or a parser could trip on. */
export const RESTIC_PASSWORD = `restic password ${process.pid} 'q' "d" $x`;

/** The CLI's options and environment for a backend (its URL, keys and password in env only). */
export function repositoryArgs(backend: ResticBackend) {
  const options: string[] = [];
  for (let i = 0; i < backend.options.length; i += 2)
    options.push('--restic-option', backend.options[i + 1]!);
  return {
    args: [...options, ...Object.keys(backend.env).flatMap((name) => ['--restic-env', name])],
    env: {
      ...backend.env,
      OWNCLOUD_BACKUP_RESTIC_REPOSITORY: backend.repository,
      OWNCLOUD_BACKUP_RESTIC_PASSWORD: RESTIC_PASSWORD,
    },
    secrets: [RESTIC_PASSWORD, ...Object.values(backend.secrets)],
  };
}

/** restic itself, as an administrator runs it on the repository. */
export function restic(backend: ResticBackend, args: string[], input?: Buffer): Buffer {
  return execFileSync(requireTool('restic'), [...backend.options, ...args], {
    env: {
      ...process.env,
      ...backend.env,
      RESTIC_REPOSITORY: backend.repository,
      RESTIC_PASSWORD,
      TZ: 'UTC',
    },
    maxBuffer: 256 * 1024 * 1024,
    ...(input ? { input } : {}),
  });
}
