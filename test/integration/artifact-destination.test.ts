// The artifact destination against the local artifact service with the real client: a
// backup goes up as one zip of stored entries, streamed from its files, and comes back as
// the same files, checked against the digest the service recorded; a zip holding the
// backup in one directory comes back too; damaged bytes and a taken name are refused.
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { DefaultArtifactClient } from '@actions/artifact';
import type * as DestinationModule from '../../src/destination/artifact.ts';
import { BackupError } from '../../src/errors.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startArtifactService, type ArtifactService } from '../harness/artifact-service.ts';
import { makeScratchDir } from '../harness/scratch.ts';

type Destination = typeof DestinationModule;

const MiB = 1024 * 1024;
const scratch = makeScratchDir('artifact-destination-test');
let service: ArtifactService;
let destination: Destination;
const saved: [string, string | undefined][] = [];

beforeAll(async () => {
  service = await startArtifactService();
  for (const [key, value] of Object.entries(service.env)) {
    saved.push([key, process.env[key]]);
    process.env[key] = value;
  }
  // Loaded with the service's environment in place (the client reads it when loaded).
  destination = await import('../../src/destination/artifact.ts');
});

afterAll(async () => {
  for (const [key, value] of saved)
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  await service?.stop();
  scratch.remove();
});

let counter = 0;

/** A directory shaped like a finished backup (the zip keeps no modes: the restore reads them). */
function backupDirectory(): string {
  const dir = join(scratch.path, `backup-${counter++}`);
  mkdirSync(dir);
  const files: [string, Buffer, number][] = [
    ['owncloud-files_20260101.tar.zst', randomBytes(9 * MiB + 123), 0o600],
    ['owncloud-files-delta_20260101.tar.zst', randomBytes(4096), 0o600],
    ['owncloud-dbbackup_20260101.bak.zst', randomBytes(MiB + 7), 0o640],
    ['manifest.json', Buffer.from(JSON.stringify({ name: `backup ${counter}` })), 0o644],
    ['SHA256SUMS', Buffer.from(`${'0'.repeat(64)}  manifest.json\n`), 0o644],
  ];
  for (const [name, content, mode] of files) {
    writeFileSync(join(dir, name), content);
    chmodSync(join(dir, name), mode);
  }
  return dir;
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** What the restore reads of each file: its bytes (it needs to read it, as this user). */
function contents(dir: string): Record<string, { sha256: string; readable: boolean }> {
  return Object.fromEntries(
    readdirSync(dir)
      .sort()
      .map((name) => {
        const stats = statSync(join(dir, name));
        return [
          name,
          { sha256: sha256(join(dir, name)), readable: stats.isFile() && (stats.mode & 0o400) > 0 },
        ];
      }),
  );
}

describe('the artifact destination', () => {
  it('uploads the backup as one artifact that downloads to the same files, digest checked', async () => {
    const dir = backupDirectory();
    const name = `owncloud-backup-20260101-00000${counter}`;
    const stored = await destination.uploadBackupArtifact(dir, name, 5);

    // One artifact, under the name asked for, as the service recorded it.
    const recorded = service.artifacts().filter((a) => a.name === name);
    expect(recorded).toEqual([
      expect.objectContaining({ id: stored.id, size: stored.size, digest: stored.digest }),
    ]);
    expect(recorded[0]!.retentionDays).toBe(5);
    expect(stored.url).toBe(
      `https://github.com/${service.env.GITHUB_REPOSITORY}/actions/runs/${service.env.GITHUB_RUN_ID}/artifacts/${stored.id}`,
    );
    // Stored, not compressed: the archives are compressed already.
    const total = readdirSync(dir).reduce((sum, file) => sum + statSync(join(dir, file)).size, 0);
    expect(stored.size).toBeGreaterThan(total);
    expect(stored.size).toBeLessThan(total + 4096);

    const into = join(scratch.path, `download-${counter++}`);
    const downloaded = await destination.downloadBackupArtifact({ name }, into);
    expect(downloaded.directory).toBe(into);
    expect(downloaded.digestChecked).toBe(true);
    expect(downloaded.artifact).toMatchObject({
      name,
      id: stored.id,
      size: stored.size,
      digest: stored.digest,
    });
    expect(contents(into)).toEqual(contents(dir));
  });

  it('finds the backup in the one directory of a zip that holds it there', async () => {
    const dir = backupDirectory();
    const name = `owncloud-backup-20260101-00001${counter}`;
    // As actions/upload-artifact makes it from the directory's parent.
    const files = readdirSync(dir).map((file) => join(dir, file));
    await new DefaultArtifactClient().uploadArtifact(name, files, scratch.path, {
      compressionLevel: 0,
    });

    const into = join(scratch.path, `download-${counter++}`);
    const downloaded = await destination.downloadBackupArtifact({ name }, into);
    expect(downloaded.directory).toBe(join(into, basename(dir)));
    expect(downloaded.digestChecked).toBe(true);
    expect(contents(downloaded.directory)).toEqual(contents(dir));
  });

  it('refuses a download whose bytes are not those recorded at upload, and leaves nothing', async () => {
    const name = `owncloud-backup-20260101-00002${counter}`;
    const other = `owncloud-backup-20260101-00003${counter}`;
    const stored = await destination.uploadBackupArtifact(backupDirectory(), name, 0);
    await destination.uploadBackupArtifact(backupDirectory(), other, 0);
    await service.replaceContent(name, other);

    const into = join(scratch.path, `download-${counter++}`);
    await expect(destination.downloadBackupArtifact({ name }, into)).rejects.toThrow(
      new BackupError(
        `The artifact '${name}' (id ${stored.id}, this workflow run) is damaged: the downloaded bytes do not have the digest recorded when it was uploaded (sha256:${stored.digest}). Nothing was restored.`,
      ),
    );
    expect(existsSync(into)).toBe(false);
  });

  it('says a name is taken in the run', async () => {
    const dir = backupDirectory();
    const name = `taken ${counter}`;
    await destination.uploadBackupArtifact(dir, name, 0);
    await expect(destination.uploadBackupArtifact(dir, name, 0)).rejects.toThrow(
      new BackupError(
        `An artifact named '${name}' exists already in this run: set a unique artifact-name.`,
      ),
    );
    expect(service.artifacts().filter((a) => a.name === name)).toHaveLength(1);
  });
});
