// Runs once before the integration tests: removes what killed runs left behind, and
// checks every tool the harness drives is installed, naming what is missing.
import { MissingToolError, requireTool } from './tools.ts';
import { sweepStaleNetworkHosts } from './netns.ts';
import { sweepStaleScratchDirs } from './scratch.ts';

const TOOLS = [
  'mariadbd', 'mariadb-install-db', 'mariadb', 'mariadb-dump', 'initdb', 'postgres', 'psql',
  'pg_dump', 'sshd', 'ssh', 'ssh-keygen', 'rsync', 'sqlite3', 'php', 'setfacl', 'getfacl',
  'setfattr', 'getfattr', 'ip', 'setpriv', 'zstd',
];

export default function setup(): void {
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
}
