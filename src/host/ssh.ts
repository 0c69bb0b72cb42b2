// The ownCloud server over SSH (OpenSSH client): a given key, the host key checked
// strictly against given known_hosts lines, one multiplexed connection for every command
// of the run, and keepalives so that a dead link fails in seconds.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BackupError } from '../errors.ts';
import type { SshTarget } from '../settings.ts';
import { childEnvironment } from './environment.ts';
import type { Host } from './host.ts';
import { killWithUs } from './reaper.ts';
import { runProcess, stderrTail, streamProcess, type ProcessResult } from './process.ts';
import { quoteCommand } from './shell.ts';

export interface SshOptions {
  /** Seconds between keepalives; three missed ones end the connection. */
  keepAliveSeconds?: number;
  connectTimeoutSeconds?: number;
  /** Where the key, known_hosts and control socket live (0700, removed on close). */
  runtimeDir?: string;
  /**
   * Told the master connection's pid and socket directory as soon as it starts, so that a
   * later process (the action's post step) can end it if this one is killed.
   */
  onMaster?: (master: { pid: number; socketDir: string }) => void;
}

/**
 * A path as the value of an ssh `-o` option: ssh splits values on spaces unless they are
 * double-quoted, and expands %-tokens in these paths, so '%' is doubled.
 */
export function sshConfigPath(path: string): string {
  if (path.includes('"') || /[\r\n]/.test(path))
    throw new BackupError(
      `The path '${path}' cannot be given to ssh (it contains a double quote or line break).`,
    );
  const escaped = path.replaceAll('%', '%%');
  return /\s/.test(escaped) ? `"${escaped}"` : escaped;
}

/** sshd's complaint about a user without a home directory says nothing about the command. */
function withoutLoginNoise(result: ProcessResult): ProcessResult {
  return {
    ...result,
    stderr: result.stderr.replace(/^Could not chdir to home directory.*\n?/gm, ''),
  };
}

/**
 * What ssh said about a failure, or, when it said nothing, what is known: its exit status
 * and that it gave no reason.
 */
export function sshFailureDetail(exitCode: number | null, stderr: string): string {
  const said = stderrTail(stderr);
  if (said !== '') return said;
  return exitCode === null
    ? 'ssh ended without an exit status and gave no reason (no error output)'
    : `ssh exited with status ${exitCode} and gave no reason (no error output)`;
}

/** Explains ssh's own failures (exit 255) in words an administrator can act on. */
export function explainSshFailure(stderr: string, label: string): string | undefined {
  const text = stderr.toLowerCase();
  if (text.includes('remote host identification has changed'))
    return `The host key of ${label} does not match known-hosts: the key changed or someone is in between. Check the server's key and update known-hosts.`;
  if (
    text.includes('host key verification failed') ||
    text.includes('no matching host key') ||
    text.includes('is not in the trusted hosts')
  )
    return `The host key of ${label} is not in known-hosts (host key verification failed). Add the server's line, e.g. from: ssh-keyscan -p PORT HOST.`;
  if (text.includes('permission denied'))
    return `${label} refused the SSH key (permission denied). Check ssh-key and that its public key is in the user's authorized_keys.`;
  if (text.includes('connection refused'))
    return `${label} refused the SSH connection (nothing listening on that port?).`;
  if (text.includes('could not resolve hostname'))
    return `The host name of ${label} could not be resolved.`;
  if (text.includes('timed out') || text.includes('timeout'))
    return `The SSH connection to ${label} timed out (the host is unreachable or the link is dead).`;
  if (text.includes('not responding'))
    return `The SSH connection to ${label} timed out (keepalives unanswered: the host or the link is down).`;
  if (
    text.includes('broken pipe') ||
    text.includes('connection unexpectedly closed') ||
    text.includes('connection closed') ||
    text.includes('connection reset') ||
    text.includes('mux_client')
  )
    return `The SSH connection to ${label} was lost.`;
  if (text.includes('invalid format') || text.includes('load key'))
    return 'The SSH private key could not be loaded (invalid format). Check ssh-key.';
  return undefined;
}

export class SshHost implements Host {
  readonly label: string;
  account = '';
  private master: ChildProcess | undefined;
  /** What the master connection said on stderr, and whether it has ended. */
  private masterStderr = '';
  private masterEnded = false;
  private readonly baseArgs: string[];
  private readonly runtimeDir: string;
  /** Where the control socket lives: the runtime dir, or a short one (sockets have a 108-byte path limit). */
  private readonly socketDir: string;

  private readonly target: SshTarget;
  private readonly onMaster: SshOptions['onMaster'];

  private constructor(target: SshTarget, options: SshOptions) {
    this.target = target;
    this.onMaster = options.onMaster;
    this.label = `${target.user}@${target.host}:${target.port}`;
    this.runtimeDir = options.runtimeDir ?? mkdtempSync(join(tmpdir(), 'owncloud-backup-ssh-'));
    // A Unix socket path holds at most 107 bytes and ssh appends ~17 while creating it:
    // under a deep RUNNER_TEMP the socket goes to a short private dir in /tmp instead.
    this.socketDir =
      Buffer.byteLength(join(this.runtimeDir, 'mux')) <= 80
        ? this.runtimeDir
        : mkdtempSync(join('/tmp', 'ocb-ssh-'));
    const keyFile = join(this.runtimeDir, 'id');
    const knownHostsFile = join(this.runtimeDir, 'known_hosts');
    writeFileSync(keyFile, target.privateKey, { mode: 0o600 });
    writeFileSync(knownHostsFile, `${target.knownHosts.join('\n')}\n`, { mode: 0o600 });
    const keepAlive = options.keepAliveSeconds ?? 5;
    // With ssh, the FIRST occurrence of an option wins: nothing may come before these.
    this.baseArgs = [
      '-F',
      '/dev/null',
      '-o',
      'BatchMode=yes',
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      `IdentityFile=${sshConfigPath(keyFile)}`,
      '-o',
      `UserKnownHostsFile=${sshConfigPath(knownHostsFile)}`,
      '-o',
      'GlobalKnownHostsFile=/dev/null',
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      'CheckHostIP=no',
      '-o',
      'UpdateHostKeys=no',
      '-o',
      `ConnectTimeout=${options.connectTimeoutSeconds ?? 15}`,
      '-o',
      `ServerAliveInterval=${keepAlive}`,
      '-o',
      'ServerAliveCountMax=3',
      '-o',
      `ControlPath=${sshConfigPath(join(this.socketDir, 'mux'))}`,
      '-o',
      'LogLevel=ERROR',
      '-p',
      String(target.port),
      '-l',
      target.user,
    ];
  }

  /** Connects (checking the host key) and keeps the connection for the run's commands. */
  static async connect(target: SshTarget, options: SshOptions = {}): Promise<SshHost> {
    const host = new SshHost(target, options);
    try {
      await host.startMaster();
      const whoami = await host.run(['id', '-un']);
      if (whoami.exitCode !== 0)
        throw new BackupError(
          `Could not run commands on ${host.label}: ${sshFailureDetail(whoami.exitCode, whoami.stderr)}`,
        );
      host.account = whoami.stdout.trim();
      return host;
    } catch (error) {
      await host.close();
      throw error;
    }
  }

  private async startMaster(): Promise<void> {
    // Detached, so a Ctrl-C in a terminal does not cut the link we need to restore
    // maintenance mode; it is ended explicitly in close().
    const master = spawn(
      'ssh',
      [
        ...this.baseArgs,
        '-o',
        'ControlMaster=yes',
        '-o',
        'ControlPersist=no',
        '-N',
        this.target.host,
      ],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
        detached: true,
        env: childEnvironment(process.env),
      },
    );
    this.master = master;
    // A master left running after we die would hold the link open for nothing.
    master.once('exit', killWithUs(master.pid));
    if (master.pid !== undefined) this.onMaster?.({ pid: master.pid, socketDir: this.socketDir });
    master.stderr!.on('data', (chunk: Buffer) => {
      this.masterStderr = (this.masterStderr + chunk.toString()).slice(-8192);
    });
    let exitCode: number | null = null;
    master.once('exit', (code, signal) => {
      this.masterEnded = true;
      exitCode = code ?? (signal ? 128 + (constants.signals[signal] ?? 0) : null);
    });
    master.once('error', () => {
      this.masterEnded = true;
    });
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (this.masterEnded) {
        throw new BackupError(
          explainSshFailure(this.masterStderr, this.label) ??
            `Could not connect to ${this.label}: ${sshFailureDetail(exitCode, this.masterStderr)}`,
        );
      }
      const check = await runProcess(['ssh', ...this.baseArgs, '-O', 'check', this.target.host]);
      if (check.exitCode === 0) return;
      if (Date.now() > deadline) throw new BackupError(`Timed out connecting to ${this.label}.`);
      await sleep(50);
    }
  }

  /** ssh argv for one command over the shared connection (or a new one if it died). */
  private commandArgs(argv: readonly string[]): string[] {
    return [
      'ssh',
      ...this.baseArgs,
      '-o',
      'ControlMaster=no',
      this.target.host,
      '--',
      quoteCommand(argv),
    ];
  }

  run: Host['run'] = async (argv, options) =>
    this.settled(withoutLoginNoise(await runProcess(this.commandArgs(argv), options)));
  stream: Host['stream'] = (argv, options) => {
    const started = streamProcess(this.commandArgs(argv), options);
    return {
      ...started,
      kill: () => started.kill(),
      done: started.done.then((result) => this.settled(withoutLoginNoise(result))),
    };
  };

  /**
   * A command on the shared connection that dies with it exits 255 without a word, a
   * moment before the master's own exit is seen: wait for that (a few seconds at most, and
   * only then), so that transportFailure can tell a lost connection from other failures.
   */
  private async settled(result: ProcessResult): Promise<ProcessResult> {
    if (result.exitCode !== 255 || result.stderr.trim() !== '' || this.masterEnded) return result;
    const master = this.master;
    if (master && master.exitCode === null && master.signalCode === null)
      await Promise.race([
        new Promise((resolve) => master.once('exit', resolve)),
        sleep(5000, undefined, { ref: false }),
      ]);
    return result;
  }

  transportFailure(result: ProcessResult): string | undefined {
    if (result.exitCode === 0) return undefined;
    if (result.exitCode === 255)
      return (
        explainSshFailure(result.stderr, this.label) ??
        // A command on the shared connection often dies silently with it: the master's
        // own words (or its end) tell what happened.
        (this.masterEnded
          ? (explainSshFailure(this.masterStderr, this.label) ??
            `The SSH connection to ${this.label} was lost (the connection ended${stderrTail(this.masterStderr) ? `: ${stderrTail(this.masterStderr)}` : ''}).`)
          : `The SSH connection to ${this.label} failed: ${sshFailureDetail(result.exitCode, result.stderr)}`)
      );
    // rsync reports a dead link with its own exit codes (12, 10) and this wording.
    if (/connection unexpectedly closed|not responding|broken pipe/i.test(result.stderr))
      return explainSshFailure(result.stderr, this.label);
    return undefined;
  }

  async close(): Promise<void> {
    const master = this.master;
    if (master && master.exitCode === null && master.signalCode === null) {
      const exited = new Promise((resolve) => master.once('exit', resolve));
      master.kill('SIGTERM');
      await Promise.race([exited, sleep(2000, undefined, { ref: false })]);
      if (master.exitCode === null && master.signalCode === null) master.kill('SIGKILL');
    }
    this.master = undefined;
    rmSync(this.runtimeDir, { recursive: true, force: true });
    rmSync(this.socketDir, { recursive: true, force: true });
  }
}

/**
 * Ends a master connection left behind by a killed process: only if that pid is still an
 * ssh process (pids are reused), then removes its socket directory.
 */
export function endOrphanedMaster(master: { pid: number; socketDir: string }): boolean {
  let ended = false;
  try {
    const cmdline = readFileSync(`/proc/${master.pid}/cmdline`, 'utf8').split('\0');
    if (cmdline[0]?.split('/').pop() === 'ssh' && cmdline.includes('ControlMaster=yes')) {
      process.kill(master.pid, 'SIGTERM');
      ended = true;
    }
  } catch {
    // gone already
  }
  rmSync(master.socketDir, { recursive: true, force: true });
  return ended;
}
