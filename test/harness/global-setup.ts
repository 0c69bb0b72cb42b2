// Runs once around the integration tests: first removes what killed runs left behind and
// checks every tool the harness drives is installed (naming what is missing); at the end
// fails the run if any server process, scratch dir or namespace outlived the tests.
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { sweepStaleNetworkHosts } from './netns.ts';
import { isProcessRunning, listScratchDirs, sweepStaleScratchDirs } from './scratch.ts';
import { MissingToolError, requireTool } from './tools.ts';

const TOOLS = [
  'mariadbd',
  'mariadb-install-db',
  'mariadb',
  'mariadb-dump',
  'initdb',
  'postgres',
  'psql',
  'pg_dump',
  'sshd',
  'ssh',
  'ssh-keygen',
  'rsync',
  'sqlite3',
  'php',
  'setfacl',
  'getfacl',
  'setfattr',
  'getfattr',
  'ip',
  'setpriv',
  'zstd',
  'sudo',
  'useradd',
];

/** Running processes whose command line names a harness scratch dir (every server's does). */
function harnessProcesses(): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmdline.includes('/ocb-harness-') && isProcessRunning(Number(pid)))
        found.push(`${pid}: ${cmdline.trim()}`);
    } catch {
      // exited while we looked
    }
  }
  return found;
}

export default function setup(): () => Promise<void> {
  sweepStaleScratchDirs();
  sweepStaleNetworkHosts();
  const missing: string[] = [];
  for (const tool of TOOLS) {
    try {
      requireTool(tool);
    } catch (error) {
      if (error instanceof MissingToolError) missing.push(error.message);
      else throw error;
    }
  }
  if (missing.length > 0) throw new Error(missing.join('\n'));

  return async () => {
    let leftovers: string[] = [];
    for (let attempt = 0; attempt < 40; attempt++) {
      leftovers = [...harnessProcesses(), ...listScratchDirs('\\d+'), ...sweepStaleNetworkHosts()];
      if (leftovers.length === 0) return;
      await sleep(50);
    }
    throw new Error(`The tests left these behind:\n  ${leftovers.join('\n  ')}`);
  };
}
