// The artifact destination: one workflow artifact per backup, holding the archives and the
// manifest. They are compressed already, so the artifact's zip only stores them (level 0).
// The way back out: find the artifact (by name, or the newest backup of a run), download
// it, and check that its bytes have the digest the service recorded at upload.
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { DefaultArtifactClient, type Artifact, type FindOptions } from '@actions/artifact';
import { BackupError, InputError } from '../errors.ts';
import { isBackupName, MANIFEST_NAME } from '../naming.ts';

export interface StoredArtifact {
  name: string;
  id: number;
  size: number;
  /** SHA-256 of the artifact's zip, hex. */
  digest: string;
  url: string;
}

export async function uploadBackupArtifact(
  directory: string,
  name: string,
  retentionDays: number,
  env: NodeJS.ProcessEnv = process.env,
): Promise<StoredArtifact> {
  const files = readdirSync(directory).map((file) => join(directory, file));
  const client = new DefaultArtifactClient();
  let response;
  try {
    response = await client.uploadArtifact(name, files, directory, {
      compressionLevel: 0,
      ...(retentionDays > 0 ? { retentionDays } : {}),
    });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
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
