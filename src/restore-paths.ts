// Single paths back into a live instance (restore --path), and what a backup holds under a
// path (restore --list).
//   verify ‖ list the wanted members → connect → the instance found (locked against a
//   backup) → preflight → extract the members into a private staging directory in the data
//   directory → put each in place by the conflict rule (replaced items kept aside; keys
//   along with encryption) → occ files:scan → with encryption, the cache rows' recorded
//   values → the staging directory removed.
// No maintenance mode and no database replacement: the rest of the instance runs on.
import { randomBytes } from 'node:crypto';
import { engineFor } from './database/index.ts';
import { BackupError, InterruptedError } from './errors.ts';
import { connectStep } from './host/connect.ts';
import { asUser, mustRun, type Host } from './host/host.ts';
import { acquireLock, holderName, type HeldLock } from './host/lock.ts';
import { hostname } from 'node:os';
import { archiveFile, type Manifest } from './manifest.ts';
import { withIdentity } from './steps/age.ts';
import type { ArchiveFile } from './steps/compress.ts';
import type { RestoreContext } from './restore.ts';
import type { ConflictRule, PathRestorePlan, UserPath } from './settings.ts';
import {
  isAtOrBelow,
  listBackupFiles,
  type ArchiveEntry,
  type FilesArchives,
} from './steps/archive-listing.ts';
import { discoverInstance, type Instance } from './steps/discover.ts';
import { readEncryptionIndex, type EncryptedFile } from './steps/encryption.ts';
import { setCacheValues, type CacheRowValues } from './steps/file-cache.ts';
import { LAYOUT } from './steps/files.ts';
import { occCommand } from './steps/maintenance.ts';
import { containerName, restoreStamp } from './steps/previous-state.ts';
import { placeFiles, type Placement } from './steps/place-files.ts';
import { formatBytes, missingOnHost } from './steps/preflight.ts';
import { extractMembers } from './steps/restore-files.ts';
import { findClient } from './steps/restore-database.ts';
import { rootOn, unchanged, verified } from './steps/target.ts';
import { archiveNameProblem, readManifest } from './verify.ts';

const KEY_MODULE_DEFAULT = 'OC_DEFAULT_MODULE';

export interface PathRestoreResult {
  manifest: Manifest;
  target: string;
  /** Files put in place (relative to each user's home; `to` differs for copies). */
  placed: Placement['placed'];
  skipped: Placement['skipped'];
  unchanged: number;
  /** Items the restored ones replaced, kept in this directory until `restore --cleanup`. */
  previous?: string;
  replaced: number;
  /** The paths occ files:scan was run for. */
  scanned: string[];
  /** Versions and trash bin entries: restored as files (ownCloud lists them from the disk). */
  filesOnly: string[];
  /** Cache rows given the encryption values recorded at backup time. */
  cacheRows: number;
  seconds: number;
}

/** The archive member of a user's path. Pure. */
export function memberOf(user: string, path: string): string {
  return `${LAYOUT.data}/${user}/${path}`;
}

/** The date a copy's name carries: the backup's (it says which state the copy is). Pure. */
export function copySuffix(manifest: Pick<Manifest, 'startedAt'>): string {
  return ` (restored ${manifest.startedAt.slice(0, 10)})`;
}

interface Selection {
  /** Members to extract (exact names; directories bring their contents). */
  members: string[];
  /** The listed entries of each requested path (for its messages). */
  found: ArchiveEntry[];
}

/**
 * What to extract for the requested paths: each path, its files' key directories, the key
 * pairs to compare, and the first copy of any hard link whose other name is requested. Pure.
 */
export function selectMembers(
  entries: readonly ArchiveEntry[],
  paths: readonly UserPath[],
  encryption: KeyHandling | undefined,
): Selection {
  const requested = paths.map((p) => memberOf(p.user, p.path));
  const members = new Set<string>();
  const found: ArchiveEntry[] = [];
  const names = new Set(entries.map((e) => e.name));
  for (const [i, member] of requested.entries()) {
    if (!names.has(member))
      throw new BackupError(
        `The backup holds no '${paths[i]!.user}/${paths[i]!.path}' (see restore --list ${paths[i]!.user}/${paths[i]!.path.split('/')[0]}). Nothing was changed on the target.`,
      );
    members.add(member);
  }
  for (const entry of entries) {
    if (requested.some((r) => isAtOrBelow(entry.name, r))) {
      found.push(entry);
      // A hard link's first copy sits elsewhere in the archive: tar needs it to make the link.
      if (
        entry.type === 'hardlink' &&
        entry.linkTarget &&
        !requested.some((r) => isAtOrBelow(entry.linkTarget!, r))
      )
        members.add(entry.linkTarget);
    }
    if (!encryption) continue;
    for (const p of paths) {
      const keys = memberOf(p.user, `files_encryption/keys/${p.path}`);
      if (entry.name === keys) members.add(keys);
      if (
        encryption.keyPairs === 'user' &&
        entry.name === memberOf(p.user, `files_encryption/${encryption.module}/${p.user}.publicKey`)
      )
        members.add(entry.name);
    }
    if (
      encryption.keyPairs === 'master' &&
      entry.name.startsWith(`${LAYOUT.data}/files_encryption/${encryption.module}/master_`)
    )
      members.add(entry.name);
  }
  return { members: [...members], found };
}

/**
 * The archive's entries a --path restore needs to see: at or below each path and its keys,
 * and the key pairs (the rest of a big archive is not held in memory).
 */
function wantedBy(paths: readonly UserPath[]): (name: string) => boolean {
  const roots = paths.flatMap((p) => [
    memberOf(p.user, p.path),
    memberOf(p.user, `files_encryption/keys/${p.path}`),
  ]);
  const keyPairDirs = [...new Set(paths.map((p) => memberOf(p.user, 'files_encryption/')))];
  return (name) =>
    roots.some((r) => isAtOrBelow(name, r)) ||
    keyPairDirs.some((d) => name.startsWith(d) && !name.startsWith(`${d}keys/`)) ||
    name.startsWith(`${LAYOUT.data}/files_encryption/`);
}

type KeyHandling = { module: string; keyPairs?: 'user' | 'master' };

/**
 * How keys travel with the restored files: as the manifest's encryption record says, or, for
 * a backup made before the record existed, by what the archive holds (key directories of the
 * restored paths: they come along, without the key pair check). Pure.
 */
export function encryptionOf(
  manifest: Pick<Manifest, 'encryption'>,
  entries: readonly ArchiveEntry[],
  paths: readonly UserPath[],
): KeyHandling | undefined {
  const encryption = manifest.encryption;
  if (!encryption)
    return entries.some((e) =>
      paths.some((p) => isAtOrBelow(e.name, memberOf(p.user, `files_encryption/keys/${p.path}`))),
    )
      ? { module: KEY_MODULE_DEFAULT }
      : undefined;
  if (!encryption.enabled) return undefined;
  return {
    module: encryption.module || KEY_MODULE_DEFAULT,
    keyPairs: encryption.mode === 'master-key' ? 'master' : 'user',
  };
}

/** The backup's files archives, as its manifest names them. */
function filesArchivesOf(
  backupPath: string,
  manifest: Manifest,
  identityFile: string | undefined,
): FilesArchives {
  const base = manifest.archives.find((a) => a.role === 'files')!;
  const delta = manifest.archives.find((a) => a.role === 'files-delta');
  if (delta && archiveNameProblem(delta.name))
    throw new BackupError('The manifest names no usable files-delta archive.');
  return {
    base: archiveFile(backupPath, base, identityFile),
    ...(delta ? { delta: archiveFile(backupPath, delta, identityFile) } : {}),
  };
}

/** The archive's entries the paths need, or the error listing them (kept until verified). */
async function listWanted(
  plan: PathRestorePlan,
  identityFile: string | undefined,
): Promise<ArchiveEntry[] | Error> {
  try {
    const manifest = readManifest(plan.backupPath);
    const files = manifest.archives.find((a) => a.role === 'files');
    if (!files || archiveNameProblem(files.name))
      return new BackupError('The manifest names no usable files archive.');
    return await listBackupFiles(
      filesArchivesOf(plan.backupPath, manifest, identityFile),
      wantedBy(plan.paths),
    );
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}

export async function runPathRestore(
  plan: PathRestorePlan,
  context: RestoreContext,
): Promise<PathRestoreResult> {
  return withIdentity(
    plan.identity,
    (identityFile) => pathRestore(plan, context, identityFile),
    context.ssh?.runtimeDir,
  );
}

async function pathRestore(
  plan: PathRestorePlan,
  context: RestoreContext,
  identityFile: string | undefined,
): Promise<PathRestoreResult> {
  const { reporter, signal } = context;
  const started = performance.now();
  const interrupted = () => {
    if (signal.aborted)
      throw new InterruptedError('The restore was interrupted; nothing was changed.');
  };
  // The wanted entries are listed while the archive is verified (each a pass over it); the
  // listing is used only once the verification has passed.
  const listing = listWanted(plan, identityFile);
  const backup = await reporter.group('Verify the backup', () =>
    verified(plan.backupPath, reporter, identityFile),
  );
  const { manifest } = backup;
  const filesArchive = manifest.archives.find((a) => a.role === 'files')!;
  const { selection, encryption } = await reporter.group(
    'Find the paths in the backup',
    async () => {
      const entries = await listing;
      if (entries instanceof Error) throw entries;
      const keys = encryptionOf(manifest, entries, plan.paths);
      if (keys && !manifest.encryption)
        reporter.warning(
          'The backup predates the record of server-side encryption, and holds key files for these paths: they are restored with the files, but without the file cache values of encrypted files (users download each such file once to correct its size).',
        );
      const chosen = selectMembers(entries, plan.paths, keys);
      const files = chosen.found.filter((e) => e.type !== 'directory');
      reporter.info(
        `The backup of ${manifest.startedAt} holds ${files.length} file${files.length === 1 ? '' : 's'} (${files.reduce((n, e) => n + e.size, 0)} bytes) under ${plan.paths.map((p) => `${p.user}/${p.path}`).join(', ')}.`,
      );
      return { selection: chosen, encryption: keys };
    },
  );
  const index: EncryptedFile[] = encryption
    ? await readEncryptionIndex(
        backup.directory,
        manifest,
        (storage, path) =>
          plan.paths.some((p) => storage === `home::${p.user}` && isAtOrBelow(path, p.path)),
        identityFile,
      )
    : [];
  interrupted();

  let host: Host | undefined;
  let lock: HeldLock | undefined;
  try {
    host = await connectStep(reporter, plan.target, context.secrets, context.ssh);
    const connected = host;
    const root = await unchanged(() => rootOn(connected));
    const installDir = plan.owncloudDir || manifest.source.installDir;
    const { instance, client } = await unchanged(() =>
      reporter.group('Preflight (nothing is changed yet)', async () => {
        const found = await discoverInstance(
          connected,
          { ...plan, owncloudDir: installDir, database: {} },
          context.secrets,
        );
        reporter.info(
          `The target runs ${found.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud'} ${found.version} in ${found.installDir}, data directory ${found.dataDir}.`,
        );
        if (found.instanceId !== manifest.instance.instanceId)
          reporter.warning(
            `The backup is of instance ${manifest.instance.instanceId}, the target runs instance ${found.instanceId}: restoring into it anyway.`,
          );
        const missing = await missingOnHost(connected, ['tar', 'php', filesArchive.compression]);
        const engine = engineFor(found.database.type);
        const program = index.length > 0 ? await findClient(connected, engine) : undefined;
        if (index.length > 0 && !program) missing.push(engine.clients.join(' or '));
        if (missing.length > 0)
          throw new BackupError(
            `${connected.label} lacks ${missing.join(', ')}, which the restore needs: install ${missing.length > 1 ? 'them' : 'it'} there.`,
          );
        return { instance: found, client: program };
      }),
    );
    interrupted();
    // Not while a backup or another restore of this instance runs.
    lock = await acquireLock(
      connected,
      instance.installDir,
      holderName(process.pid, hostname(), new Date()),
      (heldBy) =>
        `A backup or restore of the instance in ${instance.installDir} on ${connected.label} is running (${heldBy}). Wait for it to finish. Nothing was changed on the target.`,
      (argv) => asUser(connected.account, instance.owner, argv),
    );
    interrupted();
    return await restorePaths({
      host: connected,
      root,
      plan,
      context,
      manifest,
      filesArchive: backup.filesArchive,
      ...(backup.filesDelta ? { filesDelta: backup.filesDelta } : {}),
      archiveBytes: manifest.archives
        .filter((a) => a.role === 'files' || a.role === 'files-delta')
        .reduce((sum, a) => sum + a.size, 0),
      instance,
      selection,
      encryption,
      index,
      client,
      started,
    });
  } finally {
    await lock?.release();
    await host?.close();
  }
}

async function restorePaths(run: {
  host: Host;
  root: string[];
  plan: PathRestorePlan;
  context: RestoreContext;
  manifest: Manifest;
  filesArchive: ArchiveFile;
  /** What changed inside the maintenance window, extracted over the base. */
  filesDelta?: ArchiveFile;
  /** The compressed archive's size, for the log. */
  archiveBytes: number;
  instance: Instance;
  selection: Selection;
  encryption: KeyHandling | undefined;
  index: EncryptedFile[];
  client: string | undefined;
  started: number;
}): Promise<PathRestoreResult> {
  const { host, root, plan, context, manifest, instance, encryption } = run;
  const { reporter } = context;
  // A random tail: two restores within one second never share a container.
  const container = `${instance.dataDir}/${containerName(`${restoreStamp(new Date())}-${randomBytes(3).toString('hex')}`)}`;
  const staging = `${container}/.staging`;
  await mustRun(
    host,
    [...root, 'mkdir', '-m', '700', '--', container, staging],
    'Creating the staging directory',
  );
  let kept = false;
  try {
    await reporter.group('Extract the paths (on the host)', async () => {
      let sentBytes = 0;
      // The base archive, then the delta over it (which also removes what was deleted).
      for (const archive of [run.filesArchive, ...(run.filesDelta ? [run.filesDelta] : [])]) {
        const sent = await extractMembers({
          host,
          root,
          archive,
          member: LAYOUT.data,
          target: staging,
          members: run.selection.members,
          incremental: archive === run.filesDelta,
          signal: context.signal,
        }).catch((error: unknown) => {
          if (context.signal.aborted)
            throw new InterruptedError('The restore was interrupted; nothing was changed.');
          throw error;
        });
        sentBytes += sent.sentBytes;
      }
      reporter.info(
        `Sent the host ${formatBytes(sentBytes)}: the restored members only, uncompressed (the whole archive is ${formatBytes(run.archiveBytes)} compressed).`,
      );
    });
    // From here on the steps are short and each leaves the instance consistent: they finish.
    const placement = await reporter.group('Put the files in place', async () => {
      const placed = await placeFiles(host, root, {
        staging,
        dataDir: instance.dataDir,
        container,
        rule: plan.conflicts,
        copySuffix: copySuffix(manifest),
        items: plan.paths,
        ...(encryption ? { keyModule: encryption.module } : {}),
        ...(encryption?.keyPairs ? { keyPairs: encryption.keyPairs } : {}),
      });
      for (const warning of placed.warnings) reporter.warning(warning);
      reporter.info(placementLine(placed, plan.conflicts));
      for (const s of placed.skipped.slice(0, 20))
        reporter.info(`Skipped ${s.user}/${s.path}: ${s.reason}.`);
      if (placed.skipped.length > 20)
        reporter.info(`… and ${placed.skipped.length - 20} more skipped.`);
      return placed;
    });
    kept = placement.replaced > 0;

    // ownCloud learns about the files in users' files/; versions and trash bin entries are
    // not scanned (ownCloud lists them from the disk).
    const scanned: string[] = [];
    const filesOnly: string[] = [];
    for (const r of placement.roots) {
      const shown = `${r.user}/${r.path}`;
      if (r.path === 'files' || r.path.startsWith('files/')) scanned.push(`/${shown}`);
      else filesOnly.push(shown);
    }
    if (scanned.length > 0 && placement.placed.length > 0)
      await reporter.group('Tell ownCloud (occ files:scan)', async () => {
        for (const path of scanned)
          await mustRun(
            host,
            occCommand(host, { installDir: instance.installDir, user: instance.owner }, [
              'files:scan',
              `--path=${path}`,
            ]),
            `occ files:scan --path=${path}`,
          );
        reporter.info(`Scanned ${scanned.join(', ')}.`);
      });
    if (filesOnly.length > 0)
      reporter.info(
        `${filesOnly.join(', ')}: restored as files (with their keys); occ files:scan does not scan versions and the trash bin, and ownCloud lists them from the disk.`,
      );

    let cacheRows = 0;
    if (encryption && run.index.length > 0) {
      const rows = cacheRowsFor(placement.placed, run.index);
      const missingKeys = placement.placed.filter(
        (p) => !p.keys && rows.some((r) => r.path === p.to && r.storage === `home::${p.user}`),
      );
      for (const p of missingKeys.slice(0, 10))
        reporter.warning(
          `The backup holds no keys for the encrypted ${p.user}/${p.from}: it cannot be read.`,
        );
      if (rows.length > 0)
        cacheRows = await reporter.group(
          'File cache: the encryption values at backup time',
          async () => {
            const engine = engineFor(instance.database.type);
            const count = await setCacheValues(
              host,
              engine,
              {
                connection: instance.database,
                client: run.client!,
                account: host.account,
                owner: instance.owner,
              },
              rows,
            );
            reporter.info(
              `${count} file cache row${count === 1 ? '' : 's'} hold the encrypted flag and sizes recorded at backup time.`,
            );
            return count;
          },
        );
    }
    return {
      manifest,
      target: host.label,
      placed: placement.placed,
      skipped: placement.skipped,
      unchanged: placement.unchanged,
      ...(kept ? { previous: container } : {}),
      replaced: placement.replaced,
      scanned,
      filesOnly,
      cacheRows,
      seconds: (performance.now() - run.started) / 1000,
    };
  } finally {
    // The staging directory always goes; the container only when it is empty (whatever a
    // failed run could not put back stays in it, and the message names it).
    const cleaned = await host.run(
      [
        ...root,
        'sh',
        '-c',
        'rm -rf -- "$1" && { rmdir -- "$2" 2>/dev/null || true; }',
        'sh',
        staging,
        container,
      ],
      { shielded: true },
    );
    if (cleaned.exitCode !== 0)
      reporter.warning(
        `Could not remove the staging directory ${staging}: ${cleaned.stderr.trim()}`,
      );
    else if (!kept) {
      const left = await host.run([...root, 'test', '-e', container], { shielded: true });
      if (left.exitCode === 0)
        reporter.warning(
          `${container} holds what this restore could not put back: look at it before removing it (owncloud-backup restore --cleanup).`,
        );
    }
  }
}

function placementLine(placement: Placement, rule: ConflictRule): string {
  const parts = [
    `${placement.placed.length} file${placement.placed.length === 1 ? '' : 's'} restored`,
  ];
  if (placement.unchanged > 0) parts.push(`${placement.unchanged} already as in the backup`);
  if (placement.replaced > 0)
    parts.push(
      `${placement.replaced} current item${placement.replaced === 1 ? '' : 's'} kept with the previous state`,
    );
  if (placement.skipped.length > 0)
    parts.push(
      `${placement.skipped.length} skipped${rule === 'keep-newer' ? ' (restore them with --overwrite, or beside the current ones with --as-copy)' : ''}`,
    );
  return `${parts.join(', ')}.`;
}

/** The recorded cache values of each placed file that was encrypted at backup time. Pure. */
export function cacheRowsFor(
  placed: readonly Placement['placed'][number][],
  index: readonly EncryptedFile[],
): CacheRowValues[] {
  const byKey = new Map(index.map((f) => [`${f.storage}\0${f.path}`, f]));
  const rows: CacheRowValues[] = [];
  for (const p of placed) {
    const recorded = byKey.get(`home::${p.user}\0${p.from}`);
    if (!recorded) continue;
    rows.push({
      storage: recorded.storage,
      path: p.to,
      encrypted: recorded.encrypted,
      size: recorded.size,
      unencryptedSize: recorded.unencryptedSize,
    });
  }
  return rows;
}

/** `restore --list USER/files/DIR`: what the backup holds under a path (no host involved). */
export async function listBackupPath(
  backupPath: string,
  given: UserPath,
  identity?: string,
): Promise<{ manifest: Manifest; entries: ArchiveEntry[] }> {
  const manifest = readManifest(backupPath);
  const member = memberOf(given.user, given.path);
  const entries = await withIdentity(identity, (identityFile) =>
    listBackupFiles(filesArchivesOf(backupPath, manifest, identityFile), (name) =>
      isAtOrBelow(name, member),
    ),
  );
  if (entries.length === 0)
    throw new BackupError(`The backup holds nothing under '${given.user}/${given.path}'.`);
  return { manifest, entries };
}
