// The SSH transport's own failure messages, against a real sshd: a command on the shared
// connection that dies with it says so, even when ssh itself prints nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SshHost } from '../../src/host/ssh.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import { startSshd, type SshServer } from '../harness/sshd.ts';

let sshd: SshServer;
const scratch = makeScratchDir('ssh-transport');

beforeAll(async () => {
  sshd = await startSshd();
});
afterAll(async () => {
  await sshd?.stop();
  scratch.remove();
});

describe('a command on the shared SSH connection', () => {
  it('reports the connection as lost when the connection dies under it silently', async () => {
    let masterPid = 0;
    const host = await SshHost.connect(
      {
        kind: 'ssh',
        host: sshd.host,
        port: sshd.port,
        user: sshd.user,
        privateKey: sshd.privateKey,
        knownHosts: [sshd.knownHostsLine],
      },
      { runtimeDir: makeScratchDir('ssh-runtime').path, onMaster: ({ pid }) => (masterPid = pid) },
    );
    try {
      const running = host.stream(['sh', '-c', 'echo started; exec sleep 60']);
      await new Promise<void>((resolve) => running.stdout.once('data', () => resolve()));
      running.stdout.resume();
      process.kill(masterPid, 'SIGKILL');
      const result = await running.done;
      expect(result.exitCode).toBe(255);
      expect(host.transportFailure(result)).toBe(
        `The SSH connection to ${host.label} was lost (the connection ended).`,
      );
    } finally {
      await host.close();
    }
  });
});
