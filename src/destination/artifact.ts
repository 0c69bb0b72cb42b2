// The artifact destination: one workflow artifact per backup, holding the archives and the
// manifest. The upload is one uncompressed tar of the backup directory (the archives are
// compressed already), streamed by GNU tar through a FIFO into the artifact client as a
// single raw (skipArchive) file: no copy of the archives on disk, no zip's per-byte CRC
// in JavaScript, and the digest the service records is that of the tar, which a person
// who downloads the artifact can check and unpack with `tar -xf`.
// The way back out: find the artifact (by name, or the newest backup of a run), download
// it, check that its bytes have the digest the service recorded at upload, and unpack it.
// Artifacts uploaded as a zip (as earlier versions did) still download: the client unpacks
// those itself.
import {
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readSync,
  renameSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DefaultArtifactClient, type Artifact, type FindOptions } from '@actions/artifact';
import { BackupError, InputError } from '../errors.ts';
import { runProcess, stderrTail } from '../host/process.ts';
import { CHECKSUMS_NAME, isBackupName, MANIFEST_NAME } from '../naming.ts';

export interface StoredArtifact {
  name: string;
  id: number;
  size: number;
  /** SHA-256 of the artifact's bytes (the tar, or an older artifact's zip), hex. */
  digest: string;
  url: string;
}

/** The order inside the tar: the manifest and the checksums first, then the rest by name. */
export function containerMembers(entries: readonly string[]): string[] {
  const first = [MANIFEST_NAME, CHECKSUMS_NAME].filter((name) => entries.includes(name));
  return [...first, ...entries.filter((name) => !first.includes(name)).sort()];
}

/**
 * Opens the FIFO for writing (once the client opens it for reading), enlarges it on Linux,
 * and becomes the command that follows: the client reads with an 8 MiB buffer, and each
 * read of a 64 KiB pipe (the default) costs a whole buffer, which makes the upload several
 * times slower than reading a file. 1 MiB is the largest a user may set (pipe-max-size);
 * if the system allows less, the pipe keeps its size and the upload is only slower.
 */
export const PIPE_WRITER_SCRIPT = [
  'my $fifo = shift;',
  'open(STDOUT, ">", $fifo) or die "cannot open $fifo: $!\\n";',
  'fcntl(STDOUT, 1031, 1048576) if $^O eq "linux";',
  'exec { $ARGV[0] } @ARGV or die "cannot run $ARGV[0]: $!\\n";',
].join(' ');

/** GNU tar writing the backup directory's members, uncompressed, into the FIFO `fifo`. */
export function containerTarArgv(directory: string, members: readonly string[], fifo: string) {
  return [
    'perl',
    '-e',
    PIPE_WRITER_SCRIPT,
    fifo,
    'tar',
    '--create',
    '--format=posix',
    // Only the modification time, as the other formats keep it: no per-read atime noise.
    '--pax-option=delete=atime,delete=ctime',
    // 128 KiB writes (the end is padded to a whole record): fewer, fuller reads of the pipe.
    '--blocking-factor=256',
    '--file=-',
    `--directory=${directory}`,
    '--',
    ...members,
  ];
}

/**
 * Ends the wait of the client's read side of the FIFO when tar will not open it any more
 * (it failed to start): a writer that opens and closes gives the reader its end of file.
 * Fails (ENXIO) while nobody reads yet; harmless once tar has written everything.
 */
function releaseReader(fifo: string): void {
  try {
    closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
  } catch {
    // nobody reads yet, or the FIFO is gone: the caller tries again while the upload runs
  }
}

type UploadOptions = NonNullable<Parameters<DefaultArtifactClient['uploadArtifact']>[3]>;
type UploadResponse = Awaited<ReturnType<DefaultArtifactClient['uploadArtifact']>>;

/**
 * One raw upload of the tar of `directory`, named `name`: the client reads a FIFO of that
 * name (it names a raw artifact after its file) that tar writes while the bytes go up.
 */
async function uploadTarStream(
  client: DefaultArtifactClient,
  directory: string,
  name: string,
  options: UploadOptions,
): Promise<UploadResponse> {
  const members = containerMembers(readdirSync(directory));
  const pipeDir = mkdtempSync(join(tmpdir(), 'owncloud-backup-upload-'));
  const fifo = join(pipeDir, name);
  try {
    const made = await runProcess(['mkfifo', '-m', '0600', '--', fifo]);
    if (made.exitCode !== 0)
      throw new BackupError(
        `Could not create the pipe ${fifo} for the upload: ${stderrTail(made.stderr)}`,
      );
    const stopTar = new AbortController();
    const tar = runProcess(containerTarArgv(directory, members, fifo), { signal: stopTar.signal });
    let settled = false;
    const upload = client.uploadArtifact(name, [fifo], pipeDir, { ...options, skipArchive: true });
    void upload.then(
      () => (settled = true),
      () => (settled = true),
    );
    void tar.then(async () => {
      while (!settled) {
        releaseReader(fifo);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    });
    let response;
    try {
      response = await upload;
    } catch (error) {
      // Blocked opening the FIFO (the artifact was never created) or writing into it.
      stopTar.abort();
      await tar;
      throw error;
    }
    const packed = await tar;
    if (packed.exitCode !== 0) {
      // What went up misses part of the backup: no one may restore from it.
      const removed = await client.deleteArtifact(name).then(
        () => 'it was deleted',
        (error: unknown) => `deleting it failed too (${messageOf(error)}): delete it by hand`,
      );
      throw new BackupError(
        `Packing ${directory} for the artifact '${name}' failed (tar exit ${packed.exitCode}: ${stderrTail(packed.stderr)}); the artifact is incomplete and ${removed}.`,
      );
    }
    return response;
  } finally {
    rmSync(pipeDir, { recursive: true, force: true });
  }
}

/** The earlier form: a zip that only stores the files (still used for names ending in .zip). */
async function uploadZip(
  client: DefaultArtifactClient,
  directory: string,
  name: string,
  options: UploadOptions,
): Promise<UploadResponse> {
  const files = readdirSync(directory).map((file) => join(directory, file));
  return client.uploadArtifact(name, files, directory, { ...options, compressionLevel: 0 });
}

export async function uploadBackupArtifact(
  directory: string,
  name: string,
  retentionDays: number,
  env: NodeJS.ProcessEnv = process.env,
): Promise<StoredArtifact> {
  if (name === '.' || name === '..')
    throw new BackupError(`The artifact name '${name}' is not a file name: set artifact-name.`);
  const client = new DefaultArtifactClient();
  const options = retentionDays > 0 ? { retentionDays } : {};
  // A raw artifact whose name ends in .zip would be unpacked as a zip when downloaded.
  const upload = /\.zip$/i.test(name) ? uploadZip : uploadTarStream;
  let response;
  try {
    response = await upload(client, directory, name, options);
  } catch (error) {
    if (error instanceof BackupError) throw error;
    const message = messageOf(error);
    if (/409|already exists|Conflict/i.test(message))
      throw new BackupError(
        `An artifact named '${name}' exists already in this run: set a unique artifact-name.`,
      );
    throw new BackupError(`Uploading the artifact '${name}' failed: ${message}`);
  }
  if (response.id === undefined)
    throw new BackupError(`Uploading the artifact '${name}' returned no artifact id.`);
  const server = env.GITHUB_SERVER_URL ?? 'https://github.com';
  return {
    name,
    id: response.id,
    size: response.size ?? 0,
    digest: response.digest ?? '',
    url: `${server}/${env.GITHUB_REPOSITORY ?? ''}/actions/runs/${env.GITHUB_RUN_ID ?? ''}/artifacts/${response.id}`,
  };
}

/** Which artifact to take: by name or the newest backup; of this run, or of the run in findBy. */
export interface ArtifactSource {
  /** Default: the newest artifact named as the backup names them (owncloud-backup-YYYYMMDD-HHMMSS). */
  name?: string;
  /** Another workflow run (or repository): all of it is needed to read its artifacts. */
  findBy?: NonNullable<FindOptions['findBy']>;
}

export interface DownloadedBackup {
  /** The directory holding manifest.json and the archives. */
  directory: string;
  artifact: { name: string; id: number; size: number; digest?: string; createdAt?: Date };
  /** Where it came from, as people read it: `this workflow run` or `run N of owner/name`. */
  from: string;
  /** Whether the download was checked against the artifact's digest (old artifacts have none). */
  digestChecked: boolean;
}

function describeSource(source: ArtifactSource): string {
  const by = source.findBy;
  return by
    ? `run ${by.workflowRunId} of ${by.repositoryOwner}/${by.repositoryName}`
    : 'this workflow run';
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The artifact to restore among those of the run: the named one, or the newest backup. */
export function chooseArtifact(artifacts: Artifact[], source: ArtifactSource): Artifact {
  const from = describeSource(source);
  const newestFirst = [...artifacts].sort(
    (a, b) => (b.createdAt?.getTime() ?? 0) - (a.createdAt?.getTime() ?? 0) || b.id - a.id,
  );
  if (source.name !== undefined) {
    const found = newestFirst.find((a) => a.name === source.name);
    if (!found) {
      const names = newestFirst.map((a) => `'${a.name}'`);
      throw new InputError(
        `No artifact named '${source.name}' in ${from} (input 'artifact-name'). ${names.length ? `It has: ${names.slice(0, 10).join(', ')}${names.length > 10 ? ', …' : ''}.` : 'It has no artifacts.'}`,
      );
    }
    return found;
  }
  const backup = newestFirst.find((a) => isBackupName(a.name));
  if (!backup)
    throw new InputError(
      `No backup artifact in ${from}: none is named owncloud-backup-YYYYMMDD-HHMMSS (${artifacts.length} other artifact${artifacts.length === 1 ? '' : 's'}). Set input 'artifact-name' to restore one named otherwise, or input 'run-id' to take one of another run.`,
    );
  return backup;
}

/** Whether a file starts with a tar header (POSIX ustar or GNU: "ustar" at offset 257). */
export function isTarFile(path: string): boolean {
  const header = Buffer.alloc(512);
  const fd = openSync(path, 'r');
  try {
    return (
      readSync(fd, header, 0, 512, 0) === 512 && header.toString('latin1', 257, 262) === 'ustar'
    );
  } finally {
    closeSync(fd);
  }
}

/**
 * A backup uploaded as one tar arrives as that one file: unpacked beside it, then removed.
 * (A zip, the earlier form, the client has unpacked already.)
 */
async function unpackContainer(dir: string, label: string): Promise<void> {
  if (existsSync(join(dir, MANIFEST_NAME))) return;
  const entries = readdirSync(dir, { withFileTypes: true });
  if (entries.length !== 1 || !entries[0]!.isFile() || !isTarFile(join(dir, entries[0]!.name)))
    return;
  // Out of the way of the members, whatever the artifact's file was called.
  const container = join(dir, '.artifact.tar');
  renameSync(join(dir, entries[0]!.name), container);
  const unpacked = await runProcess([
    'tar',
    '--extract',
    '--force-local',
    '--no-same-owner',
    `--file=${container}`,
    `--directory=${dir}`,
  ]);
  rmSync(container, { force: true });
  if (unpacked.exitCode !== 0)
    throw new BackupError(
      `Unpacking the artifact ${label} failed (tar exit ${unpacked.exitCode}): ${stderrTail(unpacked.stderr)}`,
    );
}

/** Where the manifest is in the download: at its top, or in its one directory. */
function backupDirectoryIn(dir: string, name: string): string {
  if (existsSync(join(dir, MANIFEST_NAME))) return dir;
  const entries = readdirSync(dir, { withFileTypes: true });
  if (entries.length === 1 && entries[0]!.isDirectory()) {
    const inner = join(dir, entries[0]!.name);
    if (existsSync(join(inner, MANIFEST_NAME))) return inner;
  }
  throw new BackupError(
    `The artifact '${name}' holds no ${MANIFEST_NAME}: it is not a backup made by owncloud-backup.`,
  );
}

/**
 * Finds the artifact, downloads it into `intoDir` (created; emptied again when the download
 * fails or is damaged) and returns the directory holding its manifest.
 */
export async function downloadBackupArtifact(
  source: ArtifactSource,
  intoDir: string,
): Promise<DownloadedBackup> {
  const client = new DefaultArtifactClient();
  const from = describeSource(source);
  const findBy = source.findBy ? { findBy: source.findBy } : {};
  let artifacts: Artifact[];
  try {
    ({ artifacts } = await client.listArtifacts({ latest: true, ...findBy }));
  } catch (error) {
    throw new BackupError(`Listing the artifacts of ${from} failed: ${messageOf(error)}`);
  }
  const artifact = chooseArtifact(artifacts, source);
  const label = `'${artifact.name}' (id ${artifact.id}, ${from})`;
  const digest = artifact.digest
    ? artifact.digest.startsWith('sha256:')
      ? artifact.digest
      : `sha256:${artifact.digest}`
    : undefined;

  mkdirSync(intoDir, { recursive: true });
  let response;
  try {
    response = await client.downloadArtifact(artifact.id, {
      path: intoDir,
      ...(digest ? { expectedHash: digest } : {}),
      ...findBy,
    });
  } catch (error) {
    rmSync(intoDir, { recursive: true, force: true });
    throw new BackupError(`Downloading the artifact ${label} failed: ${messageOf(error)}`);
  }
  if (response.digestMismatch) {
    rmSync(intoDir, { recursive: true, force: true });
    throw new BackupError(
      `The artifact ${label} is damaged: the downloaded bytes do not have the digest recorded when it was uploaded (${digest}). Nothing was restored.`,
    );
  }
  try {
    await unpackContainer(intoDir, label);
  } catch (error) {
    rmSync(intoDir, { recursive: true, force: true });
    throw error;
  }
  return {
    directory: backupDirectoryIn(intoDir, artifact.name),
    artifact: {
      name: artifact.name,
      id: artifact.id,
      size: artifact.size,
      ...(digest ? { digest: digest.slice('sha256:'.length) } : {}),
      ...(artifact.createdAt ? { createdAt: artifact.createdAt } : {}),
    },
    from,
    digestChecked: digest !== undefined,
  };
}
