// The README's restricted key for the SSH user (`from=` the runner's address, `restrict`: no
// forwarding, no terminal), taken from the README with only the address and the key filled
// in: a backup over SSH works with it, and from any other address the key is refused.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeScratchDir } from '../harness/scratch.ts';
import { startSshd, type SshServer } from '../harness/sshd.ts';
import { buildSampleInstance } from '../sample/instance.ts';
import { CLI } from '../support/backup-run.ts';
import { finishedBackup } from '../support/restore.ts';

const README = join(import.meta.dirname, '..', '..', 'README.md');
const EXAMPLE_ADDRESS = '192.0.2.10';

let sshd: SshServer;
const scratch = makeScratchDir('readme-ssh-key');
chmodSync(scratch.path, 0o755);

beforeAll(async () => {
  sshd = await startSshd();
});
afterAll(async () => {
  await sshd?.stop();
  scratch.remove();
});

/** The README's authorized_keys line, with its example address and key replaced. */
function authorizedKeyLine(address: string): string {
  const block = /<!-- ssh:authorized-key -->\s*```text\n([^\n]*)\n```/.exec(
    readFileSync(README, 'utf8'),
  );
  expect(block, 'README.md has no text block marked ssh:authorized-key').not.toBeNull();
  const line = block![1]!;
  expect(line).toMatch(/^from="192\.0\.2\.10",restrict ssh-ed25519 AAAA\.\.\. owncloud-backup$/);
  const key = readFileSync(`${join(sshd.dir, 'client_ed25519')}.pub`, 'utf8').trim();
  return `${line.replace(EXAMPLE_ADDRESS, address).replace('ssh-ed25519 AAAA... owncloud-backup', key)}\n`;
}

function backUp(root: string, installDir: string) {
  const backupDir = join(root, 'backups');
  mkdirSync(backupDir, { recursive: true });
  const run = spawnSync(
    process.execPath,
    [
      CLI,
      'backup',
      '--host',
      sshd.host,
      '--port',
      String(sshd.port),
      '--ssh-key-file',
      sshd.privateKeyPath,
      '--known-hosts-file',
      sshd.knownHostsPath,
      '--owncloud-dir',
      installDir,
      '--backup-dir',
      backupDir,
    ],
    { encoding: 'utf8' },
  );
  return { run, backupDir };
}

describe("the README's restricted SSH key", () => {
  it('lets a backup run from the allowed address', async () => {
    const instance = await buildSampleInstance({
      database: { type: 'sqlite' },
      root: join(scratch.path, 'allowed'),
    });
    writeFileSync(join(sshd.dir, 'authorized_keys'), authorizedKeyLine(sshd.host));
    const { run, backupDir } = backUp(instance.root, instance.installDir);
    expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0);
    const backup = finishedBackup(backupDir);
    expect(backup.manifest.source.transport).toBe('ssh');
    expect(backup.manifest.files.fileCount).toBeGreaterThan(60);
    const verify = spawnSync(process.execPath, [CLI, 'verify', backup.dir], { encoding: 'utf8' });
    expect(verify.status, verify.stdout + verify.stderr).toBe(0);
    instance.remove();
  });

  it('refuses the key from any other address', async () => {
    const instance = await buildSampleInstance({
      database: { type: 'sqlite' },
      root: join(scratch.path, 'refused'),
    });
    writeFileSync(join(sshd.dir, 'authorized_keys'), authorizedKeyLine(EXAMPLE_ADDRESS));
    const { run, backupDir } = backUp(instance.root, instance.installDir);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(
      `owncloud-backup: error: ${sshd.user}@${sshd.host}:${sshd.port} refused the SSH key (permission denied).`,
    );
    expect(spawnSync('ls', ['-A', backupDir], { encoding: 'utf8' }).stdout).toBe('');
    expect(instance.occCalls()).toEqual([]);
    instance.remove();
  });
});
