// Packs the staged files into one compressed tar: tar keeps what zip loses (numeric owners,
// modes, ACLs, xattrs, hard links, empty directories, any byte in a name).
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BackupError } from '../errors.ts';
import { stderrTail, streamProcess } from '../host/process.ts';
import type { RunnerPrivilege } from '../host/runner.ts';
import type { Compression } from '../settings.ts';
import { compressorCommand, writeHashed, type WrittenFile } from './compress.ts';
import { LAYOUT } from './files.ts';

/** tar options that create (and, for a restore, extract) everything a backup must keep. */
export const TAR_METADATA_FLAGS = ['--numeric-owner', '--acls', '--xattrs', '--xattrs-include=*'];

export function tarCreateCommand(
  stagingDir: string,
  members: string[],
  compression: Compression,
): string[] {
  return [
    'tar',
    '--create',
    '--file=-',
    // tar runs the compressor itself: the data crosses no pipe through this process twice.
    `--use-compress-program=${compressorCommand(compression)}`,
    `--directory=${stagingDir}`,
    '--format=posix',
    // atime/ctime records change on every read and say nothing a restore needs.
    '--pax-option=delete=atime,delete=ctime',
    '--sort=name',
    ...TAR_METADATA_FLAGS,
    '--',
    ...members,
  ];
}

export async function archiveFiles(options: {
  stagingDir: string;
  compression: Compression;
  path: string;
  signal: AbortSignal;
  privilege: RunnerPrivilege;
}): Promise<WrittenFile & { members: string[] }> {
  const members = Object.values(LAYOUT).filter((m) => existsSync(join(options.stagingDir, m)));
  const tar = streamProcess(
    [
      ...options.privilege.prefix,
      ...tarCreateCommand(options.stagingDir, members, options.compression),
    ],
    {
      signal: options.signal,
    },
  );
  try {
    const [written, result] = await Promise.all([writeHashed(tar.stdout, options.path), tar.done]);
    if (result.exitCode !== 0)
      throw new BackupError(
        `Archiving the files failed (tar exit ${result.exitCode}): ${stderrTail(result.stderr)}`,
      );
    return { ...written, members };
  } catch (error) {
    tar.kill();
    rmSync(options.path, { force: true });
    throw error;
  }
}
