// Runs once around the integration tests: first removes what killed runs left behind and
// checks every tool the harness drives is installed (naming what is missing); at the end
// fails the run if any server process, scratch dir or namespace of THIS run outlived the
// tests. Each run has its own id in every name it makes, so another suite running on the
// same machine is never taken for a leftover.
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { sweepStaleNetworkHosts } from './netns.ts';
import {
  isProcessRunning,
  listScratchDirs,
  runId,
  RUN_VARIABLE,
  sweepStaleScratchDirs,
} from './scratch.ts';
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
  'restic',
  'rclone',
  'openssl',
];

/** Running processes whose command line names a scratch dir of this run (every server's does). */
function harnessProcesses(): string[] {
  const found: string[] = [];
  const ours = new RegExp(`/ocb-harness-\\d+-${runId()}-`);
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (ours.test(cmdline) && isProcessRunning(Number(pid)))
        found.push(`${pid}: ${cmdline.trim()}`);
    } catch {
      // exited while we looked
    }
  }
  return found;
}

export default function setup(): () => Promise<void> {
  // Inherited by every test process this run starts.
  process.env[RUN_VARIABLE] = `r${process.pid}`;
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
