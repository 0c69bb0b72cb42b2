// The artifact destination against the local artifact service with the real client: a
// backup goes up as one tar streamed through a FIFO (no copy on disk) and comes back as
// the same files with the same modes, checked against the digest the service recorded;
// artifacts of the earlier form (a zip) still come back; damaged bytes are refused.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DefaultArtifactClient } from '@actions/artifact';
import type * as DestinationModule from '../../src/destination/artifact.ts';
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

/** A directory shaped like a finished backup, with the modes the backup gives its files. */
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

/** What the restore reads of each file: its bytes and its permission bits. */
function contents(dir: string): Record<string, { sha256: string; mode: string }> {
  return Object.fromEntries(
    readdirSync(dir)
      .sort()
      .map((name) => [
        name,
        {
          sha256: sha256(join(dir, name)),
          mode: (statSync(join(dir, name)).mode & 0o7777).toString(8),
        },
      ]),
  );
}

function uploadLeftovers(): string[] {
  return readdirSync(tmpdir()).filter((name) => name.startsWith('owncloud-backup-upload-'));
}

describe('the artifact destination', () => {
  it('uploads the backup as one tar that downloads to the same files and modes, digest checked', async () => {
    const dir = backupDirectory();
    const name = `owncloud-backup-20260101-00000${counter}`;
    const leftoversBefore = uploadLeftovers();
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
    // The FIFO's directory is gone again.
    expect(uploadLeftovers()).toEqual(leftoversBefore);

    // What is stored is a plain tar, manifest first, whose digest is the recorded one.
    const raw = join(scratch.path, `raw-${counter++}`);
    await new DefaultArtifactClient().downloadArtifact(stored.id, { path: raw });
    expect(readdirSync(raw)).toEqual([name]);
    expect(sha256(join(raw, name))).toBe(stored.digest);
    expect(statSync(join(raw, name)).size).toBe(stored.size);
    expect(execFileSync('tar', ['-tf', join(raw, name)], { encoding: 'utf8' }).split('\n')).toEqual(
      [
        'manifest.json',
        'SHA256SUMS',
        'owncloud-dbbackup_20260101.bak.zst',
        'owncloud-files-delta_20260101.tar.zst',
        'owncloud-files_20260101.tar.zst',
        '',
      ],
    );

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

  it('still downloads a backup artifact of the earlier form, a zip of the files', async () => {
    const dir = backupDirectory();
    const name = `owncloud-backup-20260101-00001${counter}`;
    // As earlier versions uploaded it.
    const files = readdirSync(dir).map((file) => join(dir, file));
    const zip = await new DefaultArtifactClient().uploadArtifact(name, files, dir, {
      compressionLevel: 0,
    });

    const into = join(scratch.path, `download-${counter++}`);
    const downloaded = await destination.downloadBackupArtifact({ name }, into);
    expect(downloaded.directory).toBe(into);
    expect(downloaded.digestChecked).toBe(true);
    expect(downloaded.artifact.digest).toBe(zip.digest);
    const bytes = (d: string) =>
      Object.fromEntries(Object.entries(contents(d)).map(([file, c]) => [file, c.sha256]));
    expect(bytes(into)).toEqual(bytes(dir));
  });

  it('keeps the zip form for a name ending in .zip, which a raw file could not have', async () => {
    const dir = backupDirectory();
    const name = `nightly-${counter}.zip`;
    const stored = await destination.uploadBackupArtifact(dir, name, 0);
    const raw = join(scratch.path, `raw-${counter++}`);
    await new DefaultArtifactClient().downloadArtifact(stored.id, { path: raw });
    // The client unpacked a zip: the files themselves, not one file.
    expect(readdirSync(raw).sort()).toEqual(readdirSync(dir).sort());

    const into = join(scratch.path, `download-${counter++}`);
    const downloaded = await destination.downloadBackupArtifact({ name }, into);
    expect(readdirSync(downloaded.directory).sort()).toEqual(readdirSync(dir).sort());
  });

  it('refuses a download whose bytes are not those recorded at upload, and leaves nothing', async () => {
    const name = `owncloud-backup-20260101-00002${counter}`;
    const other = `owncloud-backup-20260101-00003${counter}`;
    const stored = await destination.uploadBackupArtifact(backupDirectory(), name, 0);
    await destination.uploadBackupArtifact(backupDirectory(), other, 0);
    await service.replaceContent(name, other);

    const into = join(scratch.path, `download-${counter++}`);
    await expect(destination.downloadBackupArtifact({ name }, into)).rejects.toThrow(
      `The artifact '${name}' (id ${stored.id}, this workflow run) is damaged: the downloaded bytes do not have the digest recorded when it was uploaded (sha256:${stored.digest}). Nothing was restored.`,
    );
    expect(existsSync(into)).toBe(false);
  });

  it('says a name is taken in the run, without waiting on the pipe nobody reads', async () => {
    const dir = backupDirectory();
    const name = `taken ${counter}`;
    await destination.uploadBackupArtifact(dir, name, 0);
    await expect(destination.uploadBackupArtifact(dir, name, 0)).rejects.toThrow(
      new Error(
        `An artifact named '${name}' exists already in this run: set a unique artifact-name.`,
      ),
    );
    expect(service.artifacts().filter((a) => a.name === name)).toHaveLength(1);
  });

  it('deletes what went up when the tar could not be written, and says why', async () => {
    // No perl on PATH: the writer never opens the FIFO, so the client reads an empty file.
    const bin = join(scratch.path, `bin-${counter++}`);
    mkdirSync(bin);
    for (const tool of ['sh', 'tar', 'mkfifo'])
      symlinkSync(
        execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim(),
        join(bin, tool),
      );
    const name = `owncloud-backup-20260101-00004${counter}`;
    const path = process.env.PATH;
    process.env.PATH = bin;
    try {
      await expect(destination.uploadBackupArtifact(backupDirectory(), name, 0)).rejects.toThrow(
        /^Packing .* for the artifact 'owncloud-backup-20260101-\d+' failed \(tar exit 127: .*perl.*\); the artifact is incomplete and it was deleted\.$/,
      );
    } finally {
      process.env.PATH = path;
    }
    expect(service.artifacts().filter((a) => a.name === name)).toEqual([]);
  });
});
