// Names of what a backup writes, dated as ownCloud's documentation names its dumps
// (`owncloud-dbbackup_YYYYMMDD.bak`). Dates are UTC.
import type { Compression } from './settings.ts';

const SUFFIX: Record<Compression, string> = { zstd: '.zst', gzip: '.gz' };

function stamp(date: Date): { day: string; time: string } {
  const iso = date.toISOString(); // 2026-11-26T09:59:00.000Z
  return { day: iso.slice(0, 10).replaceAll('-', ''), time: iso.slice(11, 19).replaceAll(':', '') };
}

/** The backup directory (and default artifact name): `owncloud-backup-YYYYMMDD-HHMMSS`. */
export function backupName(date: Date): string {
  const { day, time } = stamp(date);
  return `owncloud-backup-${day}-${time}`;
}

/** Whether a name is one backupName() makes: how the default backup artifacts are found again. */
export function isBackupName(name: string): boolean {
  return /^owncloud-backup-\d{8}-\d{6}$/.test(name);
}

/**
 * When the backup a name of backupName()'s was made (UTC), or undefined when the name is
 * not one (or holds no real date and time, such as a 13th month).
 */
export function backupTime(name: string): Date | undefined {
  const match = /^owncloud-backup-(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})$/.exec(name);
  if (!match) return undefined;
  const [year, month, day, hour, minute, second] = match.slice(1).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const time = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  // Date.UTC rolls 2026-13-01 over into 2027: only a name that comes back the same is a date.
  return backupName(time) === name ? time : undefined;
}

export function dumpFileName(date: Date, compression: Compression): string {
  return `owncloud-dbbackup_${stamp(date).day}.bak${SUFFIX[compression]}`;
}

export function filesArchiveName(date: Date, compression: Compression): string {
  return `owncloud-files_${stamp(date).day}.tar${SUFFIX[compression]}`;
}

/**
 * What changed while the base archive was read, read inside the maintenance window (GNU
 * tar level 1): `owncloud-files-delta_YYYYMMDD.tar.zst`, extracted after the base archive.
 */
export function filesDeltaArchiveName(date: Date, compression: Compression): string {
  return `owncloud-files-delta_${stamp(date).day}.tar${SUFFIX[compression]}`;
}

/**
 * The index of the encrypted files' file cache entries (JSON lines), in a backup of an
 * instance with server-side encryption: `owncloud-encryption-index_YYYYMMDD.jsonl.zst`.
 */
export function encryptionIndexName(date: Date, compression: Compression): string {
  return `owncloud-encryption-index_${stamp(date).day}.jsonl${SUFFIX[compression]}`;
}

export const MANIFEST_NAME = 'manifest.json';
export const CHECKSUMS_NAME = 'SHA256SUMS';
/** Suffix of a backup directory still being written: never taken for a finished backup. */
export const INCOMPLETE_SUFFIX = '.incomplete';
