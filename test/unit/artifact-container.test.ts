// The artifact's one file: which members the tar holds, in which order, and the command
// that writes it into the FIFO the artifact client reads.
import { describe, expect, it } from 'vitest';
import { containerMembers, containerTarArgv } from '../../src/destination/artifact.ts';

describe('the artifact container', () => {
  it('puts the manifest and the checksums first, then the rest by name', () => {
    expect(
      containerMembers([
        'owncloud-files_20260101.tar.zst',
        'SHA256SUMS',
        'owncloud-dbbackup_20260101.bak.zst',
        'manifest.json',
        'owncloud-files-delta_20260101.tar.zst',
      ]),
    ).toEqual([
      'manifest.json',
      'SHA256SUMS',
      'owncloud-dbbackup_20260101.bak.zst',
      'owncloud-files-delta_20260101.tar.zst',
      'owncloud-files_20260101.tar.zst',
    ]);
    expect(containerMembers(['b', 'a'])).toEqual(['a', 'b']);
  });

  it('runs tar through the pipe writer, members after --, the FIFO as its stdout', () => {
    const argv = containerTarArgv('/tmp/backup dir', ['manifest.json', '-x'], '/tmp/p/name one');
    expect(argv.slice(0, 2)).toEqual(['perl', '-e']);
    // The FIFO is the writer's argument, then the command it becomes.
    expect(argv.slice(3, 6)).toEqual(['/tmp/p/name one', 'tar', '--create']);
    expect(argv).toContain('--file=-');
    expect(argv).toContain('--directory=/tmp/backup dir');
    expect(argv.slice(-3)).toEqual(['--', 'manifest.json', '-x']);
  });
});
