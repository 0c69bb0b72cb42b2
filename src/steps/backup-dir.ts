// The backup directory on the runner: checked before anything else happens, created once the
// preflight has accepted it,
// held by one run at a time, cleared of the incomplete backups that killed runs left, and,
// after a successful backup, of the complete backups the retention policy does not keep.
import {
  accessSync,
  constants,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  statfsSync,
  statSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { BackupError, describeError, InputError } from '../errors.ts';
import { runProcess } from '../host/process.ts';
import { removeTree, runnerPrivilege, type RunnerPrivilege } from '../host/runner.ts';
import { backupTime, INCOMPLETE_SUFFIX, isBackupName, MANIFEST_NAME } from '../naming.ts';
import { selectKept, type DatedBackup, type RetentionPolicy } from '../retention.ts';

/** statfs(2) magic numbers of kernel file systems that hold no files of ours. */
const PSEUDO_FILE_SYSTEMS = new Map<number, string>([
  [0x9fa0, 'proc'],
  [0x62656572, 'sysfs'],
  [0x1cd1, 'devpts'],
  [0x27e0eb, 'cgroup'],
  [0x63677270, 'cgroup2'],
  [0x64626720, 'debugfs'],
  [0x73636673, 'securityfs'],
]);

function code(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? String(error);
}

/**
 * Checks, without creating anything, that the backup directory is (or can become) a
 * writable directory: it or its nearest existing ancestor is a directory this user may
 * write. Returns the missing levels, outermost first. Errors name the input.
 */
export function checkBackupDir(path: string): string[] {
  const missing: string[] = [];
  let existing = path;
  for (;;) {
    try {
      statSync(existing);
      break;
    } catch (error) {
      if (code(error) !== 'ENOENT' && code(error) !== 'ENOTDIR')
        throw new InputError(
          `backup-dir '${path}': cannot look at '${existing}' (${code(error)}).`,
        );
      if (code(error) === 'ENOTDIR') {
        // Some level above is a file: find it for the message.
        existing = dirname(existing);
        continue;
      }
      missing.unshift(existing);
      existing = dirname(existing);
    }
  }
  if (!statSync(existing).isDirectory())
    throw new InputError(
      existing === path
        ? `backup-dir '${path}' is a file, not a directory. Choose a directory.`
        : `backup-dir '${path}': '${existing}' is a file, not a directory. Choose a directory.`,
    );
  const pseudo = PSEUDO_FILE_SYSTEMS.get(statfsSync(existing).type);
  if (pseudo)
    throw new InputError(
      `backup-dir '${path}': '${existing}' is on a pseudo file system (${pseudo}), where no backup can be written. Choose a directory on a normal file system.`,
    );
  try {
    accessSync(existing, constants.W_OK | constants.X_OK);
  } catch {
    throw new InputError(
      `backup-dir '${path}': '${existing}' is not writable by this user. Choose a directory it can write.`,
    );
  }
  return missing;
}

/**
 * Creates the backup directory's missing levels one by one from the nearest existing
 * ancestor. (A recursive mkdir where the file system answers ENOENT, as /proc does, never
 * returns.)
 */
export function createBackupDir(path: string): void {
  for (const level of checkBackupDir(path)) {
    try {
      mkdirSync(level);
    } catch (error) {
      if (code(error) === 'EEXIST' && statSync(level).isDirectory()) continue;
      throw new InputError(
        `backup-dir '${path}': cannot create '${level}' (${code(error)}). Choose a directory on a normal file system.`,
      );
    }
  }
}

/** Names a run gives its work in progress: `owncloud-backup-YYYYMMDD-HHMMSS.incomplete`. */
export function isIncompleteName(name: string): boolean {
  return (
    name.endsWith(INCOMPLETE_SUFFIX) &&
    /^owncloud-backup-\d{8}-\d{6}$/.test(name.slice(0, -INCOMPLETE_SUFFIX.length))
  );
}

/** Bytes under a tree (its files may belong to other users: measured with the runner's privilege). */
async function treeBytes(path: string, prefix: string[]): Promise<number> {
  const result = await runProcess([...prefix, 'du', '-s', '-x', '--bytes', '--', path]);
  return Number(result.stdout.split('\t')[0]) || 0;
}

/**
 * Removes an incomplete backup directory (only one: its name must say so) with its size,
 * or returns undefined when it is not there (the run finished, or removed it itself).
 */
export async function removeIncompleteBackup(
  path: string,
  known?: RunnerPrivilege,
): Promise<{ bytes: number } | undefined> {
  if (!isIncompleteName(path.split('/').pop() ?? '')) return undefined;
  try {
    if (!lstatSync(path).isDirectory()) return undefined;
  } catch {
    return undefined;
  }
  const privilege = known ?? (await runnerPrivilege());
  const bytes = await treeBytes(path, privilege.prefix);
  await removeTree(path, privilege).catch((error: unknown) => {
    throw new BackupError(`Could not remove ${path}: ${code(error)}`);
  });
  return { bytes };
}

/**
 * Removes the incomplete backups in the backup directory. Call it only while holding the
 * directory's lock: then none of them belongs to a running backup.
 */
export async function removeStaleBackups(
  backupDir: string,
  report: (path: string, bytes: number) => void,
): Promise<void> {
  const stale = readdirSync(backupDir).filter(isIncompleteName).sort();
  // Asked once (sudo -n true), not for every directory.
  const privilege = stale.length > 0 ? await runnerPrivilege() : undefined;
  for (const name of stale) {
    const path = join(backupDir, name);
    const removed = await removeIncompleteBackup(path, privilege);
    if (removed) report(path, removed.bytes);
  }
}

/**
 * The complete backups in the backup directory: directories (not symlinks) named
 * `owncloud-backup-YYYYMMDD-HHMMSS` with a real date, holding manifest.json. Anything else
 * there (other files and directories, incomplete backups) is not a backup of ours.
 */
export function completeBackups(backupDir: string): DatedBackup[] {
  const found: DatedBackup[] = [];
  for (const entry of readdirSync(backupDir, { withFileTypes: true })) {
    if (!entry.isDirectory() || !isBackupName(entry.name)) continue;
    const time = backupTime(entry.name);
    if (!time) continue;
    try {
      if (!lstatSync(join(backupDir, entry.name, MANIFEST_NAME)).isFile()) continue;
    } catch {
      continue;
    }
    found.push({ name: entry.name, time });
  }
  return found;
}

export interface RetentionOutcome {
  policy: RetentionPolicy;
  /** The backups kept, newest first. */
  kept: string[];
  /** The backups removed, with why no rule kept them. */
  removed: { name: string; reasons: string[] }[];
  /** Backups not kept that could not be removed: what remains of each, and why. */
  failed: { name: string; remains: string; error: string }[];
}

/**
 * Removes the complete backups the policy does not keep; `justWritten` (the backup this
 * run finished) stays whatever the policy says. Call it only while holding the directory's
 * lock. Each backup loses its manifest.json first, so that one whose removal fails or is cut
 * short never passes for a complete backup (and is never looked at again). A backup that
 * cannot be removed is reported and skipped; the others still go. Stops (keeping the rest)
 * once `signal` is aborted.
 */
export async function pruneBackups(
  backupDir: string,
  policy: RetentionPolicy,
  justWritten: string,
  options: {
    signal: AbortSignal;
    onRemoved: (path: string, reasons: string[]) => void;
    onFailed: (path: string, remains: string, error: string) => void;
  },
): Promise<RetentionOutcome> {
  const decision = selectKept(completeBackups(backupDir), policy, justWritten);
  const outcome: RetentionOutcome = {
    policy,
    kept: decision.keep.map((b) => b.name),
    removed: [],
    failed: [],
  };
  // Its files may belong to other users: removed with the runner's privilege, asked once.
  const privilege = decision.remove.length > 0 ? await runnerPrivilege() : undefined;
  for (const { name } of decision.remove) {
    if (options.signal.aborted) {
      outcome.kept.push(name); // not removed after all
      continue;
    }
    const path = join(backupDir, name);
    let remains = `${path} (complete, untouched)`;
    try {
      await removeTree(join(path, MANIFEST_NAME), privilege!);
      remains = `${path} (without its ${MANIFEST_NAME}: no longer taken for a backup)`;
      await removeTree(path, privilege!);
      if (existsSync(path)) throw new Error('it is still there after the removal');
      const reasons = decision.reasons.get(name) ?? [];
      outcome.removed.push({ name, reasons });
      options.onRemoved(path, reasons);
    } catch (error) {
      const message = (error as NodeJS.ErrnoException).code ?? describeError(error);
      outcome.failed.push({ name, remains, error: message });
      options.onFailed(path, remains, message);
    }
  }
  return outcome;
}
