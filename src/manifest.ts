// manifest.json: everything a later restore needs to know, from the manifest alone. Pure.
import type { DatabaseConnection, Product } from './instance.ts';
import type { Compression, InstallType } from './settings.ts';
import type { AppDir } from './steps/installation.ts';
import { TAR_METADATA_FLAGS } from './steps/archive.ts';
import type { WrittenFile } from './steps/compress.ts';
import type { Instance } from './steps/discover.ts';
import { LAYOUT, type FileSet } from './steps/files.ts';
import type { MaintenanceWindow } from './steps/maintenance.ts';
import type { DumpTool } from './database/engine.ts';
import type { RestoreTestRecord } from './steps/restore-test.ts';
import { TOOL } from './tool.ts';
import { quoteArg } from './host/shell.ts';
import type { RecipientRecord } from './steps/age.ts';
import type { ArchiveFile } from './steps/compress.ts';

/**
 * How a reader opens one of the backup's archives: its path in the backup directory, and
 * for an encrypted one the identity file given for this run (undefined: none).
 */
export function archiveFile(
  directory: string,
  record: ArchiveRecord,
  identityFile: string | undefined,
): ArchiveFile {
  return {
    path: `${directory.replace(/\/+$/, '')}/${record.name}`,
    compression: record.compression,
    ...(record.encryption === 'age' ? { age: { identityFile } } : {}),
  };
}

export const MANIFEST_FORMAT = 'owncloud-backup/1';

export interface ArchiveRecord {
  name: string;
  /** encryption-index: JSON lines, one per encrypted file's file cache entry (EncryptedFileEntry). */
  role: 'files' | 'files-delta' | 'database' | 'encryption-index';
  compression: Compression;
  /** 'age': the file is an age file (named `….age`); size and sha256 are the ciphertext's. */
  encryption?: 'age';
  size: number;
  sha256: string;
}

/** The encryption of the backup's files at rest (absent: they are not encrypted). */
export interface AgeRecord {
  format: 'age-encryption.org/v1';
  /** Who can decrypt: the recipients' kinds and fingerprints (public, no secret). */
  recipients: RecipientRecord[];
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
    /** As detected (install-type auto) or given. */
    installType: Exclude<InstallType, 'auto'>;
    /** Why: what the detection found, or the input. */
    installTypeReason: string;
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
    /** Exact rows of every table with the instance's prefix, counted beside the dump. */
    rowCounts: Record<string, number>;
    /** False when maintenance mode was not used (maintenance-mode: false): counted live. */
    rowCountsInWindow: boolean;
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
    /** The directories the server loads apps from, and what of each is in the backup. */
    appDirs: AppDir[];
    /** Package installs: the server code not copied, and why. */
    serverCode?: { what: string; why: string };
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
  /** Present when every archive is encrypted to age recipients. */
  age?: AgeRecord;
  /**
   * The instance's server-side encryption, from its app config (absent in manifests of
   * earlier versions of the tool).
   */
  encryption?: EncryptionRecord;
  restore: RestoreCommands;
  /**
   * The restore test run on the runner after the backup was written (absent when it was
   * not asked for, and in manifests from before it existed).
   */
  restoreTest?: RestoreTestRecord;
}

export interface EncryptionRecord {
  /** core/encryption_enabled = 'yes'. */
  enabled: boolean;
  /** core/default_encryption_module, e.g. OC_DEFAULT_MODULE. */
  module?: string;
  /** encryption/useMasterKey = '1': master-key; otherwise per-user-key. */
  mode?: 'master-key' | 'per-user-key';
  /** encryption/masterKeyId, in master-key mode (the key pair is master_<id>.publicKey/.privateKey). */
  masterKeyId?: string;
  /**
   * The index of the encrypted files' file cache entries, taken beside the dump: the archive
   * (role encryption-index) and how many entries it holds.
   */
  index?: { name: string; files: number };
}

/** One line for logs and summaries: 'on (master key master_1a2b3c4d, OC_DEFAULT_MODULE); index of 12 encrypted files'. */
export function describeEncryption(record: EncryptionRecord): string {
  if (!record.enabled) return 'off';
  const mode =
    record.mode === 'master-key'
      ? `master key${record.masterKeyId ? ` ${record.masterKeyId}` : ''}`
      : 'a key pair per user';
  const index = record.index
    ? `; index of ${record.index.files} encrypted file${record.index.files === 1 ? '' : 's'}`
    : '';
  return `on (${mode}${record.module ? `, ${record.module}` : ''})${index}`;
}

/**
 * How to restore this backup by hand: shell commands for bash, run as root from the backup
 * directory, in this order (the README's "Check and restore" explains each step).
 */
export interface RestoreCommands {
  /** What to do before the commands (server code, the database user). */
  before: string;
  files: string;
  database: string;
  /** Owners, the data fingerprint sync clients need, maintenance mode off. */
  finish: string;
}

/**
 * What the backup deliberately does not hold, and why, for the summaries: the server code
 * of a package install (with the shipped apps), exclude patterns, the live SQLite file.
 */
export function leftOutOf(manifest: Manifest): { what: string; why?: string }[] {
  const { files } = manifest;
  const shown = (names: string[]) =>
    names.length > 6
      ? `${names.slice(0, 6).join(', ')} and ${names.length - 6} more`
      : names.join(', ');
  return [
    ...(files.serverCode ? [files.serverCode] : []),
    ...(files.appDirs ?? [])
      .filter((d) => d.shipped && d.shipped.length > 0)
      .map((d) => ({
        what: `the apps in ${d.path} that ship with the release (${shown(d.shipped!)})`,
        why: 'they come back with the reinstall',
      })),
    ...(files.excludePatterns ?? []).map((p) => ({ what: `\`${p}\`` })),
    ...(files.leftOut ?? []).slice(0, 1).map((p) => ({
      what: `\`${p}\` and its journal files`,
      why: 'the live SQLite database; the dump replaces it',
    })),
  ];
}

/** sha256sum-compatible lines, so `sha256sum -c SHA256SUMS` checks a backup by hand. */
export function checksumsText(archives: ArchiveRecord[]): string {
  return archives.map((a) => `${a.sha256}  ${a.name}\n`).join('');
}

/** Round to milliseconds, for durations people read. */
export function seconds(ms: number): number {
  return Math.round(ms) / 1000;
}

export interface ManifestInput {
  name: string;
  startedAt: Date;
  finishedAt: Date;
  /** Where the instance was: `user@host:port`, or `HOSTNAME (local)`. */
  source: string;
  transport: 'ssh' | 'local';
  instance: Instance;
  tool: DumpTool;
  fileSet: FileSet;
  stats: { files: number; bytes: number };
  maintenance: { managed: boolean; window: MaintenanceWindow; seconds: number };
  archives: { file: WrittenFile; role: ArchiveRecord['role']; compression: Compression }[];
  dumpBytes: number;
  rowCounts: Record<string, number>;
  rowCountsInWindow: boolean;
  ownersKept: boolean;
  restoreHint: string;
  /** Left out: the manifest has no encryption record (a caller that did not read it). */
  encryption?: EncryptionRecord;
  /** The age recipients every archive was encrypted to. */
  encryptedTo?: RecipientRecord[];
  restoreTest?: RestoreTestRecord;
}

/**
 * What a restore needs to know of a backup, whichever destination holds it (a backup
 * directory's manifest.json, a restic repository's manifest snapshot).
 */
export interface BackupFacts {
  name: string;
  startedAt: string;
  source: Manifest['source'];
  instance: Manifest['instance'];
  database: Manifest['database'];
  files: Pick<
    Manifest['files'],
    'layout' | 'installPaths' | 'absolutePaths' | 'fileCount' | 'bytes'
  >;
  maintenance: Manifest['maintenance'];
}

/** The parts of a manifest that describe the instance and the run, for every destination. */
export function instanceRecords(
  input: Pick<
    ManifestInput,
    | 'source'
    | 'transport'
    | 'instance'
    | 'tool'
    | 'fileSet'
    | 'maintenance'
    | 'dumpBytes'
    | 'rowCounts'
    | 'rowCountsInWindow'
  >,
): Pick<Manifest, 'source' | 'instance' | 'database' | 'maintenance'> & {
  files: Pick<Manifest['files'], 'layout' | 'installPaths' | 'absolutePaths'>;
} {
  const { instance, fileSet, maintenance } = input;
  const db = instance.database;
  return {
    source: {
      host: input.source,
      transport: input.transport,
      installDir: instance.installDir,
      dataDir: instance.dataDir,
      configPath: instance.configPath,
      installType: fileSet.install.type,
      installTypeReason: fileSet.install.reason,
      owner: instance.owner,
    },
    instance: {
      product: instance.product,
      version: instance.version,
      instanceId: instance.instanceId,
      theme: instance.theme,
    },
    database: {
      type: db.type,
      name: db.name,
      ...(db.host ? { host: db.host } : {}),
      ...(db.port !== undefined ? { port: db.port } : {}),
      ...(db.socket ? { socket: db.socket } : {}),
      user: db.user,
      tablePrefix: db.tablePrefix,
      utf8mb4: db.utf8mb4,
      ...(db.file ? { file: db.file } : {}),
      dumpTool: input.tool.program,
      dumpToolVersion: input.tool.version,
      dumpBytes: input.dumpBytes,
      rowCounts: input.rowCounts,
      rowCountsInWindow: input.rowCountsInWindow,
    },
    files: {
      layout: {
        [LAYOUT.install]: instance.installDir,
        [LAYOUT.data]: instance.dataDir,
        ...(fileSet.absolutePaths.length > 0 ? { [LAYOUT.absolute]: '/' } : {}),
      },
      installPaths: fileSet.installPaths,
      absolutePaths: fileSet.absolutePaths,
    },
    maintenance: {
      managed: maintenance.managed,
      priorState: maintenance.window.priorState,
      switchedByUs: maintenance.window.switchedByUs,
      ...(maintenance.window.enabledAt
        ? { enabledAt: maintenance.window.enabledAt.toISOString() }
        : {}),
      ...(maintenance.window.restoredAt
        ? { restoredAt: maintenance.window.restoredAt.toISOString() }
        : {}),
      seconds: seconds(maintenance.seconds * 1000),
    },
  };
}

/** Assembles the manifest of a finished backup from what the run learned. */
export function buildManifest(input: ManifestInput): Manifest {
  const { fileSet } = input;
  const compression = input.archives[0]?.compression ?? 'zstd';
  const records = instanceRecords(input);
  return {
    format: MANIFEST_FORMAT,
    tool: TOOL,
    name: input.name,
    startedAt: input.startedAt.toISOString(),
    finishedAt: input.finishedAt.toISOString(),
    durationSeconds: seconds(input.finishedAt.getTime() - input.startedAt.getTime()),
    source: records.source,
    instance: records.instance,
    database: records.database,
    files: {
      ...records.files,
      excludePatterns: fileSet.exclude,
      leftOut: fileSet.dataExclude,
      appDirs: fileSet.appDirs,
      ...(fileSet.serverCode ? { serverCode: fileSet.serverCode } : {}),
      fileCount: input.stats.files,
      bytes: input.stats.bytes,
      ownersKept: input.ownersKept,
    },
    maintenance: records.maintenance,
    archives: input.archives.map(({ file, role, compression: method }) => ({
      name: file.path.split('/').pop()!,
      role,
      compression: method,
      ...(input.encryptedTo ? { encryption: 'age' as const } : {}),
      size: file.size,
      sha256: file.sha256,
    })),
    ...(input.encryptedTo
      ? { age: { format: 'age-encryption.org/v1' as const, recipients: input.encryptedTo } }
      : {}),
    ...(input.encryption ? { encryption: input.encryption } : {}),
    restore: restoreCommands(input, compression),
    ...(input.restoreTest ? { restoreTest: input.restoreTest } : {}),
  };
}

/** Escapes text for use inside a double-quoted shell string. */
function inDoubleQuotes(text: string): string {
  return text.replace(/[\\"$`]/g, '\\$&');
}

/**
 * The restore commands with this backup's names and paths filled in; the engine's part comes
 * from its restoreHint, whose {placeholders} are replaced here.
 */
export function restoreCommands(input: ManifestInput, compression: Compression): RestoreCommands {
  const { instance, fileSet } = input;
  const db = instance.database;
  const archive = (role: ArchiveRecord['role']) =>
    quoteArg(
      input.archives
        .find((a) => a.role === role)!
        .file.path.split('/')
        .pop()!,
    );
  const installDir = quoteArg(instance.installDir);
  const dataDir = quoteArg(instance.dataDir);
  const unpacked = quoteArg(`${instance.dataDir}.restore`);
  const owner = quoteArg(instance.owner);
  const occ = `sudo -u ${owner} php ${quoteArg(`${instance.installDir}/occ`)}`;
  const values: Record<string, string> = {
    decompress: compression,
    dump: archive('database'),
    db: quoteArg(db.name),
    dbName: inDoubleQuotes(db.name),
    dbUser: inDoubleQuotes(db.user),
    charset: db.utf8mb4 ? 'utf8mb4' : 'utf8',
    dbFile: quoteArg(db.file ?? `${instance.dataDir}/${db.name}.db`),
  };
  // An encrypted backup's files are decrypted on the way, with the identity file the
  // variable AGE_IDENTITY names (bash stops with that message when it is not set).
  const age = `age --decrypt --identity "\${AGE_IDENTITY:?set AGE_IDENTITY to the age identity file}"`;
  const method = compression === 'zstd' ? '--zstd' : '--gzip';
  const extract = (role: ArchiveRecord['role'], more: string) =>
    input.encryptedTo
      ? `${age} ${archive(role)} | tar --extract ${method}${more} --file - --directory ${unpacked} ${TAR_METADATA_FLAGS.map(quoteArg).join(' ')} --same-permissions`
      : `tar --extract${more} --file ${archive(role)} --directory ${unpacked} ${TAR_METADATA_FLAGS.map(quoteArg).join(' ')} --same-permissions`;
  if (input.encryptedTo) values.dump = `<(${age} ${archive('database')})`;
  const copyInto = (member: string, target: string) =>
    `find ${unpacked}/${member} -mindepth 1 -maxdepth 1 -exec cp -a -t ${target} {} +`;
  return {
    before:
      fileSet.install.type === 'package'
        ? `Install ${instance.product} ${instance.version} (the same version) first: a package install's backup holds no server code. On a new database server, create the database user ${db.user} first. Keep the web server stopped until the end.`
        : `On a new database server, create the database user ${db.user} first. Keep the web server stopped until the end.`,
    files: [
      // A failed age must fail the line, not hide behind tar's exit status.
      ...(input.encryptedTo ? ['set -o pipefail'] : []),
      `mkdir -p ${installDir}`,
      `mkdir ${unpacked}`,
      extract('files', ''),
      // Then what changed inside the maintenance window, over it (deletions included).
      ...(input.archives.some((a) => a.role === 'files-delta')
        ? [extract('files-delta', ' --listed-incremental=/dev/null')]
        : []),
      copyInto(LAYOUT.install, installDir),
      `mv -T ${unpacked}/${LAYOUT.data} ${dataDir}`,
      ...(fileSet.absolutePaths.length > 0 ? [copyInto(LAYOUT.absolute, '/')] : []),
      `rm -rf ${unpacked}`,
    ].join(' && '),
    database: input.restoreHint.replace(
      /\{(\w+)\}/g,
      (_, key: string) => values[key] ?? `{${key}}`,
    ),
    finish: [
      `chown -R ${owner}: ${dataDir} ${quoteArg(`${instance.installDir}/config`)}`,
      `${occ} maintenance:data-fingerprint`,
      `${occ} maintenance:mode --off`,
    ].join(' && '),
  };
}
