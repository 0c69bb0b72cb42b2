// Packs the staged files into one compressed tar: tar keeps what zip loses (numeric owners,
// modes, ACLs, xattrs, hard links, empty directories, any byte in a name).
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BackupError } from '../errors.ts';
import { stderrTail, streamProcess } from '../host/process.ts';
import type { RunnerPrivilege } from '../host/runner.ts';
import type { ProgressCount, StepProgress } from '../progress.ts';
import type { Compression } from '../settings.ts';
import { compressorCommand, writeHashed, type WrittenFile } from './compress.ts';
import { LAYOUT } from './files.ts';

// tar tells its progress on stderr: a checkpoint line every 100 records (1 MiB of tar
// stream) and, at the end, --totals' "Total bytes written: N".
const RECORD_BYTES = 20 * 512;
const CHECKPOINT_RECORDS = 100;
const CHECKPOINT_MARK = 'owncloud-backup-progress';
const PROGRESS_FLAGS = [
  '--blocking-factor=20',
  `--checkpoint=${CHECKPOINT_RECORDS}`,
  `--checkpoint-action=echo=${CHECKPOINT_MARK} %u`,
  '--totals',
];

/** The tar-stream bytes a stderr line reports, if it is a progress line. */
export function parseTarProgress(line: string): ProgressCount | undefined {
  const checkpoint = new RegExp(`${CHECKPOINT_MARK} (\\d+)$`).exec(line.trim());
  if (checkpoint) return { bytes: Number(checkpoint[1]) * RECORD_BYTES };
  const totals = /^Total bytes written: (\d+)/.exec(line.trim());
  return totals ? { bytes: Number(totals[1]) } : undefined;
}

/** tar's stderr without its progress lines: what is left explains a failure. */
export function withoutTarProgress(stderr: string): string {
  return stderr
    .split('\n')
    .filter((line) => !parseTarProgress(line))
    .join('\n');
}

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
    ...PROGRESS_FLAGS,
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
  /** Told the bytes tar has packed so far. */
  progress?: StepProgress;
}): Promise<WrittenFile & { members: string[] }> {
  const members = Object.values(LAYOUT).filter((m) => existsSync(join(options.stagingDir, m)));
  // tar's stderr streams: progress lines go on, the last few others explain a failure.
  let pending = '';
  const complaints: string[] = [];
  const onStderr = (text: string) => {
    const lines = (pending + text).split('\n');
    pending = lines.pop()!;
    for (const line of lines) {
      const count = parseTarProgress(line);
      if (count) options.progress?.update(count);
      else if (line.trim() !== '') {
        complaints.push(line);
        if (complaints.length > 20) complaints.shift();
      }
    }
  };
  const tar = streamProcess(
    [
      ...options.privilege.prefix,
      ...tarCreateCommand(options.stagingDir, members, options.compression),
    ],
    { signal: options.signal, onStderr },
  );
  try {
    const [written, result] = await Promise.all([writeHashed(tar.stdout, options.path), tar.done]);
    if (result.exitCode !== 0)
      throw new BackupError(
        `Archiving the files failed (tar exit ${result.exitCode}): ${stderrTail(withoutTarProgress([...complaints, pending].join('\n')))}`,
      );
    return { ...written, members };
  } catch (error) {
    tar.kill();
    rmSync(options.path, { force: true });
    throw error;
  }
}
