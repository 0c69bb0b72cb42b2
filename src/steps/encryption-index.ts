// The backup's index of encrypted files (their file cache values at backup time), read back
// for a restore of single paths.
import { join } from 'node:path';
import { BackupError } from '../errors.ts';
import { runProcess, stderrTail } from '../host/process.ts';
import type { Manifest } from '../manifest.ts';

export interface EncryptedFile {
  /** The storage's string id, e.g. `home::alice`. */
  storage: string;
  /** The path in the storage, e.g. `files/Documents/report.odt`. */
  path: string;
  encrypted: number;
  size: number;
  unencryptedSize: number;
}

/** The index's entries; none when the backup has no index. */
export async function readEncryptionIndex(
  directory: string,
  manifest: Manifest,
): Promise<EncryptedFile[]> {
  const name = manifest.encryption?.index?.name;
  if (!name) return [];
  const archive = manifest.archives.find((a) => a.name === name);
  const path = join(directory, name);
  const result = await runProcess(
    archive?.compression === 'gzip'
      ? ['gzip', '-dc', '--', path]
      : ['zstd', '-dc', '-q', '--', path],
  );
  if (result.exitCode !== 0)
    throw new BackupError(
      `Reading ${path} failed: ${stderrTail(result.stderr) || `exit ${result.exitCode}`}`,
    );
  return result.stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const row = JSON.parse(line) as Record<string, unknown>;
      return {
        storage: String(row.storage),
        path: String(row.path),
        encrypted: Number(row.encrypted),
        size: Number(row.size),
        unencryptedSize: Number(row.unencrypted_size),
      };
    });
}
