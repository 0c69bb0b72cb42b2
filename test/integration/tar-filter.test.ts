// TarFilter against GNU tar itself: an archive with long names, hostile names, pax ACL and
// xattr headers, hard links, a sparse file, symlinks and empty directories, cut down to some
// members here, extracts to exactly what tar extracts from the whole archive for the same
// members; and what it leaves out is not sent.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync, linkSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { makeScratchDir } from '../harness/scratch.ts';
import { requireTool } from '../harness/tools.ts';
import { TarFilter } from '../../src/steps/tar-filter.ts';
import { paxPath, tarNumber } from '../../src/steps/tar-scan.ts';
import { diffTrees, snapshotTree } from '../support/tree.ts';

const scratch = makeScratchDir('tar-filter');
afterAll(() => scratch.remove());

async function filtered(archive: Buffer, members: string[]): Promise<Buffer> {
  const filter = new TarFilter(members);
  const chunks: Buffer[] = [];
  // Odd chunk sizes: headers and data split anywhere.
  const pieces: Buffer[] = [];
  for (let at = 0; at < archive.length; at += 777) pieces.push(archive.subarray(at, at + 777));
  await new Promise<void>((resolve, reject) => {
    Readable.from(pieces)
      .pipe(filter)
      .on('data', (c: Buffer) => chunks.push(c))
      .on('end', resolve)
      .on('error', reject);
  });
  return Buffer.concat(chunks);
}

describe('TarFilter', () => {
  it.each(['gnu', 'posix'])(
    'keeps exactly the chosen members, byte for byte, with their extended headers (%s format)',
    async (format) => {
      const src = join(scratch.path, `src-${format}`);
      const long = `deep/${'a-very-long-directory-name-'.repeat(5)}/${'and-a-long-file-name-'.repeat(6)}.txt`;
      const files: Record<string, string | Buffer> = {
        'data/alice/files/Docs/a.txt': 'a\n',
        'data/alice/files/Docs/Ünï "q" \\ $(x).txt': 'hostile\n',
        [`data/alice/files/Docs/${long}`]: 'long\n',
        'data/alice/files/Other/b.txt': 'b\n'.repeat(5000),
        'data/alice/files_versions/v1': 'version\n',
        'data/bob/files/c.txt': 'c\n',
      };
      for (const [path, content] of Object.entries(files)) {
        mkdirSync(join(src, path, '..'), { recursive: true });
        writeFileSync(join(src, path), content);
      }
      mkdirSync(join(src, 'data/alice/files/Docs/empty'), { recursive: true });
      symlinkSync('a.txt', join(src, 'data/alice/files/Docs/link'));
      linkSync(join(src, 'data/alice/files_versions/v1'), join(src, 'data/alice/files/Docs/hard'));
      execFileSync(requireTool('setfacl'), [
        '-m',
        'u:nobody:r--',
        join(src, 'data/alice/files/Docs/a.txt'),
      ]);
      execFileSync(requireTool('setfattr'), [
        '-n',
        'user.k',
        '-v',
        'v',
        join(src, 'data/alice/files/Docs/a.txt'),
      ]);
      // A sparse file: a hole, then data.
      execFileSync('truncate', ['-s', '4M', join(src, 'data/alice/files/Docs/sparse')]);
      execFileSync('sh', [
        '-c',
        'printf end >> "$1"',
        'sh',
        join(src, 'data/alice/files/Docs/sparse'),
      ]);
      chmodSync(join(src, 'data/alice/files/Docs/a.txt'), 0o640);
      const archive = execFileSync(
        'tar',
        [
          '--create',
          '--file=-',
          '--numeric-owner',
          '--acls',
          '--xattrs',
          '--xattrs-include=*',
          '--sparse',
          '--directory',
          src,
          'data',
        ],
        { maxBuffer: 64 * 1024 * 1024 },
      );
      // The hard link's first copy (versions) comes before or after the link: both are chosen.
      const members = ['data/alice/files/Docs', 'data/alice/files_versions/v1'];
      const cut = await filtered(archive, members);
      expect(cut.length).toBeLessThan(archive.length);
      expect(cut.length % 512).toBe(0);
      const extract = (dir: string, input: Buffer, args: string[]) => {
        mkdirSync(dir, { recursive: true });
        execFileSync(
          'tar',
          [
            '--extract',
            '--file=-',
            '--numeric-owner',
            '--acls',
            '--xattrs',
            '--xattrs-include=*',
            '--same-permissions',
            '--same-owner',
            '--directory',
            dir,
            '--no-wildcards',
            '--',
            ...args,
          ],
          { input, maxBuffer: 64 * 1024 * 1024 },
        );
      };
      extract(join(scratch.path, `whole-${format}`), archive, members);
      extract(join(scratch.path, `cut-${format}`), cut, members);
      const whole = await snapshotTree(join(scratch.path, `whole-${format}`));
      const fromCut = await snapshotTree(join(scratch.path, `cut-${format}`));
      expect(diffTrees(whole, fromCut)).toEqual([]);
      expect(whole.get(`data/alice/files/Docs/${long}`)?.type).toBe('file');
      expect(whole.get('data/alice/files/Docs/a.txt')?.acl).toMatch(/user:65534:r--/);
      expect(whole.get('data/alice/files/Docs/a.txt')?.xattrs).toMatchObject({
        'user.k': expect.any(String),
      });
      expect(whole.get('data/alice/files/Docs/hard')?.hardLinkGroup).toBeDefined();
      expect(whole.get('data/alice/files/Docs/sparse')?.size).toBe(4 * 1024 * 1024 + 3);
      // Nothing else is in the cut archive.
      const listed = execFileSync('tar', ['--list', '--file=-'], { input: cut, encoding: 'utf8' })
        .split('\n')
        .filter(Boolean);
      expect(
        listed.every((n) => members.some((m) => n === m || n.startsWith(`${m}/`) || n === `${m}/`)),
      ).toBe(true);
      expect(
        readFileSync(
          join(scratch.path, `cut-${format}`, 'data/alice/files/Docs/Ünï "q" \\ $(x).txt'),
          'utf8',
        ),
      ).toBe('hostile\n');
    },
  );

  it('fails on an archive cut short (no end-of-archive marker)', async () => {
    const src = join(scratch.path, 'short');
    mkdirSync(join(src, 'd'), { recursive: true });
    writeFileSync(join(src, 'd', 'f'), 'x'.repeat(5000));
    const archive = execFileSync('tar', ['--create', '--file=-', '--directory', src, 'd']);
    await expect(filtered(archive.subarray(0, 2048), ['d'])).rejects.toThrow(/end-of-archive/);
  });

  it('reads tar numbers and pax paths', () => {
    expect(tarNumber(Buffer.from('00000001750\0', 'latin1'))).toBe(1000);
    expect(tarNumber(Buffer.from([0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]))).toBe(2 ** 32);
    expect(paxPath(Buffer.from('11 mtime=1\n18 path=a/b c.txt\n'))).toBe('a/b c.txt');
  });
});
