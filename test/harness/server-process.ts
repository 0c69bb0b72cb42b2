import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NetworkHost } from './netns.ts';
import { onProcessExit } from './scratch.ts';
import { requireTool } from './tools.ts';

export interface ServerProcess {
  readonly pid: number;
  /** Sends the server's own shutdown signal, waits for it to exit (SIGKILL after 10 s). */
  stop(): Promise<void>;
}

export interface ServerProcessOptions {
  /** Human name for messages, e.g. "MariaDB". */
  name: string;
  argv: string[];
  /** Run as this system user instead of root (PostgreSQL refuses root). */
  runAs?: string;
  /** Run inside this network namespace. */
  network?: NetworkHost;
  /** stdout and stderr of the server go here; its tail is shown when start-up fails. */
  logPath: string;
  stopSignal: NodeJS.Signals;
  /** Resolves true once the server accepts clients. */
  ready: () => Promise<boolean>;
  timeoutMs?: number;
}

/**
 * Starts a server as a child that dies with this process: the parent-death signal
 * (setpriv --pdeathsig) kills it even when this process is SIGKILLed, and an exit hook
 * kills it on every other way out.
 */
export async function startServerProcess(options: ServerProcessOptions): Promise<ServerProcess> {
  const setpriv = requireTool('setpriv');
  const prefix = [setpriv];
  if (options.runAs)
    prefix.push(`--reuid=${options.runAs}`, `--regid=${options.runAs}`, '--clear-groups');
  prefix.push('--pdeathsig', 'SIGKILL', '--');
  const argv = [...prefix, ...(options.network?.execPrefix ?? []), ...options.argv];

  const log = openSync(options.logPath, 'a');
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', log, log] });
  closeSync(log);
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${options.name} could not be started`);

  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exitCode = code ?? (signal ? -1 : null);
      resolve();
    }),
  );
  const killNow = onProcessExit(() => {
    if (exitCode === undefined) process.kill(pid, 'SIGKILL');
  });

  const logTail = () =>
    readFileSync(options.logPath, 'utf8').trim().split('\n').slice(-15).join('\n');
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  for (;;) {
    if (exitCode !== undefined)
      throw new Error(`${options.name} exited during start-up (code ${exitCode}):\n${logTail()}`);
    if (await options.ready().catch(() => false)) break;
    if (Date.now() > deadline) {
      killNow();
      await exited;
      throw new Error(`${options.name} did not become ready in time:\n${logTail()}`);
    }
    await sleep(25);
  }

  return {
    pid,
    async stop() {
      if (exitCode !== undefined) return;
      child.kill(options.stopSignal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
      killNow();
    },
  };
}

/**
 * A TCP port that was free on 127.0.0.1 a moment ago, picked at random below the kernel's
 * ephemeral range (32768 and up): a port from that range can be taken in the meantime as
 * the local end of any outgoing connection on the machine (a busy suite makes thousands),
 * and the server then fails to start with EADDRINUSE.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (await canListen(port)) return port;
    if (attempt > 200) throw new Error('no free TCP port between 20000 and 32000');
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () =>
      server.close(() => resolve(true)),
    );
  });
}

/** True for a start-up failure caused by a port taken between freePort and the server's bind. */
export function portTaken(error: unknown): boolean {
  return error instanceof Error && /EADDRINUSE|address already in use/i.test(error.message);
}
