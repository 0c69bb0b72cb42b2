// What both kinds of restore do before they change anything: the backup verified byte for
// byte, root on the host, and preflight failures that say nothing was changed.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BackupError, InputError } from '../errors.ts';
import { reached, type Host } from '../host/host.ts';
import { stderrTail } from '../host/process.ts';
import { archiveFile, type Manifest } from '../manifest.ts';
import type { ArchiveFile } from './compress.ts';
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
