// The artifact destination: one workflow artifact per backup, holding the archives and the
// manifest. They are compressed already, so the artifact's zip only stores them (level 0).
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { DefaultArtifactClient } from '@actions/artifact';
import { BackupError } from '../errors.ts';

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
