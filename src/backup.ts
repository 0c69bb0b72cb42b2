// The orchestrator: a validated plan in, a finished, dated backup directory out.
//   backup-dir checked and locked (stale incomplete backups removed) → connect → discover
//   → instance locked → preflight → files (base archive, streamed from the host while the
//   instance is live) → [maintenance on → files (delta archive: what changed) ‖ dump ‖ row
//   counts ‖ encryption state and index → maintenance restored] → restore test → manifest
//   → rename into place → retention (the complete backups the policy does not keep are
//   removed, still under the backup-dir lock).
// A backup directory only gets its final name once everything in it is written and
// checked; on any failure the partial one is removed, and retention never runs.
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hostname } from 'node:os';
import { engineFor } from './database/index.ts';
import {
  BackupError,
  describeError,
  InterruptedError,
  MaintenanceNotRestoredError,
} from './errors.ts';
import { asUser, type Host } from './host/host.ts';
import { acquireLock, holderName, type HeldLock } from './host/lock.ts';
import { LocalHost } from './host/local.ts';
import { isNoSpace, noSpaceError, removeTree } from './host/runner.ts';
import type { SshOptions } from './host/ssh.ts';
import { connectStep } from './host/connect.ts';
import {
  buildManifest,
  checksumsText,
  describeEncryption,
  type EncryptionRecord,
  type Manifest,
} from './manifest.ts';
import {
  backupName,
  CHECKSUMS_NAME,
  dumpFileName,
  encryptionIndexName,
  filesArchiveName,
  filesDeltaArchiveName,
  INCOMPLETE_SUFFIX,
  MANIFEST_NAME,
} from './naming.ts';
import type { Reporter } from './report.ts';
import { DEFAULT_PROGRESS_SECONDS, StepProgress } from './progress.ts';
import type { Secrets } from './secrets.ts';
import type { BackupPlan } from './settings.ts';
import {
  checkBackupDir,
  createBackupDir,
  pruneBackups,
  removeStaleBackups,
  type RetentionOutcome,
} from './steps/backup-dir.ts';
import { describePolicy, isRetentionOff } from './retention.ts';
import { allOrNothing, inMaintenanceWindow } from './steps/window.ts';
import { discoverInstance } from './steps/discover.ts';
import { dumpDatabase, dumpFile, type DumpResult } from './steps/dump.ts';
import {
  createSnapshotDir,
  deltaSnapshot,
  FileTally,
  LAYOUT,
  removeSnapshotDir,
  streamFiles,
  type StreamStats,
} from './steps/files.ts';
import { MaintenanceGuard, type MaintenanceRecord } from './steps/maintenance.ts';
import { formatBytes, preflight } from './steps/preflight.ts';
import { recordEncryption, type EncryptionOutcome } from './steps/encryption.ts';
import { countRows } from './steps/row-counts.ts';
import {
  ListingFacts,
  restoreTestLine,
  runRestoreTest,
  type RestoreTestRecord,
} from './steps/restore-test.ts';
import type { ArchiveFile, WrittenFile } from './steps/compress.ts';
import {
  AGE_SUFFIX,
  AgeFiles,
  checkRecipients,
  describeRecipient,
  recipientRecords,
} from './steps/age.ts';

export interface BackupResult {
  /** The finished backup directory. */
  directory: string;
  manifest: Manifest;
  manifestPath: string;
  dumpPath: string;
  filesArchivePath: string;
  /** The files changed inside the maintenance window (absent without maintenance mode). */
  filesDeltaPath?: string;
  /** The index of the encrypted files, when the instance encrypts. */
  encryptionIndexPath?: string;
  /** Total size of the backup's files. */
  sizeBytes: number;
  /** What the retention policy removed (absent when no keep-* rule is on, or interrupted). */
  retention?: RetentionOutcome;
}

export interface BackupContext {
  reporter: Reporter;
  secrets: Secrets;
  /** Aborted on SIGINT/SIGTERM or cancellation: the run stops, maintenance mode is restored. */
  signal: AbortSignal;
  /** When the run started (names the backup); default now. */
  startedAt?: Date;
  ssh?: SshOptions;
  /** Seconds between progress lines of the long steps (default 10). */
  progressSeconds?: number;
  /** Seconds to keep retrying to restore maintenance mode through a broken link. */
  maintenanceRestoreSeconds?: number;
  /**
   * Told before maintenance mode changes (and once each change is confirmed), so the
   * action's post step can put it back if main dies at any moment.
   */
  onMaintenance?: (record: MaintenanceRecord) => void;
  /** Told the incomplete backup directory's path before it is created. */
  onWorkDir?: (path: string) => void;
}

export async function runBackup(plan: BackupPlan, context: BackupContext): Promise<BackupResult> {
  const { reporter } = context;
  const startedAt = context.startedAt ?? new Date();
  const name = backupName(startedAt);
  const finalDir = join(plan.backupDir, name);
  const workDir = `${finalDir}${INCOMPLETE_SUFFIX}`;

  checkBackupDir(plan.backupDir);
  const holder = holderName(process.pid, hostname(), startedAt);
  // One run at a time writes into a backup directory; holding it, every incomplete backup
  // there is a killed run's leftover.
  const lockBackupDir = async (): Promise<HeldLock> => {
    const lock = await acquireLock(
      new LocalHost(),
      plan.backupDir,
      holder,
      (heldBy) =>
        `Another backup is running with backup-dir '${plan.backupDir}' (${heldBy}). Wait for it to finish, or choose another backup-dir.`,
    );
    try {
      await removeStaleBackups(plan.backupDir, (path, bytes) =>
        reporter.warning(
          `Removed an incomplete backup an interrupted run left behind: ${path} (${formatBytes(bytes)}).`,
        ),
      );
    } catch (error) {
      await lock.release();
      throw error;
    }
    return lock;
  };
  // An existing backup dir is held at once (its leftovers would count against the free
  // space); a new one is created and held only once the preflight has accepted it.
  let dirLock = existsSync(plan.backupDir) ? await lockBackupDir() : undefined;
  // age's files for this run (recipients; the identity for the restore test), checked
  // before the host is touched.
  const ageFiles = plan.encryptTo ? new AgeFiles(context.ssh?.runtimeDir) : undefined;
  try {
    let age: AgeRun | undefined;
    if (ageFiles && plan.encryptTo) {
      const recipientsFile = ageFiles.recipientsFile(plan.encryptTo);
      await checkRecipients(recipientsFile, 'encrypt-to');
      age = {
        recipientsFile,
        ...(plan.identity ? { identityFile: ageFiles.identityFile(plan.identity) } : {}),
      };
      reporter.info(
        `Encrypting every archive and the dump (age) to ${plan.encryptTo.length} recipient${plan.encryptTo.length === 1 ? '' : 's'}: ${plan.encryptTo.map(describeRecipient).join(', ')}.`,
      );
    }
    const result = await backUp(plan, context, {
      startedAt,
      name,
      finalDir,
      workDir,
      holder,
      holdBackupDir: async () => {
        if (dirLock) return;
        createBackupDir(plan.backupDir);
        dirLock = await lockBackupDir();
      },
      ...(age ? { age } : {}),
    });
    // Only a finished backup, in its final name, lets older ones go; still under the lock.
    const retention = await applyRetention(plan, context, name);
    return { ...result, ...(retention ? { retention } : {}) };
  } finally {
    ageFiles?.dispose();
    await dirLock?.release();
  }
}

async function backUp(
  plan: BackupPlan,
  context: BackupContext,
  run: {
    startedAt: Date;
    name: string;
    finalDir: string;
    workDir: string;
    holder: string;
    /** Creates the backup directory if it is new, and holds its lock. */
    holdBackupDir: () => Promise<void>;
    /** Set when the backup is encrypted. */
    age?: AgeRun;
  },
): Promise<BackupResult> {
  const { reporter, signal } = context;
  const { startedAt, name, finalDir, workDir, age } = run;
  // An encrypted backup's files are age files, named so.
  const named = (fileName: string) => (age ? `${fileName}${AGE_SUFFIX}` : fileName);
  const encryptTo = age ? { encryptTo: age.recipientsFile } : {};
  const interrupted = () => {
    if (signal.aborted) throw new InterruptedError();
  };

  let host: Host | undefined;
  /** Set once this run created the work dir: only then is it this run's to remove. */
  let ownsWorkDir = false;
  let instanceLock: HeldLock | undefined;
  /** The host's private directory for tar's snapshot file, once made (with what removes it). */
  let snapshotDir: { path: string; remove: () => Promise<void> } | undefined;
  try {
    host = await connectStep(reporter, plan.target, context.secrets, context.ssh);
    const connected = host;
    interrupted();

    const instance = await reporter.group('Discover', async () => {
      const found = await discoverInstance(connected, plan, context.secrets);
      const db = found.database;
      reporter.info(
        `${found.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud'} ${found.version} (instance ${found.instanceId}) in ${found.installDir}`,
      );
      reporter.info(
        `Data directory ${found.dataDir}; database ${db.type} '${db.name}'${db.type === 'sqlite' ? ` (${db.file})` : ` as '${db.user}'`}; occ runs as ${found.owner}.`,
      );
      return found;
    });
    // One backup of an instance at a time, from whichever runner: the lock is on the
    // installation directory itself, on the host.
    instanceLock = await acquireLock(
      connected,
      instance.installDir,
      run.holder,
      (heldBy) =>
        `Another backup of the instance in ${instance.installDir} on ${connected.label} is running (${heldBy}). Wait for it to finish.`,
      (argv) => asUser(connected.account, instance.owner, argv),
    );
    interrupted();

    const engine = engineFor(instance.database.type);
    const checked = await reporter.group('Preflight', () =>
      preflight(connected, plan, instance, engine, reporter),
    );
    const { tool, fileSet } = checked;
    const progress = (label: string, expectedBytes?: number) =>
      new StepProgress(label, {
        intervalSeconds: context.progressSeconds ?? DEFAULT_PROGRESS_SECONDS,
        now: () => performance.now(),
        emit: (line) => reporter.info(line),
        ...(expectedBytes !== undefined ? { expectedBytes } : {}),
      });
    interrupted();

    // Only now, with the plan checked (backup-dir not inside what is copied), is anything
    // created: the backup dir if it is new (and locked), then this run's work dir.
    await run.holdBackupDir();
    if (existsSync(finalDir) || existsSync(workDir))
      throw new BackupError(`${finalDir} exists already: not overwriting a backup.`);
    // Recorded before it exists: a process that outlives this one removes it if we die.
    context.onWorkDir?.(workDir);
    mkdirSync(workDir, { mode: 0o700 });
    ownsWorkDir = true;
    const made = await createSnapshotDir(connected);
    snapshotDir = { path: made, remove: () => removeSnapshotDir(connected, made) };
    const snapshot = `${made}/snapshot`;
    const tally = new FileTally(
      fileSet.parts
        .filter(
          (p) =>
            p.part === 'absolute' &&
            fileSet.kinds?.[p.member.slice(LAYOUT.absolute.length)] !== 'dir',
        )
        .map((p) => p.member),
    );
    const facts = new ListingFacts();
    const base = await reporter.group(
      'Files (read in place, before maintenance mode)',
      async () => {
        const reading = progress('Files', checked.sizeBytes);
        const config = { dir: false, file: false };
        const written = await streamFiles(connected, fileSet, {
          phase: 'base',
          snapshot,
          path: join(workDir, named(filesArchiveName(startedAt, plan.compression))),
          compression: plan.compression,
          ...encryptTo,
          signal,
          progress: reading,
          onMember: (member) => {
            tally.base(member);
            facts.add(member.name);
            if (member.name === `${LAYOUT.install}/config`)
              config.dir = member.type === 'directory';
            if (member.name === `${LAYOUT.install}/config/config.php`)
              config.file = member.type === 'file' && member.size > 0;
          },
        });
        reading.finish();
        if (!config.dir || !config.file)
          throw new BackupError(
            `config.php did not arrive in the backup (${LAYOUT.install}/config/config.php is missing, empty or a symlink after the copy): without it the backup cannot be restored. Check the exclude patterns.`,
          );
        reporter.info(
          `${written.files} files, ${formatBytes(written.bytes)} read; ${written.path.split('/').pop()}: ${formatBytes(written.size)}, sha256 ${written.sha256}.`,
        );
        if (written.changedWhileRead)
          reporter.info(
            'Some files changed or vanished while being read (normal on a live server); the pass inside the maintenance window catches up.',
          );
        return written;
      },
    );
    interrupted();

    // Before the window: the delta pass's snapshot, prepared from the base pass's.
    const windowSnapshot = plan.maintenanceMode
      ? await deltaSnapshot(connected, snapshot)
      : undefined;
    const maintenance = plan.maintenanceMode
      ? new MaintenanceGuard(
          connected,
          { installDir: instance.installDir, user: instance.owner },
          (m) => reporter.info(m),
          context.maintenanceRestoreSeconds,
          context.onMaintenance,
        )
      : undefined;
    const dumpContext = {
      connection: instance.database,
      tool,
      account: connected.account,
      owner: instance.owner,
    };
    const {
      dumped: dump,
      delta,
      rowCounts,
      encryption,
    } = await reporter.group(
      maintenance
        ? 'Maintenance window (files delta, database dump, row counts, encryption index)'
        : 'Database dump, row counts and encryption index',
      () =>
        maintenanceWindow(maintenance, context, {
          // Inside the window only what changed since the base pass is read (tar's level 1,
          // with every directory's entries, so deletions are recorded too); install files
          // (config.php among them) keep the state found before the window.
          delta: (stepSignal) =>
            maintenance && windowSnapshot
              ? streamFiles(connected, fileSet, {
                  phase: 'delta',
                  snapshot: windowSnapshot,
                  path: join(workDir, named(filesDeltaArchiveName(startedAt, plan.compression))),
                  compression: plan.compression,
                  ...encryptTo,
                  signal: stepSignal,
                  onMember: (member) => tally.delta(member),
                })
              : Promise.resolve(undefined),
          dump: async (stepSignal) => {
            const dumping = progress('Database dump');
            const dumped = await dumpDatabase({
              host: connected,
              engine,
              connection: instance.database,
              tool,
              owner: instance.owner,
              into: dumpFile(
                join(workDir, named(dumpFileName(startedAt, plan.compression))),
                plan.compression,
                age?.recipientsFile,
              ),
              idleTimeoutSeconds: plan.dumpTimeoutSeconds,
              signal: stepSignal,
              progress: dumping,
            });
            dumping.finish();
            return dumped;
          },
          // Beside the dump, so that a restore can be checked table by table against the
          // state the dump holds.
          count: (stepSignal, dumping) =>
            countRows(connected, engine, dumpContext, stepSignal, {
              seconds: plan.dumpTimeoutSeconds,
              after: dumping,
            }),
          // Beside the dump too: the encrypted files' cache entries as the dump holds them.
          encryption: (stepSignal, dumping) =>
            recordEncryption(connected, engine, dumpContext, {
              indexPath: join(workDir, named(encryptionIndexName(startedAt, plan.compression))),
              compression: plan.compression,
              ...encryptTo,
              signal: stepSignal,
              timeout: { seconds: plan.dumpTimeoutSeconds, after: dumping },
            }),
        }),
    );
    const encryptionRecord: EncryptionRecord = {
      ...encryption.state,
      ...(encryption.index
        ? {
            index: {
              name: encryption.index.file.path.split('/').pop()!,
              files: encryption.index.files,
            },
          }
        : {}),
    };
    if (delta?.changedWhileRead)
      reporter.warning(
        `Files changed or vanished inside the maintenance window while they were read (the copies in the backup may be cut mid-write): ${delta.complaints.slice(-5).join(' ')}`,
      );
    await snapshotDir.remove();
    snapshotDir = undefined;
    const stats = tally.total(delta !== undefined);
    interrupted();

    const files = base;
    // Outside the maintenance window: the window does not grow by the test's time.
    const readable = (path: string): ArchiveFile => ({
      path,
      compression: plan.compression,
      ...(age ? { age: { identityFile: age.identityFile } } : {}),
    });
    const restoreTest = !plan.restoreTest
      ? undefined
      : age && !age.identityFile
        ? untestedEncrypted(reporter)
        : await reporter.group('Restore test (throwaway database on the runner)', () =>
            testRestore(
              engine,
              context,
              {
                dump: readable(dump.path),
                filesArchive: readable(files.path),
                database: { ...instance.database, rowCounts, dumpToolVersion: tool.version },
              },
              facts,
            ),
          );
    interrupted();

    const manifest = buildManifest({
      name,
      startedAt,
      finishedAt: new Date(),
      source: plan.target.kind === 'ssh' ? connected.label : `${hostname()} (local)`,
      transport: plan.target.kind,
      instance,
      tool,
      fileSet,
      stats,
      maintenance: maintenance
        ? { managed: true, window: maintenance.window, seconds: maintenance.seconds() }
        : {
            managed: false,
            window: { switchedByUs: false, priorState: instance.maintenance },
            seconds: 0,
          },
      archives: [
        { file: files, role: 'files', compression: plan.compression },
        ...(delta
          ? [
              {
                file: delta as WrittenFile,
                role: 'files-delta' as const,
                compression: plan.compression,
              },
            ]
          : []),
        { file: dump, role: 'database', compression: plan.compression },
        ...(encryption.index
          ? [
              {
                file: encryption.index.file,
                role: 'encryption-index' as const,
                compression: plan.compression,
              },
            ]
          : []),
      ],
      encryption: encryptionRecord,
      ...(plan.encryptTo ? { encryptedTo: recipientRecords(plan.encryptTo) } : {}),
      dumpBytes: dump.rawBytes,
      rowCounts,
      rowCountsInWindow: maintenance !== undefined,
      // tar on the host records every file's owner as it finds it, whoever reads it.
      ownersKept: true,
      restoreHint: engine.restoreHint,
      ...(restoreTest ? { restoreTest } : {}),
    });
    const { archives } = manifest;
    writeSmallFile(join(workDir, CHECKSUMS_NAME), checksumsText(archives));
    writeSmallFile(join(workDir, MANIFEST_NAME), `${JSON.stringify(manifest, null, 2)}\n`);
    // Only a complete backup gets its final name.
    renameSync(workDir, finalDir);
    return {
      directory: finalDir,
      manifest,
      manifestPath: join(finalDir, MANIFEST_NAME),
      dumpPath: join(finalDir, dump.path.split('/').pop()!),
      filesArchivePath: join(finalDir, files.path.split('/').pop()!),
      ...(delta ? { filesDeltaPath: join(finalDir, delta.path.split('/').pop()!) } : {}),
      ...(encryption.index
        ? { encryptionIndexPath: join(finalDir, encryptionRecord.index!.name) }
        : {}),
      sizeBytes: files.size + (delta?.size ?? 0) + dump.size + (encryption.index?.file.size ?? 0),
    };
  } catch (error) {
    if (ownsWorkDir)
      await removeTree(workDir, { prefix: [], keepsOwners: false }).catch((cleanup: unknown) =>
        reporter.warning(`Could not remove the incomplete backup: ${describeError(cleanup)}`),
      );
    if (signal.aborted && error instanceof MaintenanceNotRestoredError)
      throw new InterruptedError(`The backup was interrupted. ${describeError(error)}`);
    if (signal.aborted) throw new InterruptedError();
    throw error;
  } finally {
    await snapshotDir?.remove().catch(() => {});
    await instanceLock?.release();
    await host?.close();
  }
}

/** What age needs for an encrypted backup: the recipients, and the identity if given. */
interface AgeRun {
  recipientsFile: string;
  /** The identity that decrypts the backup, for the restore test (a secret, in a 0600 file). */
  identityFile?: string;
}

/** The restore test of an encrypted backup when the run holds no identity: not run, said why. */
function untestedEncrypted(reporter: Reporter): RestoreTestRecord {
  const record: RestoreTestRecord = {
    result: 'skipped',
    reason:
      "the backup is encrypted and this run has no identity to decrypt it (give 'identity' to test it here, or run verify --restore-test with the identity where it is kept)",
    tables: 0,
    rows: 0,
    users: 0,
    seconds: 0,
  };
  reporter.info(restoreTestLine(record));
  return record;
}

/**
 * Removes the complete backups in backup-dir that the policy does not keep, reporting each
 * and a summary. A backup that cannot be removed is a warning: this run's backup is fine.
 */
async function applyRetention(
  plan: BackupPlan,
  context: BackupContext,
  justWritten: string,
): Promise<RetentionOutcome | undefined> {
  const { reporter, signal } = context;
  if (isRetentionOff(plan.retention)) return undefined;
  const policy = `${describePolicy(plan.retention)}; UTC`;
  if (signal.aborted) {
    reporter.warning(`Retention (${policy}) skipped: the run was interrupted. Nothing removed.`);
    return undefined;
  }
  return reporter.group(`Retention (${policy})`, async () => {
    let outcome: RetentionOutcome;
    try {
      outcome = await pruneBackups(plan.backupDir, plan.retention, justWritten, {
        signal,
        onRemoved: (path, reasons) =>
          reporter.info(`Removed ${path}: not kept (${reasons.join('; ')}).`),
        onFailed: (path, remains, error) =>
          reporter.warning(
            `Could not remove ${path}, which the retention policy does not keep: ${error.replace(/\.$/, '')}. What remains: ${remains}; remove it by hand.`,
          ),
      });
    } catch (error) {
      reporter.warning(
        `Retention stopped: ${describeError(error).replace(/\.$/, '')}. The backup itself is complete.`,
      );
      return undefined;
    }
    reporter.info(
      `Retention: kept ${outcome.kept.length}, removed ${outcome.removed.length}${outcome.failed.length ? `; ${outcome.failed.length} not kept could not be removed` : ''}.`,
    );
    return outcome;
  });
}

/**
 * Runs the restore test on the finished archives: a failure fails the backup (its
 * directory is removed as incomplete), a skip is a warning and recorded.
 */
async function testRestore(
  engine: ReturnType<typeof engineFor>,
  context: BackupContext,
  subject: Parameters<typeof runRestoreTest>[1],
  /** What the base pass's headers showed: the archive is not read again. */
  facts: ListingFacts,
): Promise<RestoreTestRecord> {
  const { reporter } = context;
  const record = await runRestoreTest(engine, subject, {
    signal: context.signal,
    facts,
    log: (line) => reporter.info(line),
  });
  const line = restoreTestLine(record);
  if (record.result === 'failed') throw new BackupError(`The ${line}`);
  if (record.result === 'skipped') reporter.warning(line);
  else reporter.info(line);
  return record;
}

function writeSmallFile(path: string, text: string): void {
  try {
    writeFileSync(path, text, { mode: 0o600 });
  } catch (error) {
    throw isNoSpace(error) ? noSpaceError(path) : error;
  }
}

interface WindowOutcome {
  dumped: DumpResult;
  /** The delta archive (undefined without maintenance mode: there is no second pass). */
  delta: (WrittenFile & StreamStats) | undefined;
  /** Table → rows, counted beside the dump. */
  rowCounts: Record<string, number>;
  encryption: EncryptionOutcome;
}

/**
 * The maintenance window: switch maintenance mode on (unless disabled), run the dump, the
 * files delta and the row counts side by side (the first failure stops the others), and
 * restore the prior state whatever happened, reporting both causes if both went wrong.
 */
async function maintenanceWindow(
  maintenance: MaintenanceGuard | undefined,
  context: BackupContext,
  work: {
    dump: (signal: AbortSignal) => Promise<DumpResult>;
    delta: (signal: AbortSignal) => Promise<(WrittenFile & StreamStats) | undefined>;
    /** Told the dump running beside it (the dump watches the server for silence). */
    count: (signal: AbortSignal, dumping: Promise<DumpResult>) => Promise<Record<string, number>>;
    encryption: (signal: AbortSignal, dumping: Promise<DumpResult>) => Promise<EncryptionOutcome>;
  },
): Promise<WindowOutcome> {
  const { reporter } = context;
  return inMaintenanceWindow(maintenance, reporter, async () => {
    const [dumped, delta, rowCounts, encryption] = await allOrNothing(context.signal, (signal) => {
      const dumping = work.dump(signal);
      return [
        dumping,
        work.delta(signal),
        work.count(signal, dumping),
        work.encryption(signal, dumping),
      ] as const;
    });
    if (delta)
      reporter.info(
        `Files delta: ${delta.files} files (${formatBytes(delta.bytes)}) changed since the base pass; ${delta.path.split('/').pop()}: ${formatBytes(delta.size)}.`,
      );
    reporter.info(
      `Database dump: ${formatBytes(dumped.rawBytes)} raw, ${formatBytes(dumped.size)} compressed.`,
    );
    const tables = Object.keys(rowCounts).length;
    reporter.info(
      `Row counts: ${tables} table${tables === 1 ? '' : 's'}, ${Object.values(rowCounts).reduce((sum, n) => sum + n, 0)} rows.`,
    );
    reporter.info(
      `Server-side encryption: ${describeEncryption({
        ...encryption.state,
        ...(encryption.index ? { index: { name: '', files: encryption.index.files } } : {}),
      })}.`,
    );
    return { dumped, delta, rowCounts, encryption };
  });
}
