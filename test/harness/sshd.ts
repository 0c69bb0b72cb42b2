import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import type { NetworkHost } from './netns.ts';
import { makeScratchDir } from './scratch.ts';
import { freePort, startServerProcess } from './server-process.ts';
import { requireTool } from './tools.ts';

export interface SshServer {
  /** Address clients connect to. */
  readonly host: string;
  readonly port: number;
  /** The account the generated key logs in as. */
  readonly user: string;
  readonly pid: number;
  readonly dir: string;
  /** Path of the generated client private key (0600). */
  readonly privateKeyPath: string;
  /** The generated client private key itself, as a user would paste it into a secret. */
  readonly privateKey: string;
  /** This server's host key as one known_hosts line (`[host]:port ssh-ed25519 AAAA…`). */
  readonly knownHostsLine: string;
  /** A known_hosts file holding that line. */
  readonly knownHostsPath: string;
  /** OpenSSH client options for this server with strict host key checking; append the remote command. */
  clientArgs(): string[];
  /**
   * With `logCommands`: every remote command a session ran, in the order they started, with
   * its start and end (seconds since the epoch, the host's clock) and exit status (end and
   * status absent while it still runs).
   */
  commands(): RemoteCommand[];
  stop(): Promise<void>;
}

export interface RemoteCommand {
  command: string;
  start: number;
  end?: number;
  exitCode?: number;
}

// Runs the session's command as sshd would (the login shell with -c), recording it first,
// in a file of its own (sessions run side by side), and its end and exit status after.
const commandLogger = (dir: string) => `#!/bin/sh
f=$(mktemp '${dir}/XXXXXXXX') || exit 255
{ date +%s.%N; printf '%s' "$SSH_ORIGINAL_COMMAND" | od -An -v -tx1 | tr -d ' \\n'; echo; } > "$f"
"$SHELL" -c "$SSH_ORIGINAL_COMMAND"
status=$?
{ date +%s.%N; echo "$status"; } >> "$f"
exit "$status"
`;

function readCommandLog(dir: string): RemoteCommand[] {
  return readdirSync(dir)
    .map((name) => {
      const [start, hex, end, status] = readFileSync(join(dir, name), 'utf8').split('\n');
      return {
        command: Buffer.from(hex ?? '', 'hex').toString('utf8'),
        start: Number(start),
        ...(end ? { end: Number(end), exitCode: Number(status) } : {}),
      };
    })
    .sort((a, b) => a.start - b.start);
}

function tcpAccepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export async function startSshd(
  options: {
    network?: NetworkHost;
    /** PATH for every session: a host on which some programs are missing. */
    sessionPath?: string;
    /** Record every remote command a session runs (see commands()). */
    logCommands?: boolean;
  } = {},
): Promise<SshServer> {
  const sshd = requireTool('sshd');
  const keygen = requireTool('ssh-keygen');
  const scratch = makeScratchDir('sshd');
  const dir = scratch.path;
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 }); // sshd's privilege-separation dir

  const hostKey = join(dir, 'ssh_host_ed25519_key');
  const clientKey = join(dir, 'client_ed25519');
  for (const [file, comment] of [
    [hostKey, 'owncloud-backup test host'],
    [clientKey, 'owncloud-backup test client'],
  ])
    await execa(keygen, ['-q', '-t', 'ed25519', '-N', '', '-C', comment!, '-f', file!]);
  const authorizedKeys = join(dir, 'authorized_keys');
  writeFileSync(authorizedKeys, readFileSync(`${clientKey}.pub`), { mode: 0o644 });
  // sshd reads authorized_keys as the user logging in, who may not be root: the dir must be
  // traversable (the keys in it stay 0600).
  chmodSync(dir, 0o755);

  const commandLog = join(dir, 'commands');
  const logger = join(dir, 'log-command');
  if (options.logCommands) {
    mkdirSync(commandLog, { mode: 0o1777 });
    chmodSync(commandLog, 0o1777);
    writeFileSync(logger, commandLogger(commandLog), { mode: 0o755 });
  }

  const host = options.network?.hostAddress ?? '127.0.0.1';
  const port = await freePort();
  const config = join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      `Port ${port}`,
      `ListenAddress ${host}`,
      `HostKey ${hostKey}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${authorizedKeys}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      // Keys live in a temp dir that StrictModes would reject.
      'StrictModes no',
      'PrintMotd no',
      'MaxSessions 50',
      'MaxStartups 50',
      // As on a stock host: sftp clients (restic's sftp: repositories) get a server.
      'Subsystem sftp internal-sftp',
      'LogLevel ERROR',
      ...(options.sessionPath ? [`SetEnv "PATH=${options.sessionPath}"`] : []),
      ...(options.logCommands ? [`ForceCommand ${logger}`] : []),
      '',
    ].join('\n'),
  );

  const server = await startServerProcess({
    name: 'sshd',
    argv: [sshd, '-D', '-e', '-f', config],
    network: options.network,
    logPath: join(dir, 'sshd.log'),
    stopSignal: 'SIGTERM',
    ready: () => tcpAccepts(host, port),
  });

  const hostKeyPublic = readFileSync(`${hostKey}.pub`, 'utf8')
    .trim()
    .split(' ')
    .slice(0, 2)
    .join(' ');
  const knownHostsLine = `[${host}]:${port} ${hostKeyPublic}`;
  const knownHostsPath = join(dir, 'known_hosts');
  writeFileSync(knownHostsPath, `${knownHostsLine}\n`);

  return {
    host,
    port,
    user: 'root',
    pid: server.pid,
    dir,
    privateKeyPath: clientKey,
    privateKey: readFileSync(clientKey, 'utf8'),
    knownHostsLine,
    knownHostsPath,
    clientArgs: () => [
      '-F',
      '/dev/null',
      '-i',
      clientKey,
      '-p',
      String(port),
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      'BatchMode=yes',
      '-o',
      `UserKnownHostsFile=${knownHostsPath}`,
      '-o',
      'GlobalKnownHostsFile=/dev/null',
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      'ConnectTimeout=10',
      `root@${host}`,
    ],
    commands: () => {
      if (!options.logCommands) throw new Error('this sshd was started without logCommands');
      return readCommandLog(commandLog);
    },
    async stop() {
      await server.stop();
      scratch.remove();
    },
  };
}
