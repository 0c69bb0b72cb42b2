// Opens the session to the ownCloud host a plan names: this machine, or SSH.
import type { Secrets } from '../secrets.ts';
import type { LocalTarget, SshTarget } from '../settings.ts';
import type { Host } from './host.ts';
import { LocalHost } from './local.ts';
import { SshHost, type SshOptions } from './ssh.ts';

export async function openHost(
  target: SshTarget | LocalTarget,
  secrets: Secrets,
  ssh?: SshOptions,
): Promise<Host> {
  if (target.kind === 'local') return new LocalHost();
  secrets.add(target.privateKey);
  return SshHost.connect(target, ssh);
}
