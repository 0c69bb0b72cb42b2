// manifest.json: everything a later restore needs to know, from the manifest alone. Pure.
import type { DatabaseConnection, Product } from './instance.ts';
import type { Compression, InstallType } from './settings.ts';

export const MANIFEST_FORMAT = 'owncloud-backup/1';

export interface ArchiveRecord {
  name: string;
  role: 'files' | 'database';
  compression: Compression;
  size: number;
  sha256: string;
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  tool: { name: string; version: string };
  name: string;
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  source: {
    host: string;
    transport: 'ssh' | 'local';
    installDir: string;
    dataDir: string;
    configPath: string;
    installType: InstallType;
    owner: string;
  };
  instance: { product: Product; version: string; instanceId: string; theme: string };
  database: {
    type: DatabaseConnection['type'];
    name: string;
    host?: string;
    port?: number;
    socket?: string;
    user: string;
    tablePrefix: string;
    utf8mb4: boolean;
    /** SQLite: the database file to recreate from the dump. */
    file?: string;
    dumpTool: string;
    dumpToolVersion: string;
    /** Size of the uncompressed dump. */
    dumpBytes: number;
  };
  files: {
    /** Archive member directory → where it came from on the host. */
    layout: Record<string, string>;
    /** Install-relative paths copied ('.' = the whole installation, for tarball installs). */
    installPaths: string[];
    absolutePaths: string[];
    excludePatterns: string[];
    /** Data-dir-relative files deliberately not copied (the live SQLite database). */
    leftOut: string[];
    fileCount: number;
    bytes: number;
    /** False when the runner could not keep owners (it was not root). */
    ownersKept: boolean;
  };
  maintenance: {
    managed: boolean;
    priorState: boolean;
    switchedByUs: boolean;
    enabledAt?: string;
    restoredAt?: string;
    seconds: number;
  };
  archives: ArchiveRecord[];
  restore: { files: string; database: string };
}

/** sha256sum-compatible lines, so `sha256sum -c SHA256SUMS` checks a backup by hand. */
export function checksumsText(archives: ArchiveRecord[]): string {
  return archives.map((a) => `${a.sha256}  ${a.name}\n`).join('');
}

/** Round to milliseconds, for durations people read. */
export function seconds(ms: number): number {
  return Math.round(ms) / 1000;
}
