// The real @actions/artifact client against the local artifact service (Azurite + Twirp):
// what it uploads comes back byte for byte, and the service records what GitHub would.
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DefaultArtifactClient } from '@actions/artifact';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startArtifactService } from '../harness/artifact-service.ts';
import type { ArtifactService } from '../harness/artifact-service.ts';
import { makeScratchDir } from '../harness/scratch.ts';

const MiB = 1024 * 1024;
const DAY_MS = 24 * 60 * 60 * 1000;

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Sets the service's environment for the client, returning how to put the old one back. */
function useEnvironment(env: Record<string, string>): () => void {
  const saved = Object.keys(env).map((key) => [key, process.env[key]] as const);
  Object.assign(process.env, env);
  return () => {
    for (const [key, value] of saved) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  };
}

describe('local artifact service', () => {
  let service: ArtifactService;
  let restoreEnvironment: () => void = () => {};
  const scratch = makeScratchDir('artifact-test');
  const source = join(scratch.path, 'source');
  const client = new DefaultArtifactClient();

  beforeAll(async () => {
    service = await startArtifactService();
    restoreEnvironment = useEnvironment(service.env);
    mkdirSync(join(source, 'nested'), { recursive: true });
    writeFileSync(join(source, 'data.bin'), randomBytes(20 * MiB));
    writeFileSync(join(source, 'config.php'), "<?php $CONFIG = ['instanceid' => 'oc1'];\n");
    writeFileSync(join(source, 'nested', 'notes.txt'), 'small file\n');
    writeFileSync(join(source, 'database.sql'), randomBytes(MiB + 7).toString('base64'));
  });

  afterAll(async () => {
    restoreEnvironment();
    await service?.stop();
    scratch.remove();
  });

  const zippedFiles = ['data.bin', 'config.php', join('nested', 'notes.txt')];

  it('round-trips a zipped artifact and records size, digest and retention', async () => {
    const upload = await client.uploadArtifact(
      'backup-files',
      zippedFiles.map((file) => join(source, file)),
      source,
      { compressionLevel: 0, retentionDays: 3 },
    );
    expect(upload.id).toBeGreaterThan(0);
    expect(upload.size).toBeGreaterThan(20 * MiB); // stored, not compressed

    const recorded = service.artifacts().find((a) => a.id === upload.id);
    expect(recorded).toMatchObject({
      name: 'backup-files',
      size: upload.size,
      digest: upload.digest,
      retentionDays: 3,
    });
    const expiresIn = Date.parse(recorded?.expiresAt ?? '') - Date.now();
    expect(Math.abs(expiresIn - 3 * DAY_MS)).toBeLessThan(2 * 60 * 60 * 1000); // DST slack

    const target = join(scratch.path, 'zipped');
    const download = await client.downloadArtifact(upload.id!, {
      path: target,
      expectedHash: `sha256:${upload.digest}`,
    });
    expect(download).toEqual({ downloadPath: target, digestMismatch: false });
    for (const file of zippedFiles)
      expect(sha256(join(target, file))).toBe(sha256(join(source, file)));
  });

  it('round-trips a single file uploaded with skipArchive under its own name', async () => {
    const upload = await client.uploadArtifact('ignored', [join(source, 'database.sql')], source, {
      skipArchive: true,
    });
    // The client names a skipArchive artifact after the file, whatever name it was given.
    expect(service.artifacts().find((a) => a.id === upload.id)).toMatchObject({
      name: 'database.sql',
      size: upload.size,
      digest: upload.digest,
      retentionDays: undefined,
    });
    expect(upload.digest).toBe(sha256(join(source, 'database.sql')));

    const target = join(scratch.path, 'raw');
    const download = await client.downloadArtifact(upload.id!, {
      path: target,
      expectedHash: `sha256:${upload.digest}`,
    });
    expect(download.digestMismatch).toBe(false);
    expect(readdirSync(target)).toEqual(['database.sql']);
    expect(sha256(join(target, 'database.sql'))).toBe(sha256(join(source, 'database.sql')));
  });

  it('refuses a second artifact of the same name in the run (409)', async () => {
    const files = [join(source, 'config.php')];
    await client.uploadArtifact('twice', files, source);
    await expect(client.uploadArtifact('twice', files, source)).rejects.toThrow(
      /CreateArtifact.*\(409\) Conflict: an artifact with this name already exists/,
    );
    expect(service.artifacts().filter((a) => a.name === 'twice')).toHaveLength(1);
  });

  it('reports a wrong expectedHash as digestMismatch instead of throwing', async () => {
    const { artifact } = await client.getArtifact('backup-files');
    const target = join(scratch.path, 'mismatch');
    const download = await client.downloadArtifact(artifact.id, {
      path: target,
      expectedHash: `sha256:${'0'.repeat(64)}`,
    });
    // The client still extracts everything; only the flag tells the caller not to trust it.
    expect(download.digestMismatch).toBe(true);
    expect(sha256(join(target, 'data.bin'))).toBe(sha256(join(source, 'data.bin')));
  });

  it('lists and deletes artifacts through the same service', async () => {
    const { artifacts } = await client.listArtifacts();
    expect(artifacts.map((a) => a.name).sort()).toEqual(['backup-files', 'database.sql', 'twice']);
    const backup = service.artifacts().find((a) => a.name === 'backup-files');
    expect(artifacts.find((a) => a.name === 'backup-files')?.digest).toBe(
      `sha256:${backup?.digest}`,
    );

    const { id } = await client.deleteArtifact('twice');
    expect(service.artifacts().map((a) => a.id)).not.toContain(id);
    await expect(client.getArtifact('twice')).rejects.toThrow(/Artifact not found/);
  });

  it('rejects a request that does not carry the issued runtime token', async () => {
    const url = new URL(
      'twirp/github.actions.results.api.v1.ArtifactService/ListArtifacts',
      service.env.ACTIONS_RESULTS_URL,
    );
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer forged' },
      body: '{}',
    });
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ code: 'unauthenticated' });
  });
});
