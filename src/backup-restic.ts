// The orchestrator of a backup into a restic repository, restic running on the ownCloud
// host (host mode: no file content crosses the runner):
//   connect → discover → instance locked → preflight → restic found, repository opened →
//   leftovers of killed runs forgotten → files snapshot while the instance is live →
//   [maintenance on → files snapshot with the live one as parent (restic re-reads only what
//   changed) ‖ dump into the repository (--stdin) ‖ row counts ‖ encryption state and index
//   → maintenance restored] → encryption index → manifest snapshot (the backup is complete
//   once it exists) → live snapshot forgotten → retention → check.
// Every snapshot of one backup carries the tags owncloud-backup, instance=ID and
// backup=NAME, and part=files|database|encryption-index|manifest; the manifest snapshot
// also version=, db= and bytes=, so that `list` needs one `restic snapshots`. On any
// failure every snapshot of the backup is forgotten again, and retention never runs.
import { createReadStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { engineFor } from './database/index.ts';
import {
  IncompleteSnapshotError,
  ResticRepository,
  findRestic,
  repositoryUrlPassword,
  type Snapshot,
  type SnapshotSummary,
} from './destination/restic.ts';
import { describeError, InterruptedError, MaintenanceNotRestoredError } from './errors.ts';
import { asUser, type Host } from './host/host.ts';
import { connectStep } from './host/connect.ts';
import { acquireLock, holderName, type HeldLock } from './host/lock.ts';
import { hostname } from 'node:os';
import { backupName, dumpFileName, encryptionIndexName } from './naming.ts';
import { describePolicy, isRetentionOff, selectKept, type DatedBackup } from './retention.ts';
import type { BackupPlan, ResticPlan } from './settings.ts';
import type { BackupContext } from './backup.ts';
import { allOrNothing, inMaintenanceWindow } from './steps/window.ts';
import { discoverInstance, type Instance } from './steps/discover.ts';
import { dumpDatabase, type DumpSink } from './steps/dump.ts';
import { recordEncryption, type EncryptionOutcome } from './steps/encryption.ts';
import { MaintenanceGuard } from './steps/maintenance.ts';
import { formatBytes, preflight } from './steps/preflight.ts';
import { resticSelection } from './steps/restic-files.ts';
import { countRows } from './steps/row-counts.ts';
import { TOOL } from './tool.ts';
import { instanceRecords, type BackupFacts } from './manifest.ts';

/** The tag every snapshot of this tool carries. */
export const RESTIC_TAG = 'owncloud-backup';
/** The name the manifest has in its snapshot. */
export const RESTIC_MANIFEST_NAME = 'manifest.json';

export type ResticPart =
  'install' | 'files-live' | 'files' | 'database' | 'encryption-index' | 'manifest';

/** The format of the manifest snapshot's manifest.json. */
export const RESTIC_MANIFEST_FORMAT = 'owncloud-backup-restic/2';

/**
 * What the manifest snapshot holds: how the backup was made and how to restore it (the
 * instance, database and maintenance records as in a backup directory's manifest).
 */
export interface ResticManifest extends BackupFacts {
  format: typeof RESTIC_MANIFEST_FORMAT;
  tool: { name: string; version: string };
  finishedAt: string;
  repository: { display: string; resticVersion: string };
  /**
   * The snapshots of this backup, by part: the installation's (read before the window) and
   * the data directory's with the absolute paths (read inside it) restore together.
   */
  snapshots: { install: string; files: string; database: string; encryptionIndex?: string };
  files: BackupFacts['files'] & {
    /** The host paths in the snapshots, and the part of the instance each is. */
    parts: { source: string; member: string; part: string }[];
    excludes: { install: string[]; files: string[] };
    /** Data-dir-relative files deliberately not read (the live SQLite database). */
    leftOut: string[];
    filesNew: number;
    filesChanged: number;
    filesUnmodified: number;
  };
  database: BackupFacts['database'] & {
    /** The dump's name in its snapshot (at its root). */
    dumpFile: string;
  };
  encryption: EncryptionOutcome['state'] & { index?: { file: string; files: number } };
  /** What the repository received in all: bytes added after deduplication. */
  dataAdded: number;
}

export interface ResticBackupResult {
  name: string;
  manifest: ResticManifest;
  /** The manifest snapshot's id: the backup's id in `list`. */
  snapshot: string;
  retention?: { kept: string[]; removed: string[] };
  checked?: string;
}

/** The restic host name of an instance's snapshots: its instance id (stable across moves). */
export function resticHostname(instanceId: string): string {
  return instanceId === '' ? 'owncloud' : instanceId;
}

/** The tags of one part of one backup. Pure. */
export function partTags(instanceId: string, name: string, part: ResticPart): string[] {
  return [RESTIC_TAG, `instance=${resticHostname(instanceId)}`, `backup=${name}`, `part=${part}`];
}

/** The value of `key=` among a snapshot's tags. Pure. */
export function tagValue(snapshot: Pick<Snapshot, 'tags'>, key: string): string | undefined {
  const tag = (snapshot.tags ?? []).find((t) => t.startsWith(`${key}=`));
  return tag?.slice(key.length + 1);
}

/** The backups in the repository: their manifest snapshots, newest first. Pure. */
export interface ListedBackup {
  name: string;
  snapshot: string;
  time: string;
  instance: string;
  version: string;
  db: string;
  bytes: number;
}

export function listedBackups(snapshots: readonly Snapshot[]): ListedBackup[] {
  return snapshots
    .filter((s) => tagValue(s, 'part') === 'manifest' && (s.tags ?? []).includes(RESTIC_TAG))
    .map((s) => ({
      name: tagValue(s, 'backup') ?? '',
      snapshot: s.id,
      time: s.time,
      instance: tagValue(s, 'instance') ?? '',
      version: tagValue(s, 'version') ?? '',
      db: tagValue(s, 'db') ?? '',
      bytes: Number(tagValue(s, 'bytes') ?? 0),
    }))
    .sort((a, b) => b.time.localeCompare(a.time));
}

/** The backup names whose snapshots have no manifest: leftovers of runs that did not finish. Pure. */
export function incompleteBackups(snapshots: readonly Snapshot[]): Map<string, string[]> {
  const byName = new Map<string, { ids: string[]; complete: boolean }>();
  for (const s of snapshots) {
    const name = tagValue(s, 'backup');
    if (!name || !(s.tags ?? []).includes(RESTIC_TAG)) continue;
    const entry = byName.get(name) ?? { ids: [], complete: false };
    entry.ids.push(s.id);
    if (tagValue(s, 'part') === 'manifest') entry.complete = true;
    byName.set(name, entry);
  }
  const out = new Map<string, string[]>();
  for (const [name, entry] of byName) if (!entry.complete) out.set(name, entry.ids);
  return out;
}

/** Every secret of a restic plan: the password, the backend values, a URL's password. */
export function resticSecretValues(
  restic: Pick<ResticPlan, 'repository' | 'password' | 'env'>,
): string[] {
  const urlPassword = repositoryUrlPassword(restic.repository);
  return [restic.password, ...Object.values(restic.env), ...(urlPassword ? [urlPassword] : [])];
}

function repositoryOf(host: Host, plan: ResticPlan, prefix: string[]) {
  return async (): Promise<ResticRepository> => {
    const program = await findRestic(host, prefix);
    return new ResticRepository(
      host,
      {
        repository: plan.repository,
        password: plan.password,
        env: plan.env,
        options: plan.options,
      },
      program,
      prefix,
    );
  };
}

export async function runResticBackup(
  plan: BackupPlan,
  context: BackupContext,
): Promise<ResticBackupResult> {
  const restic = plan.restic;
  if (!restic) throw new Error('runResticBackup needs a restic plan');
  const { reporter, signal } = context;
  const startedAt = context.startedAt ?? new Date();
  const name = backupName(startedAt);
  const interrupted = () => {
    if (signal.aborted) throw new InterruptedError();
  };
  let host: Host | undefined;
  let instanceLock: HeldLock | undefined;
  let repository: ResticRepository | undefined;
  /** Once a snapshot of this backup may exist: on failure, every one of them is forgotten. */
  let started = false;
  let instance: Instance | undefined;
  let complete = false;
  const scratch = mkdtempSync(join(tmpdir(), 'owncloud-backup-restic-'));
  try {
    host = await connectStep(reporter, plan.target, context.secrets, context.ssh);
    const connected = host;
    interrupted();
    const found = await reporter.group('Discover', async () => {
      const discovered = await discoverInstance(connected, plan, context.secrets);
      reporter.info(
        `${discovered.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud'} ${discovered.version} (instance ${discovered.instanceId}) in ${discovered.installDir}`,
      );
      return discovered;
    });
    instance = found;
    instanceLock = await acquireLock(
      connected,
      found.installDir,
      holderName(process.pid, hostname(), startedAt),
      (heldBy) =>
        `Another backup of the instance in ${found.installDir} on ${connected.label} is running (${heldBy}). Wait for it to finish.`,
      (argv) => asUser(connected.account, found.owner, argv),
    );
    interrupted();
    const engine = engineFor(found.database.type);
    const checked = await reporter.group('Preflight', () =>
      preflight(connected, plan, found, engine, reporter, { runnerFiles: false }),
    );
    const { tool, fileSet } = checked;
    const selection = resticSelection(fileSet);
    const repo = await reporter.group('Restic repository', async () => {
      const opened = await repositoryOf(connected, restic, fileSet.readAs)();
      const how = await opened.open(restic.init, { signal });
      reporter.info(
        `${how === 'created' ? 'Created' : 'Opened'} the restic repository ${opened.label} from ${connected.label}.`,
      );
      // Under the instance lock, a backup of this instance without its manifest is a
      // killed run's leftover.
      const leftovers = incompleteBackups(
        await opened.snapshots({
          tags: [RESTIC_TAG, `instance=${resticHostname(found.instanceId)}`],
        }),
      );
      for (const [leftover, ids] of leftovers) {
        await opened.forget(ids);
        reporter.warning(
          `Forgot the ${ids.length} snapshot${ids.length === 1 ? '' : 's'} of ${leftover}, a backup an interrupted run left incomplete.`,
        );
      }
      return opened;
    });
    repository = repo;
    if (restic.restoreTestAsked)
      reporter.warning(
        `The restore test is not run for a restic repository (not available yet); ${restic.check.kind === 'none' ? 'set the input check (metadata or read-data-subset=N%) to have restic check the repository after the backup' : 'restic checks the repository after the backup (check)'}.`,
      );
    interrupted();
    const hostnameTag = resticHostname(found.instanceId);
    const tags = (part: ResticPart) => partTags(found.instanceId, name, part);
    const filesBackup = (
      part: ResticPart,
      stepSignal: AbortSignal,
      parent?: string,
    ): Promise<SnapshotSummary> =>
      repo.backupPaths({
        ...(part === 'install' ? selection.install : selection.live),
        tags: tags(part),
        hostname: hostnameTag,
        time: startedAt,
        signal: stepSignal,
        ...(parent ? { parent } : {}),
        oneFileSystem: true,
      });

    started = true;
    const { install, live } = await reporter.group(
      'Files (restic, while the instance is live)',
      async () => {
        // The installation's part (config.php among it) is kept as it is before the window.
        const installed = await filesBackup('install', signal);
        reporter.info(
          `Installation: ${installed.filesNew + installed.filesChanged + installed.filesUnmodified} files, ${formatBytes(installed.totalBytesProcessed)} (snapshot ${installed.id}).`,
        );
        try {
          const summary = await filesBackup('files-live', signal);
          reporter.info(
            `Data: ${summary.filesNew + summary.filesChanged + summary.filesUnmodified} files, ${formatBytes(summary.totalBytesProcessed)} read; ${formatBytes(summary.dataAdded)} new in the repository (snapshot ${summary.id}).`,
          );
          return { install: installed, live: summary };
        } catch (error) {
          // Files that vanish or change while read are normal on a live server: the pass
          // inside the maintenance window reads them again.
          if (!(error instanceof IncompleteSnapshotError)) throw error;
          reporter.info(
            `Some files could not be read while the instance was live (snapshot ${error.summary.id}); the pass inside the maintenance window reads them again.`,
          );
          return { install: installed, live: error.summary };
        }
      },
    );
    interrupted();

    const maintenance = plan.maintenanceMode
      ? new MaintenanceGuard(
          connected,
          { installDir: found.installDir, user: found.owner },
          (m) => reporter.info(m),
          context.maintenanceRestoreSeconds,
          context.onMaintenance,
        )
      : undefined;
    const dumpContext = {
      connection: found.database,
      tool,
      account: connected.account,
      owner: found.owner,
    };
    const dumpName = dumpFileName(startedAt, 'zstd').replace(/\.zst$/, '');
    const indexPath = join(scratch, encryptionIndexName(startedAt, 'zstd'));
    const { files, dump, rowCounts, encryption } = await reporter.group(
      maintenance
        ? 'Maintenance window (files snapshot, database dump, row counts, encryption index)'
        : 'Files snapshot, database dump, row counts and encryption index',
      () =>
        inMaintenanceWindow(maintenance, reporter, async () => {
          const [filesDone, dumped, counted, encryptionDone] = await allOrNothing(
            signal,
            (stepSignal) => {
              const dumping = dumpDatabase({
                host: connected,
                engine,
                connection: found.database,
                tool,
                owner: found.owner,
                into: resticDumpSink(repo, {
                  filename: dumpName,
                  tags: tags('database'),
                  hostname: hostnameTag,
                  time: startedAt,
                  signal: stepSignal,
                }),
                idleTimeoutSeconds: plan.dumpTimeoutSeconds,
                signal: stepSignal,
              });
              return [
                filesBackup('files', stepSignal, live.id),
                dumping,
                countRows(connected, engine, dumpContext, stepSignal, {
                  seconds: plan.dumpTimeoutSeconds,
                  after: dumping,
                }),
                recordEncryption(connected, engine, dumpContext, {
                  indexPath,
                  compression: 'zstd',
                  signal: stepSignal,
                  timeout: { seconds: plan.dumpTimeoutSeconds, after: dumping },
                }),
              ] as const;
            },
          );
          reporter.info(
            `Files: ${filesDone.filesNew} new, ${filesDone.filesChanged} changed, ${filesDone.filesUnmodified} unchanged since the live pass; snapshot ${filesDone.id}.`,
          );
          reporter.info(
            `Database dump: ${formatBytes(dumped.rawBytes)} into ${dumpName} (snapshot ${dumped.id}).`,
          );
          const tables = Object.keys(counted).length;
          reporter.info(
            `Row counts: ${tables} table${tables === 1 ? '' : 's'}, ${Object.values(counted).reduce((sum, n) => sum + n, 0)} rows.`,
          );
          return { files: filesDone, dump: dumped, rowCounts: counted, encryption: encryptionDone };
        }),
    );
    interrupted();

    let index: SnapshotSummary | undefined;
    if (encryption.index) {
      const stored = repo.backupStdin({
        filename: encryptionIndexName(startedAt, 'zstd'),
        tags: tags('encryption-index'),
        hostname: hostnameTag,
        time: startedAt,
        signal,
      });
      createReadStream(indexPath).pipe(stored.stdin);
      index = await stored.done;
    }
    interrupted();

    const records = instanceRecords({
      source: plan.target.kind === 'ssh' ? connected.label : `${hostname()} (local)`,
      transport: plan.target.kind,
      instance: found,
      tool,
      fileSet,
      maintenance: {
        managed: maintenance !== undefined,
        window: maintenance?.window ?? { switchedByUs: false, priorState: found.maintenance },
        seconds: maintenance?.seconds() ?? 0,
      },
      dumpBytes: dump.rawBytes,
      rowCounts,
      rowCountsInWindow: maintenance !== undefined,
    });
    const count = (s: SnapshotSummary) => s.filesNew + s.filesChanged + s.filesUnmodified;
    const manifest: ResticManifest = {
      format: RESTIC_MANIFEST_FORMAT,
      tool: { name: TOOL.name, version: TOOL.version },
      name,
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      source: records.source,
      repository: { display: repo.label, resticVersion: repo.version },
      instance: records.instance,
      snapshots: {
        install: install.id,
        files: files.id,
        database: dump.id,
        ...(index ? { encryptionIndex: index.id } : {}),
      },
      files: {
        ...records.files,
        parts: fileSet.parts.map((p) => ({ source: p.source, member: p.member, part: p.part })),
        excludes: { install: selection.install.excludes, files: selection.live.excludes },
        leftOut: fileSet.dataExclude,
        filesNew: files.filesNew,
        filesChanged: files.filesChanged,
        filesUnmodified: files.filesUnmodified,
        fileCount: count(install) + count(files),
        bytes: install.totalBytesProcessed + files.totalBytesProcessed,
      },
      database: { ...records.database, dumpFile: dumpName },
      encryption: {
        ...encryption.state,
        ...(encryption.index
          ? {
              index: {
                file: encryptionIndexName(startedAt, 'zstd'),
                files: encryption.index.files,
              },
            }
          : {}),
      },
      maintenance: records.maintenance,
      dataAdded:
        install.dataAdded +
        live.dataAdded +
        files.dataAdded +
        dump.dataAdded +
        (index?.dataAdded ?? 0),
    };
    const stored = repo.backupStdin({
      filename: RESTIC_MANIFEST_NAME,
      tags: [
        ...tags('manifest'),
        `version=${found.version}`,
        `db=${found.database.type}`,
        `bytes=${install.totalBytesProcessed + files.totalBytesProcessed + dump.rawBytes}`,
      ],
      hostname: hostnameTag,
      time: startedAt,
      signal,
    });
    Readable.from([`${JSON.stringify(manifest, null, 2)}\n`]).pipe(stored.stdin);
    const manifestSnapshot = await stored.done;
    complete = true;
    reporter.info(`Backup ${name} complete: manifest snapshot ${manifestSnapshot.id}.`);
    // The live pass was only the parent of the window's snapshot.
    await repo
      .forget([live.id])
      .catch((error: unknown) =>
        reporter.warning(
          `Could not forget the live pass's snapshot ${live.id} (the backup is complete): ${describeError(error)}`,
        ),
      );

    const retention = await applyResticRetention(plan, context, repo, found.instanceId, name);
    let checkedRepository: string | undefined;
    if (restic.check.kind !== 'none') {
      const what =
        restic.check.kind === 'metadata'
          ? 'restic check (metadata)'
          : `restic check --read-data-subset ${restic.check.percent}%`;
      await reporter.group(what, async () => {
        await repo.check(
          restic.check.kind === 'read-data-subset'
            ? { readDataSubsetPercent: restic.check.percent }
            : {},
        );
        reporter.info(`${what}: no errors were found.`);
      });
      checkedRepository = what;
    }
    return {
      name,
      manifest,
      snapshot: manifestSnapshot.id,
      ...(retention ? { retention } : {}),
      ...(checkedRepository ? { checked: checkedRepository } : {}),
    };
  } catch (error) {
    if (started && !complete && repository && instance) {
      const repo = repository;
      const ours = await repo
        .snapshots({ tags: [RESTIC_TAG, `backup=${name}`] })
        .catch(() => undefined);
      if (ours === undefined)
        reporter.warning(
          `Could not list this run's snapshots to forget them: the next backup of the instance forgets them.`,
        );
      else if (ours.length > 0)
        await repo
          .forget(ours.map((s) => s.id))
          .then(() =>
            reporter.info(
              `Forgot the ${ours.length} snapshot${ours.length === 1 ? '' : 's'} of this incomplete backup.`,
            ),
          )
          .catch(() =>
            reporter.warning(
              'Could not forget the snapshots of this incomplete backup: the next backup of the instance forgets them.',
            ),
          );
    }
    if (signal.aborted && error instanceof MaintenanceNotRestoredError)
      throw new InterruptedError(`The backup was interrupted. ${describeError(error)}`);
    if (signal.aborted) throw new InterruptedError();
    throw error;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
    await instanceLock?.release();
    await host?.close();
  }
}

/** The dump into the repository as a file of its own (`restic backup --stdin`). */
function resticDumpSink(
  repo: ResticRepository,
  o: Parameters<ResticRepository['backupStdin']>[0],
): DumpSink<SnapshotSummary> {
  let done: Promise<SnapshotSummary> | undefined;
  return {
    store(source) {
      const stored = repo.backupStdin(o);
      done = stored.done;
      source.pipe(stored.stdin);
      source.once('error', (error) => stored.stdin.destroy(error));
      return stored.done;
    },
    // The whole backup's snapshots are forgotten on failure; this one is among them.
    discard: async () => {
      await done?.catch(() => {});
    },
  };
}

/**
 * The retention policy over this instance's complete backups (their manifest snapshots):
 * every snapshot of a backup no rule keeps is forgotten, then the repository is pruned.
 * The backup just written is always kept. Failing here is a warning: the backup is complete.
 */
async function applyResticRetention(
  plan: BackupPlan,
  context: BackupContext,
  repo: ResticRepository,
  instanceId: string,
  justWritten: string,
): Promise<{ kept: string[]; removed: string[] } | undefined> {
  const { reporter, signal } = context;
  if (isRetentionOff(plan.retention)) return undefined;
  const policy = `${describePolicy(plan.retention)}; UTC`;
  if (signal.aborted) {
    reporter.warning(`Retention (${policy}) skipped: the run was interrupted. Nothing removed.`);
    return undefined;
  }
  return reporter.group(`Retention (${policy})`, async () => {
    try {
      const all = await repo.snapshots({
        tags: [RESTIC_TAG, `instance=${resticHostname(instanceId)}`],
      });
      const backups: DatedBackup[] = listedBackups(all).map((b) => ({
        name: b.name,
        time: new Date(b.time),
      }));
      const decision = selectKept(backups, plan.retention, justWritten);
      const removed = new Set(decision.remove.map((b) => b.name));
      const ids = all.filter((s) => removed.has(tagValue(s, 'backup') ?? '')).map((s) => s.id);
      for (const backup of decision.remove)
        reporter.info(
          `Forgetting ${backup.name}: not kept (${(decision.reasons.get(backup.name) ?? []).join('; ')}).`,
        );
      if (ids.length > 0) await repo.forget(ids, { prune: true });
      reporter.info(`Retention: kept ${decision.keep.length}, removed ${decision.remove.length}.`);
      return {
        kept: decision.keep.map((b) => b.name),
        removed: decision.remove.map((b) => b.name),
      };
    } catch (error) {
      reporter.warning(
        `Retention stopped: ${describeError(error).replace(/\.$/, '')}. The backup itself is complete.`,
      );
      return undefined;
    }
  });
}

/** The complete backups of the repository, as `list` shows them. */
export async function listResticBackups(
  plan: Pick<BackupPlan, 'target' | 'restic'>,
  context: Pick<BackupContext, 'reporter' | 'secrets' | 'ssh'>,
): Promise<ListedBackup[]> {
  const restic = plan.restic;
  if (!restic) throw new Error('listResticBackups needs a restic plan');
  const host = await connectStep(context.reporter, plan.target, context.secrets, context.ssh);
  try {
    const repo = await repositoryOf(host, restic, [])();
    await repo.open(false);
    return listedBackups(await repo.snapshots({ tags: [RESTIC_TAG] }));
  } finally {
    await host.close();
  }
}

/** A path of the files snapshot: where a member of the instance's layout was on the host. */
export function memberSource(manifest: ResticManifest, member: string): string | undefined {
  const parts = [...manifest.files.parts].sort((a, b) => b.member.length - a.member.length);
  for (const part of parts)
    if (member === part.member || member.startsWith(`${part.member}/`))
      return `${part.source}${member.slice(part.member.length)}`;
  return undefined;
}
