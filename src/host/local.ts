import { hostname, userInfo } from 'node:os';
import type { Host } from './host.ts';
import { runProcess, streamProcess } from './process.ts';

/** The ownCloud server is this machine (a self-hosted runner on it). */
export class LocalHost implements Host {
  readonly label = `this machine (${hostname()})`;
  readonly account = userInfo().username;

  run: Host['run'] = (argv, options) => runProcess(argv, options);
  stream: Host['stream'] = (argv, options) => streamProcess(argv, options);
  transportFailure(): string | undefined {
    return undefined;
  }
  async close(): Promise<void> {}
}
