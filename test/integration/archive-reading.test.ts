// Reading an archive's content into tar (listings, the restore test, an encrypted config
// read): a tar that stopped at its end-of-archive marker would close the pipe while the zero
// padding behind it is still on its way, and the decompressor (and age) would die of SIGPIPE
// or a reset connection: a complete read reported as a failed one. tar reads to the end; a
// damaged archive still fails.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, truncateSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeScratchDir } from '../harness/scratch.ts';
import { listArchive } from '../../src/steps/archive-listing.ts';
import type { ArchiveFile } from '../../src/steps/compress.ts';

const scratch = makeScratchDir('archive-reading');
afterAll(() => scratch.remove());

const NAMES = ['data/alice/files/a.txt', 'data/alice/files/b.txt'];

/**
 * A tar archive of two small files followed by 4 MiB of zeros after its end-of-archive
 * marker: far more than a pipe holds, so the decompressor is certain to be writing when
 * tar, done at the marker, closes the pipe.
 */
function archiveWithLongPadding(name: string): string {
  const src = join(scratch.path, `${name}-src`);
  for (const member of NAMES) {
    mkdirSync(join(src, member, '..'), { recursive: true });
    writeFileSync(join(src, member), `${member}\n`);
  }
  const tar = join(scratch.path, `${name}.tar`);
  execFileSync('tar', ['--create', `--file=${tar}`, `--directory=${src}`, ...NAMES]);
  writeFileSync(tar, Buffer.concat([readFileSync(tar), Buffer.alloc(4 << 20)]));
  execFileSync('zstd', ['-q', '-f', tar, '-o', `${tar}.zst`]);
  return `${tar}.zst`;
}

function names(entries: { name: string }[]): string[] {
  return entries.map((e) => e.name);
}

describe('tar reading an archive through a pipe', () => {
  it('lists completely when long zero padding follows the end-of-archive marker (plain)', async () => {
    const path = archiveWithLongPadding('plain');
    // The precondition this test stands on: tar leaves the pipe before its end.
    const status = execFileSync(
      'bash',
      [
        '-c',
        'zstd -dc -- "$1" | tar --list --file=- >/dev/null; echo "${PIPESTATUS[0]}"',
        '_',
        path,
      ],
      { encoding: 'utf8' },
    ).trim();
    expect(status).toBe('141');
    const file: ArchiveFile = { path, compression: 'zstd' };
    for (let round = 0; round < 3; round++)
      expect(names(await listArchive(file, () => true))).toEqual(NAMES);
  });

  it('lists completely when long zero padding follows the end-of-archive marker (encrypted)', async () => {
    const plain = archiveWithLongPadding('encrypted');
    const key = join(scratch.path, 'age.key');
    execFileSync('age-keygen', ['-o', key], { stdio: 'ignore' });
    const recipient = execFileSync('age-keygen', ['-y', key], { encoding: 'utf8' }).trim();
    execFileSync('age', ['--encrypt', '--recipient', recipient, '--output', `${plain}.age`, plain]);
    const file: ArchiveFile = {
      path: `${plain}.age`,
      compression: 'zstd',
      age: { identityFile: key },
    };
    for (let round = 0; round < 3; round++)
      expect(names(await listArchive(file, () => true))).toEqual(NAMES);
  });

  it('still fails on an archive cut short, and on content that is not tar', async () => {
    const path = archiveWithLongPadding('cut');
    truncateSync(path, Math.floor(statSync(path).size / 2));
    await expect(listArchive({ path, compression: 'zstd' }, () => true)).rejects.toThrow(
      /Listing .*cut\.tar\.zst failed: decompressing failed/,
    );
    const junk = join(scratch.path, 'junk.zst');
    writeFileSync(join(scratch.path, 'junk'), 'not a tar archive\n'.repeat(100));
    execFileSync('zstd', ['-q', '-f', join(scratch.path, 'junk'), '-o', junk]);
    await expect(listArchive({ path: junk, compression: 'zstd' }, () => true)).rejects.toThrow(
      /Listing .*junk\.zst failed: tar exit 2/,
    );
  });
});
