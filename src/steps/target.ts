// What both kinds of restore do before they change anything: the backup verified byte for
// byte, root on the host, and preflight failures that say nothing was changed.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BackupError, InputError } from '../errors.ts';
import { reached, type Host } from '../host/host.ts';
import { stderrTail } from '../host/process.ts';
import { archiveFile, type BackupFacts, type Manifest } from '../manifest.ts';
import type { StepProgress } from '../progress.ts';
import type { ArchiveFile } from './compress.ts';
import { extractFiles } from './restore-files.ts';
import type { DumpStream } from './restore-database.ts';
import { MANIFEST_NAME } from '../naming.ts';
import type { Reporter } from '../report.ts';
import { verifyBackup } from '../verify.ts';

/** The backup, verified, and what it holds. */
export interface VerifiedBackup {
  /** The backup directory. */
  directory: string;
  manifest: Manifest;
  filesArchive: ArchiveFile;
  /** What changed inside the maintenance window: extracted after filesArchive. */
  filesDelta?: ArchiveFile;
  dumpArchive: ArchiveFile;
}

/**
 * The backup, checked byte for byte before anything on the target changes; an encrypted
 * one with the identity file given (it is refused without one).
 */
export async function verified(
  backupPath: string,
  reporter: Reporter,
  identityFile?: string,
): Promise<VerifiedBackup> {
  const checks = await verifyBackup(backupPath, undefined, identityFile);
  const unchecked = checks.filter((c) => c.unchecked);
  if (unchecked.length > 0 && checks.every((c) => c.ok || c.unchecked))
    throw new InputError(
      `The backup ${backupPath} is encrypted (age): give the identity that decrypts it (option --identity-file, environment variable OWNCLOUD_BACKUP_IDENTITY, or the action's input 'identity'). Nothing was changed on the target.`,
    );
  const failed = checks.filter((c) => !c.ok);
  if (failed.length > 0)
    throw new BackupError(
      `The backup ${backupPath} is damaged; nothing was changed on the target. ${failed.map((c) => c.what).join('; ')}`,
    );
  reporter.info(`The backup is intact (${checks.length} checks).`);
  const manifest = JSON.parse(readFileSync(join(backupPath, MANIFEST_NAME), 'utf8')) as Manifest;
  const archive = (role: 'files' | 'database') =>
    archiveFile(
      backupPath,
      manifest.archives.find((a) => a.role === role)!,
      identityFile,
    );
  const delta = manifest.archives.find((a) => a.role === 'files-delta');
  return {
    directory: backupPath,
    manifest,
    filesArchive: archive('files'),
    ...(delta ? { filesDelta: archiveFile(backupPath, delta, identityFile) } : {}),
    dumpArchive: archive('database'),
  };
}

/**
 * A backup as the whole-instance restore reads it, wherever it is kept: what it records,
 * its config files, its files put in place on the host, and its dump as a stream.
 */
export interface BackupSource {
  facts: BackupFacts;
  /** What the target host needs to take the files in, beside php, find, stat and df. */
  hostPrograms: string[];
  /** The backup's config.php and *.config.php, by name (they hold the database password). */
  configFiles: Record<string, string>;
  /** Puts the files where `members` says (member directory → target path), as root. */
  putFiles(o: {
    host: Host;
    root: string[];
    members: Record<string, string>;
    signal: AbortSignal;
    progress: StepProgress;
    /** Where the program writing the files on the host records its pid (see stepPidFile). */
    pidFile?: string;
  }): Promise<void>;
  dump: ArchiveFile | DumpStream;
  /** Bytes the files step reads, for progress (0: not known). */
  filesBytes: number;
}

/** A verified backup directory as a restore's source: its archives stream from here. */
export function directorySource(
  backup: VerifiedBackup,
  configFiles: Record<string, string>,
): BackupSource {
  const { manifest } = backup;
  const size = (role: string) => manifest.archives.find((a) => a.role === role)?.size ?? 0;
  return {
    facts: manifest,
    hostPrograms: ['tar', manifest.archives[0]!.compression],
    configFiles,
    filesBytes: size('files') + size('files-delta'),
    async putFiles(o) {
      // The base archive, then what changed inside the maintenance window over it (its
      // directories' entry lists also remove what was deleted then).
      for (const archive of [
        backup.filesArchive,
        ...(backup.filesDelta ? [backup.filesDelta] : []),
      ])
        await extractFiles({
          host: o.host,
          root: o.root,
          archive,
          layout: o.members,
          incremental: archive === backup.filesDelta,
          signal: o.signal,
          progress: o.progress,
          ...(o.pidFile ? { pidFile: o.pidFile } : {}),
        });
    },
    dump: backup.dumpArchive,
  };
}

/** argv prefix that runs a command as root on the host; needs root or passwordless sudo. */
export async function rootOn(host: Host): Promise<string[]> {
  if (host.account === 'root') return [];
  const result = reached(host, await host.run(['sudo', '-n', 'true']));
  if (result.exitCode !== 0)
    throw new BackupError(
      `A restore writes files of every owner: the SSH user ${host.account} on ${host.label} must be root or have passwordless sudo (${stderrTail(result.stderr) || 'sudo -n failed'}). Nothing was changed.`,
    );
  return ['sudo', '-n', '--'];
}

/**
 * Runs the checks before the first change: whatever fails there says that nothing changed.
 */
export async function unchanged<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (!(error instanceof BackupError || error instanceof InputError)) throw error;
    if (/nothing was changed/i.test(error.message)) throw error;
    const message = `${error.message.replace(/\.?$/, '.')} Nothing was changed on the target.`;
    throw error instanceof InputError ? new InputError(message) : new BackupError(message);
  }
}
