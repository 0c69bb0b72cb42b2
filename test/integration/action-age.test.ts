// The action with `encrypt-to`: the artifact as the artifact service stores it (every byte
// of the uploaded zip) holds no plaintext of the instance, where the same instance's plain
// artifact shows the marker; downloaded with the real client, it verifies with the identity
// and only as far as its ciphertext without it; the identity given for the restore test is
// masked and in no argv.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DefaultArtifactClient } from '@actions/artifact';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/manifest.ts';
import { startArtifactService, type ArtifactService } from '../harness/artifact-service.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import { startSshd, type SshServer } from '../harness/sshd.ts';
import { runActionStep, sshInputs } from '../support/action-runner.ts';
import { runToolCli } from '../support/backup-run.ts';
import { explain } from '../support/cli-checks.ts';
import { sampleOn } from '../support/instances.ts';

let sshd: SshServer;
let service: ArtifactService;
const scratch = makeScratchDir('action-age');
chmodSync(scratch.path, 0o755);
let counter = 0;

beforeAll(async () => {
  [sshd, service] = await Promise.all([startSshd(), startArtifactService()]);
});
afterAll(async () => {
  await Promise.all([sshd?.stop(), service?.stop()]);
  scratch.remove();
});

async function withArtifactEnv<T>(work: () => Promise<T>): Promise<T> {
  const saved = { ...process.env };
  Object.assign(process.env, service.env);
  try {
    return await work();
  } finally {
    for (const key of Object.keys(service.env))
      if (saved[key] === undefined) delete process.env[key];
    Object.assign(process.env, saved);
  }
}

describe('the action with encrypt-to', () => {
  it('uploads an artifact without a plaintext byte that verifies with the identity', async () => {
    const instance = await sampleOn(
      'sqlite',
      { mariadb: undefined!, postgres: undefined! },
      scratch.path,
      0,
    );
    // Random bytes: stored as they are by zstd and by the zip, so a slice is a marker.
    const content = randomBytes(256 * 1024);
    writeFileSync(join(instance.dataDir, 'alice', 'files', 'random.bin'), content);
    const marker = content.subarray(150_000, 150_064);
    const keyFile = join(scratch.path, 'age.key');
    execFileSync('age-keygen', ['-o', keyFile], { stdio: 'ignore' });
    const secretKey = readFileSync(keyFile, 'utf8').trim().split('\n').pop()!;
    const recipient = execFileSync('age-keygen', ['-y', keyFile], { encoding: 'utf8' }).trim();

    const run = async (name: string, extra: Record<string, string>) => {
      const dir = join(scratch.path, `runner ${counter++}`);
      mkdirSync(dir, { recursive: true });
      const main = await runActionStep('main', {
        inputs: { ...sshInputs(sshd, instance), 'artifact-name': name, ...extra },
        workDir: dir,
        env: service.env,
        secrets: [secretKey],
      });
      expect(main.exitCode, explain(main)).toBe(0);
      expect(main.leaks).toEqual([]);
      return { main, dir, stored: await service.content(name) };
    };

    const plain = await run('plain', { 'restore-test': 'false' });
    expect(plain.stored.includes(marker)).toBe(true);

    const sealed = await run('sealed', { 'encrypt-to': recipient, identity: `${secretKey}\n` });
    expect(sealed.stored.includes(marker)).toBe(false);
    expect(sealed.stored.includes(Buffer.from('random.bin'))).toBe(false);
    // The key is masked the moment it is read, and appears nowhere else.
    const lines = sealed.main.stdout.split('\n').filter((l) => l.includes(secretKey));
    expect(lines).toEqual([`::add-mask::${secretKey}`]);
    expect(sealed.main.stderr).not.toContain(secretKey);
    expect(sealed.main.stdout).toMatch(/restore test passed/);

    const downloaded = join(sealed.dir, 'downloaded');
    await withArtifactEnv(() =>
      new DefaultArtifactClient().downloadArtifact(Number(sealed.main.outputs['artifact-id']), {
        path: downloaded,
      }),
    );
    const manifest = JSON.parse(
      readFileSync(join(downloaded, 'manifest.json'), 'utf8'),
    ) as Manifest;
    expect(manifest.age?.recipients).toEqual([{ type: 'X25519', fingerprint: recipient }]);
    expect(manifest.restoreTest?.result).toBe('passed');
    const without = await runToolCli('verify', [downloaded], { secrets: [] });
    expect(without.exitCode, without.stdout).toBe(3);
    const withKey = await runToolCli('verify', [downloaded], {
      secrets: [secretKey],
      env: { OWNCLOUD_BACKUP_IDENTITY: `${secretKey}\n` },
    });
    expect(withKey.exitCode, withKey.stdout).toBe(0);
    expect(withKey.leaks).toEqual([]);
  });
});
