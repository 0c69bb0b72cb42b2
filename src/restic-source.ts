// A backup in a restic repository as the restore's source, in host mode: restic runs on the
// target host (as root, which it needs to give the files their owners) and restores the
// snapshots there, so no file content crosses the runner; only the dump (into the database
// client) and the config files (read here to plan the restore) do.
//   the repository opened → the backup found (an id, a name, latest) → its manifest read →
//   every snapshot it names checked present → config files read.
// Putting the files in place: each part of the backup is restored (`restic restore
// --verify`: every file read back and compared) into a private directory beside where it
// goes, on the same file system, then renamed into place: nothing half-written is ever where
// the instance looks, and no byte is copied twice.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import {
  listedBackups,
  RESTIC_MANIFEST_FORMAT,
  RESTIC_MANIFEST_NAME,
  RESTIC_TAG,
  tagValue,
  type ResticManifest,
} from './backup-restic.ts';
import {
  findRestic,
  ResticRepository,
  type ResticStream,
  type Snapshot,
} from './destination/restic.ts';
import { BackupError, InputError } from './errors.ts';
import { mustRun, type Host } from './host/host.ts';
import { stderrTail, streamProcess } from './host/process.ts';
import type { Reporter } from './report.ts';
import type { RepositoryBackup } from './settings.ts';
import type { OpenedArchive } from './steps/compress.ts';
import { LAYOUT } from './steps/files.ts';
import { formatBytes } from './steps/preflight.ts';
import { escapeResticPattern } from './steps/restic-files.ts';
import type { BackupSource } from './steps/target.ts';

/** The name of the directory a part is restored into before it is renamed into place. */
export const INCOMING_PREFIX = '.owncloud-restore-incoming-';

/**
 * The manifest snapshot of the backup `given` names: `latest` (the newest complete backup;
 * refused when the repository holds more than one instance's), a snapshot id or its first
 * characters (of any snapshot of the backup), or a backup name. Pure.
 */
export function findBackup(snapshots: readonly Snapshot[], given: string): Snapshot {
  const ours = snapshots.filter((s) => (s.tags ?? []).includes(RESTIC_TAG));
  const manifests = ours.filter((s) => tagValue(s, 'part') === 'manifest');
  const listHint = 'owncloud-backup list shows the backups in the repository';
  if (given === 'latest') {
    const listed = listedBackups(manifests);
    if (listed.length === 0)
      throw new BackupError(`The repository holds no complete backup of this tool (${listHint}).`);
    const instances = [...new Set(listed.map((b) => b.instance))];
    if (instances.length > 1)
      throw new InputError(
        `The repository holds backups of ${instances.length} instances (${instances.join(', ')}): 'latest' does not say which. Give the snapshot id of one (${listHint}).`,
      );
    return manifests.find((s) => s.id === listed[0]!.snapshot)!;
  }
  const byName = ours.filter((s) => tagValue(s, 'backup') === given);
  const matching = byName.length > 0 ? byName : ours.filter((s) => s.id.startsWith(given));
  const names = [...new Set(matching.map((s) => tagValue(s, 'backup') ?? ''))];
  if (matching.length === 0)
    throw new BackupError(
      `No backup of this tool in the repository has the snapshot '${given}' (${listHint}).`,
    );
  if (names.length > 1)
    throw new InputError(
      `The snapshot '${given}' is ambiguous: it is the start of snapshot ids of ${names.length} backups (${names.join(', ')}). Give more of the id.`,
    );
  const manifest = manifests.find((s) => tagValue(s, 'backup') === names[0]);
  if (!manifest)
    throw new BackupError(
      `The backup ${names[0]} in the repository is incomplete (its run did not finish: it has no manifest snapshot) and cannot be restored (${listHint}).`,
    );
  return manifest;
}

/**
 * Why a manifest read from a repository cannot be restored, or undefined: its format, and
 * every snapshot it names present in the repository with the backup's tags. Pure.
 */
export function manifestProblem(
  manifest: ResticManifest,
  snapshots: readonly Snapshot[],
): string | undefined {
  if (manifest.format !== RESTIC_MANIFEST_FORMAT)
    return `its manifest is of format '${String(manifest.format)}', this version restores ${RESTIC_MANIFEST_FORMAT} (restore it by hand with restic restore, as the README says)`;
  const missing = Object.entries(manifest.snapshots)
    .filter(
      ([, id]) =>
        !snapshots.some((s) => s.id.startsWith(id) && tagValue(s, 'backup') === manifest.name),
    )
    .map(([part, id]) => `${part} (${id.slice(0, 8)})`);
  if (missing.length > 0)
    return `the snapshot${missing.length > 1 ? 's' : ''} ${missing.join(', ')} it names ${missing.length > 1 ? 'are' : 'is'} not in the repository`;
  return undefined;
}

/** Where a member of the backup goes on the target: below the member directory it is in. Pure. */
export function memberTarget(member: string, members: Record<string, string>): string {
  const root = member.split('/')[0]!;
  const base = members[root];
  if (base === undefined) throw new Error(`no target for the archive member '${member}'`);
  return posix.join(base, member.slice(root.length)).replace(/(.)\/$/, '$1');
}

// Makes the private directory a part is restored into: beside the target on its file system
// ($1 target, $2 the directory's name); inside the target when the target is a directory
// that stays (a mount point the move aside emptied). Prints the directory.
const MAKE_INCOMING = String.raw`set -eu
target=$1
if [ -d "$target" ] && [ ! -L "$target" ]; then parent=$target; else parent=$(dirname -- "$target"); mkdir -p -- "$parent"; fi
dir="$parent/$2"
mkdir -m 0700 -- "$dir"
printf '%s' "$dir"`;

// Renames the restored part into place ($1 the directory restic restored into, $2 the path
// restic put it under there, $3 the target); a target that is a directory that stays gets
// what the part holds. Then removes the directory restic restored into.
const PLACE_PART = String.raw`set -eu
dir=$1; restored=$1$2; target=$3
if [ ! -e "$restored" ] && [ ! -L "$restored" ]; then echo "the snapshot holds no $2" >&2; exit 3; fi
if [ -d "$target" ] && [ ! -L "$target" ]; then
  find "$restored" -mindepth 1 -maxdepth 1 -exec mv -t "$target" -- {} +
else
  mv -T -- "$restored" "$target"
fi
rm -rf -- "$dir"`;

/** Reads the config files (config.php, *.config.php) of a `restic dump` of config/, here. */
async function configFilesOf(
  dumped: ResticStream,
  configDir: string,
): Promise<Record<string, string>> {
  const dir = mkdtempSync(join(tmpdir(), 'owncloud-restore-config-'));
  try {
    const tar = streamProcess(
      [
        'tar',
        '--extract',
        '--file=-',
        `--directory=${dir}`,
        '--no-same-owner',
        '--no-same-permissions',
      ],
      { feedStdin: true },
    );
    tar.stdout.resume();
    const feeding = pipeline(dumped.stdout, tar.stdin).catch((error: unknown) => error);
    const [extracted] = await Promise.all([tar.done, dumped.done]);
    await feeding;
    if (extracted.exitCode !== 0)
      throw new BackupError(
        `Reading the config files of the backup failed: tar: ${stderrTail(extracted.stderr) || `exit ${extracted.exitCode}`}`,
      );
    const read = join(dir, configDir.replace(/^\/+/, ''));
    const files: Record<string, string> = {};
    for (const name of readdirSync(read))
      if (name === 'config.php' || name.endsWith('.config.php'))
        files[name] = readFileSync(join(read, name), 'utf8');
    if (!files['config.php'])
      throw new BackupError(
        "The backup's installation snapshot holds no config/config.php: it cannot be restored.",
      );
    return files;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** restic's dump of a file as the restore's plaintext stream of the dump. */
function opened(stream: ResticStream): OpenedArchive {
  return {
    stdout: stream.stdout,
    done: stream.done.then(
      () => ({ ok: true, problem: '' }),
      (error: unknown) => ({ ok: false, problem: (error as Error).message }),
    ),
    kill: () => stream.kill(),
  };
}

/**
 * Finds the backup in the repository from the target host and checks it there; the source
 * then restores from the repository onto that host.
 */
export async function resticSource(
  host: Host,
  root: string[],
  from: RepositoryBackup,
  reporter: Reporter,
  signal: AbortSignal,
): Promise<BackupSource> {
  const program = await findRestic(host, root);
  const repo = new ResticRepository(host, { ...from.restic }, program, root);
  await repo.open(false, { signal });
  const snapshots = await repo.snapshots({ tags: [RESTIC_TAG] });
  const chosen = findBackup(snapshots, from.snapshot);
  const name = tagValue(chosen, 'backup') ?? '';
  const text = await new Promise<string>((resolve, reject) => {
    const stream = repo.dump(chosen.id, `/${RESTIC_MANIFEST_NAME}`, { signal });
    const chunks: Buffer[] = [];
    stream.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.done.then(() => resolve(Buffer.concat(chunks).toString('utf8')), reject);
  });
  let manifest: ResticManifest;
  try {
    manifest = JSON.parse(text) as ResticManifest;
  } catch {
    throw new BackupError(
      `The manifest of ${name} (snapshot ${chosen.id.slice(0, 8)}) is not JSON: the backup cannot be restored.`,
    );
  }
  const problem = manifestProblem(manifest, snapshots);
  if (problem)
    throw new BackupError(`The backup ${name} in ${repo.label} cannot be restored: ${problem}.`);
  reporter.info(
    `Backup ${manifest.name} (manifest snapshot ${chosen.id.slice(0, 8)}) of ${manifest.instance.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud'} ${manifest.instance.version}, taken ${manifest.startedAt}: ${Object.keys(manifest.snapshots).length} snapshots, all present in ${repo.label} (restic ${repo.version} on ${host.label}).`,
  );
  const configPart = manifest.files.parts.find(
    (p) => p.part === 'install' && `${LAYOUT.install}/config`.startsWith(p.member),
  );
  if (!configPart)
    throw new BackupError(`The manifest of ${manifest.name} names no part holding config/.`);
  const configDir = posix.join(
    configPart.source,
    `${LAYOUT.install}/config`.slice(configPart.member.length),
  );
  const configFiles = await configFilesOf(
    repo.dump(manifest.snapshots.install, configDir, { signal }),
    configDir,
  );
  const dumpPath = `/${manifest.database.dumpFile}`;
  return {
    facts: manifest,
    hostPrograms: ['mv', 'find', 'dirname'],
    configFiles,
    filesBytes: 0,
    async putFiles(o) {
      const stamp = `${manifest.name.replace(/^owncloud-backup-/, '')}-${process.pid}`;
      // Outer parts first: a part inside another (a tarball install's data directory) is
      // renamed into the one before it.
      const parts = manifest.files.parts
        .map((part) => ({ ...part, target: memberTarget(part.member, o.members) }))
        .sort((a, b) => a.target.length - b.target.length);
      for (const part of parts) {
        const snapshot =
          part.part === 'install' ? manifest.snapshots.install : manifest.snapshots.files;
        const made = await mustRun(
          o.host,
          [...o.root, 'sh', '-c', MAKE_INCOMING, 'sh', part.target, `${INCOMING_PREFIX}${stamp}`],
          `Preparing the restore of ${part.target}`,
        );
        const incoming = made.stdout;
        try {
          await repo.restore(snapshot, incoming, {
            include: [escapeResticPattern(part.source)],
            verify: true,
            signal: o.signal,
          });
          await mustRun(
            o.host,
            [...o.root, 'sh', '-c', PLACE_PART, 'sh', incoming, part.source, part.target],
            `Putting ${part.target} in place`,
          );
        } finally {
          await o.host
            .run([...o.root, 'rm', '-rf', '--', incoming], { shielded: true })
            .catch(() => undefined);
        }
        reporter.info(
          `${part.target}: restored from snapshot ${snapshot.slice(0, 8)} and checked.`,
        );
      }
      reporter.info(
        `restic restore --verify read every restored file back (${formatBytes(manifest.files.bytes)}).`,
      );
    },
    dump: {
      label: `${manifest.database.dumpFile} of snapshot ${manifest.snapshots.database.slice(0, 8)}`,
      open: (stepSignal) =>
        opened(repo.dump(manifest.snapshots.database, dumpPath, { signal: stepSignal })),
    },
  };
}
