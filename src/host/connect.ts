// Opens the session to the ownCloud host a plan names: this machine, or SSH.
import type { Reporter } from '../report.ts';
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

/** openHost as the first step of a run: a log group that says where it connected, as whom. */
export async function connectStep(
  reporter: Reporter,
  target: SshTarget | LocalTarget,
  secrets: Secrets,
  ssh?: SshOptions,
): Promise<Host> {
  return reporter.group('Connect', async () => {
    const opened = await openHost(target, secrets, ssh);
    reporter.info(`Connected to ${opened.label} as ${opened.account}.`);
    return opened;
  });
}
