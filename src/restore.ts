// The restore orchestrator: a verified backup in, the instance as it was at backup time out.
//   verify → connect → read the backup's config → look at the target → preflight (tools,
//   version, space, database) → [maintenance on → current state moved aside (files renamed,
//   database dumped) → files back → config.php adjusted → database recreated and loaded
//   → data fingerprint → maintenance state as recorded] → closing check.
// Any failure after the first change puts the moved-aside state back (files, database,
// maintenance mode) before it is reported; the message says which state the instance is in.
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { join, posix } from 'node:path';
import { engineFor, type DatabaseEngine } from './database/index.ts';
import type { LoadContext } from './database/engine.ts';
import {
  BackupError,
  describeError,
  InputError,
  InterruptedError,
  LinkError,
  RestoreError,
} from './errors.ts';
import { guardedCommand, readingFrom, secretLine } from './host/guarded.ts';
import { connectStep, openHost } from './host/connect.ts';
import { asUser, mustRun, reached, type Host } from './host/host.ts';
import { stderrTail } from './host/process.ts';
import { SshHost } from './host/ssh.ts';
import { resolveDatabase, type ConfigValues, type DatabaseConnection } from './instance.ts';
import { MANIFEST_NAME } from './naming.ts';
import { DEFAULT_PROGRESS_SECONDS, StepProgress } from './progress.ts';
import type { InstancePlan, RestorePlan } from './settings.ts';
import { discoverInstance, readGivenConfig, type Instance } from './steps/discover.ts';
import { LAYOUT } from './steps/files.ts';
import { MaintenanceGuard, occCommand } from './steps/maintenance.ts';
import { formatBytes, missingOnHost } from './steps/preflight.ts';
import {
  containerOf,
  DISCARD,
  MOVE_ASIDE,
  moveArguments,
  outermostPaths,
  planMoves,
  PROBE_PATHS,
  PUT_BACK,
  restoreStamp,
  SIZE,
  stepPidFile,
  STOP_STEPS,
  type MovedPath,
} from './steps/previous-state.ts';
import { readArchivedConfig } from './steps/restore-files.ts';
import {
  checkLogin,
  dumpAside,
  findClient,
  loadDump,
  rowCountDifferences,
  runSql,
  toolOf,
} from './steps/restore-database.ts';
import { countRows } from './steps/row-counts.ts';
import { archiveNameProblem } from './verify.ts';
import { directorySource, rootOn, unchanged, verified, type BackupSource } from './steps/target.ts';
import { resticSource } from './restic-source.ts';
import { archiveFile, type BackupFacts, type Manifest } from './manifest.ts';
import { withIdentity } from './steps/age.ts';
import type { Reporter } from './report.ts';
import type { Secrets } from './secrets.ts';
import type { SshOptions } from './host/ssh.ts';
import type { RestoreJournal } from './steps/previous-state.ts';

export interface RestoreContext {
  reporter: Reporter;
  secrets: Secrets;
  /** Aborted on SIGINT/SIGTERM or cancellation: the previous state is put back. */
  signal: AbortSignal;
  ssh?: SshOptions;
  /** Seconds between progress lines of the long steps (default 10). */
  progressSeconds?: number;
  /** Seconds to keep reconnecting to put the previous state back through a lost link (120). */
  rollbackRetrySeconds?: number;
  /**
   * Told what the restore has changed on the target so far, before each change, so that a
   * process that outlives this one (the action's post step) can put the previous state back.
   */
  onJournal?: (journal: RestoreJournal) => void;
}

export interface RestoreResult {
  manifest: BackupFacts;
  /** Where it was restored: the host's label. */
  target: string;
  /** Whether the target had an instance (in place) or not (a new host). */
  inPlace: boolean;
  /** The moved-aside previous state, kept until `--cleanup` (none when discarded or skipped). */
  previous?: { paths: string[]; bytes: number };
  /** config.php values replaced by the given inputs. */
  changedConfig: string[];
  /** Tables whose rows were counted and matched the backup's. */
  tablesChecked: number;
  seconds: number;
}

/** Where each part of the backup goes on the target. Pure. */
export interface RestoreLayout {
  installDir: string;
  dataDir: string;
  /** Archive member → target directory. */
  members: Record<string, string>;
  /** The paths the restore replaces (outermost only: nested ones move with them). */
  replaced: string[];
}

export function restoreLayout(
  manifest: Pick<BackupFacts, 'source' | 'files'>,
  given: { owncloudDir?: string; dataDir?: string },
): RestoreLayout {
  const recorded = manifest.source;
  const installDir = given.owncloudDir || recorded.installDir;
  // A data directory inside the recorded installation moves with a new owncloud-dir.
  const dataDir =
    given.dataDir ??
    (recorded.dataDir.startsWith(`${recorded.installDir}/`)
      ? `${installDir}${recorded.dataDir.slice(recorded.installDir.length)}`
      : recorded.dataDir);
  const members: Record<string, string> = {
    [LAYOUT.install]: installDir,
    [LAYOUT.data]: dataDir,
  };
  if (manifest.files.layout[LAYOUT.absolute]) members[LAYOUT.absolute] = '/';
  const installPaths = manifest.files.installPaths.map((p) =>
    p === '.' ? installDir : posix.join(installDir, p),
  );
  return {
    installDir,
    dataDir,
    members,
    replaced: outermostPaths([...installPaths, dataDir, ...manifest.files.absolutePaths]),
  };
}

/** config.php values the restore replaces with what the user gave (pure). */
export function configChanges(
  archived: ConfigValues,
  connection: DatabaseConnection,
  dataDir: string,
  overrides: InstancePlan['database'],
): Record<string, string> {
  const changes: Record<string, string> = {};
  const text = (v: unknown) => (typeof v === 'string' ? v : v === undefined ? '' : String(v));
  const archivedDataDir = posix.normalize(text(archived.datadirectory)).replace(/(.)\/+$/, '$1');
  if (archivedDataDir !== dataDir) changes.datadirectory = dataDir;
  if (overrides.name !== undefined && overrides.name !== text(archived.dbname))
    changes.dbname = overrides.name;
  if (overrides.user !== undefined && overrides.user !== text(archived.dbuser))
    changes.dbuser = overrides.user;
  if (overrides.password !== undefined && overrides.password !== text(archived.dbpassword))
    changes.dbpassword = overrides.password;
  if (overrides.host !== undefined || overrides.port !== undefined) {
    const host = connection.socket ?? connection.host ?? 'localhost';
    const dbhost = connection.port !== undefined ? `${host}:${connection.port}` : host;
    if (dbhost !== text(archived.dbhost)) changes.dbhost = dbhost;
  }
  if (overrides.type !== undefined) {
    const dbtype = overrides.type === 'sqlite' ? 'sqlite3' : overrides.type;
    if (dbtype !== text(archived.dbtype)) changes.dbtype = dbtype;
  }
  return changes;
}

/** Applies changes to config.php as ownCloud writes it (var_export), atomically, as its owner. */
const WRITE_CONFIG = `
$file = $argv[1];
$changes = json_decode(stream_get_contents(STDIN), true);
$CONFIG = null;
include $file;
if (!is_array($CONFIG)) { fwrite(STDERR, "$file defines no \\$CONFIG array\\n"); exit(3); }
foreach ($changes as $key => $value) $CONFIG[$key] = $value;
$text = "<?php\\n\\$CONFIG = " . var_export($CONFIG, true) . ";\\n";
$temporary = $file . '.owncloud-restore';
if (file_put_contents($temporary, $text) !== strlen($text)) { fwrite(STDERR, "could not write $temporary\\n"); exit(4); }
chmod($temporary, fileperms($file) & 0777);
if (!rename($temporary, $file)) { fwrite(STDERR, "could not replace $file\\n"); exit(5); }
if (function_exists('opcache_invalidate')) opcache_invalidate($file, true);
`;

/** Ownership of restored paths, skipping the containers of the previous state. */
const CHOWN = `
owner=$1; shift
for p; do
  find "$p" -name '.owncloud-restore-previous-*' -prune -o -exec chown -h -- "$owner:" {} +
done
`.trim();

/**
 * The config files in a backup's files archive, or the error reading them (kept until the
 * verification has spoken: a damaged backup is reported as damaged, not as unreadable).
 */
async function archivedConfigOf(
  backupPath: string,
  identityFile: string | undefined,
): Promise<Record<string, string> | Error> {
  try {
    const manifest = JSON.parse(readFileSync(join(backupPath, MANIFEST_NAME), 'utf8')) as Manifest;
    const files = manifest.archives.find((a) => a.role === 'files');
    if (!files || archiveNameProblem(files.name))
      return new BackupError('The manifest names no usable files archive.');
    return await readArchivedConfig(archiveFile(backupPath, files, identityFile));
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}

/** The version of the server code in an installation, from its version.php ('' if none). */
async function codeVersion(host: Host, installDir: string): Promise<string> {
  const result = reached(
    host,
    await host.run([
      'php',
      '-d',
      'display_errors=0',
      '-r',
      '$OC_Version = null; if (is_file($argv[1])) { include $argv[1]; } echo is_array($OC_Version) ? implode(".", $OC_Version) : "";',
      '--',
      `${installDir}/version.php`,
    ]),
  );
  return result.exitCode === 0 ? result.stdout.trim() : '';
}

/** The owner of a path on the host, or undefined when it does not exist. */
async function ownerOf(
  host: Host,
  path: string,
): Promise<{ uid: number; name: string } | undefined> {
  const result = reached(host, await host.run(['stat', '-c', '%u %U', '--', path]));
  if (result.exitCode !== 0) return undefined;
  const [uid, name] = result.stdout.trim().split(' ');
  return { uid: Number(uid), name: name ?? '' };
}

/** Free bytes on the file system that holds path (or its nearest existing parent). */
async function freeBytes(host: Host, path: string): Promise<number | undefined> {
  const result = reached(
    host,
    await host.run([
      'sh',
      '-c',
      'p=$1; while [ ! -e "$p" ]; do p=$(dirname -- "$p"); done; df -P -B1 -- "$p" | tail -n 1',
      'sh',
      path,
    ]),
  );
  const fields = result.stdout.trim().split(/\s+/);
  return result.exitCode === 0 && fields.length >= 4 ? Number(fields[3]) : undefined;
}

/** The instance found on the target before the restore, if it is one that works. */
async function currentInstance(
  host: Host,
  plan: RestorePlan,
  installDir: string,
  context: RestoreContext,
): Promise<Instance | undefined> {
  const config = reached(host, await host.run(['test', '-e', `${installDir}/config/config.php`]));
  if (config.exitCode !== 0) return undefined;
  try {
    return await discoverInstance(
      host,
      {
        target: plan.target,
        owncloudDir: installDir,
        database: {},
        ...(plan.occUser ? { occUser: plan.occUser } : {}),
      },
      context.secrets,
    );
  } catch (error) {
    if (!(error instanceof InputError || error instanceof BackupError)) throw error;
    context.reporter.warning(
      `The target has ${installDir}/config/config.php but no working instance (${describeError(error)}): restoring without switching its maintenance mode.`,
    );
    return undefined;
  }
}

export async function runRestore(
  plan: RestorePlan,
  context: RestoreContext,
): Promise<RestoreResult> {
  return withIdentity(
    plan.identity,
    (identityFile) => restore(plan, context, identityFile),
    context.ssh?.runtimeDir,
  );
}

async function restore(
  plan: RestorePlan,
  context: RestoreContext,
  identityFile: string | undefined,
): Promise<RestoreResult> {
  const { reporter, signal } = context;
  const started = performance.now();
  const interrupted = () => {
    if (signal.aborted)
      throw new InterruptedError('The restore was interrupted; nothing was changed.');
  };
  // A backup directory is verified here before the target is even reached; a repository's
  // backup is found (and its snapshots checked) from the target, where restic runs.
  let source: BackupSource | undefined;
  if (!plan.repository) {
    // The backup's config.php is read from its archive while the archive is verified (each
    // is a pass over the archive); it is used only once the verification has passed.
    const configRead = archivedConfigOf(plan.backupPath, identityFile);
    const backup = await reporter.group('Verify the backup', () =>
      verified(plan.backupPath, reporter, identityFile),
    );
    interrupted();
    const archivedConfig = await configRead;
    if (archivedConfig instanceof Error) throw archivedConfig;
    source = directorySource(backup, archivedConfig);
  }

  let host: Host | undefined;
  try {
    host = await connectStep(reporter, plan.target, context.secrets, context.ssh);
    const connected = host;
    const root = await rootOn(connected);
    interrupted();
    const repository = plan.repository;
    if (repository)
      source = await unchanged(() =>
        reporter.group('Find the backup in the restic repository', () =>
          resticSource(connected, root, repository, reporter, signal),
        ),
      );
    interrupted();
    const backup = source!;
    const manifest = backup.facts;
    const archivedConfig = backup.configFiles;
    const layout = restoreLayout(manifest, plan);
    const engine = engineFor(plan.database.type ?? manifest.database.type);

    // --- What is there, and what will be -----------------------------------------------
    const { installDirOwner, current, connection, changes, client, moves } = await unchanged(() =>
      reporter.group('Preflight (nothing is changed yet)', async () => {
        const found = await currentInstance(connected, plan, layout.installDir, context);
        if (found)
          reporter.info(
            `The target runs ${found.product === 'nextcloud' ? 'Nextcloud' : 'ownCloud'} ${found.version} in ${found.installDir} (maintenance mode ${found.maintenance ? 'on' : 'off'}): restoring in place.`,
          );
        else
          reporter.info(`No running instance in ${layout.installDir}: restoring onto a new host.`);
        const reader = found?.owner ?? connected.account;
        const values = await readGivenConfig(
          connected,
          reader,
          archivedConfig,
          "the backup's config.php",
        );
        context.secrets.add(typeof values.dbpassword === 'string' ? values.dbpassword : undefined);
        const target = resolveDatabase(values, plan.database, layout.dataDir);
        context.secrets.add(target.password);
        if (plan.dbAdmin) context.secrets.add(plan.dbAdmin.password);
        const changed = configChanges(values, target, layout.dataDir, plan.database);

        const needed = [...backup.hostPrograms, 'php', 'find', 'stat', 'df'];
        const missing = await missingOnHost(connected, needed);
        // The safety copy of the current database needs that engine's dump tool.
        if (plan.safetyCopy && found && found.database.type !== 'sqlite') {
          const dumpPrograms = engineFor(found.database.type).programs;
          const absent = await missingOnHost(connected, [...dumpPrograms]);
          if (absent.length === dumpPrograms.length) missing.push(dumpPrograms.join(' or '));
        }
        const program = await findClient(connected, engine);
        if (!program) missing.push(engine.clients.join(' or '));
        if (missing.length > 0)
          throw new BackupError(
            `${connected.label} lacks ${missing.join(', ')}, which the restore needs: install ${missing.length > 1 ? 'them' : 'it'} there. Nothing was changed.`,
          );

        // A package install's backup holds no server code: the target's must be the same version.
        if (manifest.source.installType === 'package') {
          const version = await codeVersion(connected, layout.installDir);
          if (version === '')
            throw new BackupError(
              `${layout.installDir} on ${connected.label} holds no server code (no version.php): the backup is of a package install, so install ${manifest.instance.product} ${manifest.instance.version} there first. Nothing was changed.`,
            );
          if (version !== manifest.instance.version) {
            const message = `The server code in ${layout.installDir} is version ${version}, the backup is of version ${manifest.instance.version}`;
            if (!plan.allowVersionMismatch)
              throw new BackupError(
                `${message}: install ${manifest.instance.version}, or restore anyway with allow-version-mismatch (then run occ upgrade yourself). Nothing was changed.`,
              );
            reporter.warning(`${message}; restoring anyway (allow-version-mismatch).`);
          }
        }

        const needBytes =
          manifest.files.bytes + (plan.safetyCopy && found ? manifest.database.dumpBytes : 0);
        const free = await freeBytes(connected, layout.dataDir);
        if (free !== undefined && free < needBytes)
          throw new BackupError(
            `Not enough space on ${connected.label} for ${layout.dataDir}: the restore needs ${formatBytes(needBytes)}${plan.safetyCopy ? ' (the previous state stays on disk beside it)' : ''}, ${formatBytes(free)} are free. Nothing was changed.`,
          );

        const loadContext: LoadContext = {
          connection: target,
          client: program!,
          account: connected.account,
          owner: found?.owner ?? connected.account,
          ...(plan.dbAdmin ? { admin: plan.dbAdmin } : {}),
        };
        if (engine.type !== 'sqlite') {
          const check = plan.dbAdmin
            ? engine.adminCheckCommand(loadContext)
            : engine.checkCommand({
                connection: target,
                tool: toolOf(engine, program!),
                account: connected.account,
                owner: loadContext.owner,
              });
          const result = await checkLogin(connected, check);
          if (result.exitCode !== 0 || result.stdout.trim() !== '1')
            throw new BackupError(
              `The database check failed (nothing was changed): ${engine.explainFailure(result.stderr, plan.dbAdmin ? { ...target, user: plan.dbAdmin.user } : target) ?? (stderrTail(result.stderr) || `exit ${result.exitCode}`)}${plan.dbAdmin ? '' : " Without db-admin-user, the database must exist and the instance's user must reach it."}`,
            );
        }

        const probe = await mustRun(
          connected,
          [...root, 'sh', '-c', PROBE_PATHS, 'sh', ...layout.replaced],
          'Looking at the paths to replace',
        );
        const flags = probe.stdout.split('\0');
        const planned = planMoves(
          layout.replaced.map((path, i) => ({
            path,
            exists: flags[i]?.[0] === 'e',
            mountPoint: flags[i]?.[1] === 'm',
          })),
          restoreStamp(new Date()),
        );
        reporter.info(
          `To replace: ${layout.replaced.join(', ')}; database ${engine.type} '${target.name}'.`,
        );
        const installDirOwner = (await ownerOf(connected, layout.installDir))?.name;
        return {
          installDirOwner:
            installDirOwner && installDirOwner !== 'UNKNOWN' ? installDirOwner : undefined,
          current: found,
          connection: target,
          changes: changed,
          client: program!,
          moves: planned,
        };
      }),
    );
    interrupted();
    return await replace({
      host: connected,
      installDirOwner,
      root,
      plan,
      context,
      backup,
      layout,
      engine,
      current,
      connection,
      changes,
      client,
      moves,
      started,
    });
  } finally {
    await host?.close();
  }
}

interface Replacement {
  host: Host;
  /** Who owned the installation directory before the restore (the default owner of new files). */
  installDirOwner: string | undefined;
  root: string[];
  plan: RestorePlan;
  context: RestoreContext;
  backup: BackupSource;
  layout: RestoreLayout;
  engine: DatabaseEngine;
  current: Instance | undefined;
  connection: DatabaseConnection;
  changes: Record<string, string>;
  client: string;
  moves: MovedPath[];
  started: number;
}

/** The changing part: every step from here on is undone if a later one fails. */
/** One restore's changing part: what every step needs, and the journal they keep. */
interface RestoreRun extends Replacement {
  journal: RestoreJournal;
  /** Records the journal (and a new phase) for a process that outlives this one. */
  note: (phase?: RestoreJournal['phase']) => void;
  progress: (label: string, expectedBytes?: number) => StepProgress;
  /** Where the previous state goes (none without a safety copy). */
  containers: string[];
  /** Where tar and the database client on the host record their pids, for a rollback to stop. */
  stepPids: { files: string; database: string } | undefined;
  /** Set once the current files are being deleted (safety-copy false): no way back then. */
  removing: boolean;
}

/** The changing part: every step from here on is undone if a later one fails. */
async function replace(r: Replacement): Promise<RestoreResult> {
  const { context, plan } = r;
  const { reporter, signal } = context;
  // Without a safety copy nothing is kept, so there is nothing to put back either.
  const containers = plan.safetyCopy
    ? [...new Set(r.moves.map(containerOf).filter((c): c is string => !!c))]
    : [];
  const journal: RestoreJournal = {
    stamp: /previous-([^/]+)/.exec(containers[0] ?? '')?.[1] ?? restoreStamp(new Date()),
    installDir: r.layout.installDir,
    phase: 'preparing',
    containers,
    moved: plan.safetyCopy ? r.moves : [],
  };
  const run: RestoreRun = {
    ...r,
    journal,
    note: (phase) => {
      if (phase) journal.phase = phase;
      context.onJournal?.(structuredClone(journal));
    },
    progress: (label, expectedBytes) =>
      new StepProgress(label, {
        intervalSeconds: context.progressSeconds ?? DEFAULT_PROGRESS_SECONDS,
        now: () => performance.now(),
        emit: (line) => reporter.info(line),
        ...(expectedBytes !== undefined ? { expectedBytes } : {}),
      }),
    containers,
    stepPids: containers[0]
      ? {
          files: stepPidFile(containers[0], 'files'),
          database: stepPidFile(containers[0], 'database'),
        }
      : undefined,
    removing: false,
  };
  const maintenance = r.current
    ? new MaintenanceGuard(
        r.host,
        { installDir: r.current.installDir, user: r.current.owner },
        (m) => reporter.info(m),
        60,
        (record) => {
          journal.maintenance = record;
          run.note();
        },
      )
    : undefined;
  const step = async <T>(title: string, work: () => Promise<T>): Promise<T> => {
    const result = await reporter.group(title, work);
    if (signal.aborted) throw new InterruptedError();
    return result;
  };

  try {
    run.note('moving-aside');
    if (maintenance) await step('Maintenance mode on', () => maintenance.enable());
    await step(plan.safetyCopy ? 'Move the current state aside' : 'Remove the current state', () =>
      setCurrentStateAside(run),
    );
    run.note('replacing');
    await step('Files', () => putFilesInPlace(run));
    const occUser = await step('Owners and config.php', () => ownersAndConfig(run));
    await step('Database', () => replaceDatabase(run, occUser));
    const tables = await step('Finish', () => finishRestore(run, occUser));
    run.note('done');
    const previous = await keepOrDiscardPrevious(run);
    return {
      manifest: r.backup.facts,
      target: r.host.label,
      inPlace: r.current !== undefined,
      ...(previous ? { previous } : {}),
      changedConfig: Object.keys(r.changes),
      tablesChecked: tables,
      seconds: (performance.now() - r.started) / 1000,
    };
  } catch (error) {
    return await putBackAfterFailure(run, maintenance, error);
  }
}

/** Moves the current state aside (files renamed, database dumped), or deletes it without a safety copy. */
async function setCurrentStateAside(run: RestoreRun): Promise<void> {
  const { host, root, plan, layout, current, containers, journal, note } = run;
  const { reporter, signal } = run.context;
  if (!plan.safetyCopy) {
    run.removing = true;
    await mustRun(
      host,
      [
        ...root,
        'rm',
        '-rf',
        '--',
        ...run.moves.filter((m) => m.how !== 'absent').map((m) => m.original),
      ],
      'Removing the current files (safety-copy false)',
      { shielded: true },
    );
    reporter.info(`Removed ${layout.replaced.join(', ')} (no safety copy, as asked).`);
    return;
  }
  await mustRun(
    host,
    [...root, 'mkdir', '-p', '-m', '0700', '--', ...containers],
    'Creating the safety copy directories',
    { shielded: true },
  );
  // The previous database, while the old files still describe it.
  if (current && current.database.type !== 'sqlite') {
    const dumpPath = `${containers[0]}/database.sql`;
    journal.database = {
      type: current.database.type,
      name: current.database.name,
      dumpPath,
      replaced: false,
    };
    note();
    await dumpAside(host, root, engineFor(current.database.type), current, dumpPath, signal);
    reporter.info(`The current database '${current.database.name}' is saved in ${dumpPath}.`);
  }
  await mustRun(
    host,
    [...root, 'sh', '-c', MOVE_ASIDE, 'sh', ...moveArguments(run.moves)],
    'Moving the current files aside',
    { shielded: true },
  );
  for (const move of run.moves)
    if (move.how !== 'absent') reporter.info(`${move.original} → ${move.aside}`);
}

/** The backup's files into place on the host. */
async function putFilesInPlace(run: RestoreRun): Promise<void> {
  const { host, root, backup, layout, stepPids, progress } = run;
  const { reporter, signal } = run.context;
  const manifest = backup.facts;
  const files = progress('Files', backup.filesBytes || undefined);
  await backup.putFiles({
    host,
    root,
    members: layout.members,
    signal,
    progress: files,
    ...(stepPids ? { pidFile: stepPids.files } : {}),
  });
  files.finish();
  if (stepPids)
    await mustRun(host, [...root, 'rm', '-f', '--', stepPids.files], 'Removing a pid file');
  reporter.info(
    `${manifest.files.fileCount} files (${formatBytes(manifest.files.bytes)}) restored.`,
  );
}

/**
 * Owners (when the archive's do not exist here) and config.php (maintenance on until the end,
 * the given values); returns who runs occ.
 */
async function ownersAndConfig(run: RestoreRun): Promise<string> {
  const { host, root, plan, layout } = run;
  const { reporter } = run.context;
  const configPath = `${layout.installDir}/config/config.php`;
  const archivedOwner = await ownerOf(host, configPath);
  if (!archivedOwner) throw new BackupError(`The restored files hold no ${configPath}.`);
  let owner = archivedOwner.name;
  if (plan.owner || owner === 'UNKNOWN' || owner === String(archivedOwner.uid)) {
    const wanted = plan.owner ?? run.installDirOwner ?? 'UNKNOWN';
    if (wanted === 'UNKNOWN')
      throw new BackupError(
        `The archive's owner (uid ${archivedOwner.uid}) does not exist on ${host.label}: name the web server's user with the owner input.`,
      );
    await mustRun(
      host,
      [...root, 'sh', '-c', CHOWN, 'sh', wanted, ...layout.replaced],
      `Giving the restored files to ${wanted}`,
    );
    reporter.info(
      `The restored files now belong to ${wanted}${plan.owner ? ' (owner input)' : ` (uid ${archivedOwner.uid} of the archive does not exist here)`}.`,
    );
    owner = wanted;
  }
  const user = plan.occUser ?? owner;
  // Maintenance mode until the database is back, whatever the backup's config.php said.
  const values: Record<string, unknown> = { ...run.changes, maintenance: true };
  const result = reached(
    host,
    await host.run(asUser(host.account, user, ['php', '-r', WRITE_CONFIG, '--', configPath]), {
      input: JSON.stringify(values),
      shielded: true,
    }),
  );
  if (result.exitCode !== 0)
    throw new BackupError(
      `Writing ${configPath} failed: ${stderrTail(result.stderr) || `php exit ${result.exitCode}`}`,
    );
  const changed = Object.keys(run.changes);
  if (changed.length > 0)
    reporter.info(
      `config.php: ${changed.map((k) => (k === 'dbpassword' ? 'dbpassword (given)' : `${k} = ${run.changes[k]}`)).join(', ')}.`,
    );
  return user;
}

/** The database emptied (or recreated) and the backup's dump loaded. */
async function replaceDatabase(run: RestoreRun, occUser: string): Promise<void> {
  const { host, root, plan, backup, engine, connection, stepPids, journal, note, progress } = run;
  const { reporter, signal } = run.context;
  const manifest = backup.facts;
  const loadContext: LoadContext = {
    connection,
    client: run.client,
    account: host.account,
    owner: occUser,
    ...(plan.dbAdmin ? { admin: plan.dbAdmin } : {}),
  };
  if (journal.database) journal.database.replaced = true;
  else
    journal.database = {
      type: connection.type,
      name: connection.name,
      dumpPath: '',
      replaced: true,
    };
  note();
  const reset = engine.resetStep(loadContext);
  await runSql(
    host,
    reset.command,
    reset.sql,
    'Preparing the database',
    engine,
    connection,
    signal,
  );
  reporter.info(`Database: ${reset.summary}.`);
  const loading = progress('Database load', manifest.database.dumpBytes);
  const dropLines =
    engine.foreignOwnerLine && connection.user !== manifest.database.user
      ? engine.foreignOwnerLine
      : undefined;
  const loaded = await loadDump({
    host,
    engine,
    context: loadContext,
    dump: backup.dump,
    ...(dropLines ? { dropLines } : {}),
    signal,
    progress: loading,
    root,
    ...(stepPids ? { pidFile: stepPids.database } : {}),
  });
  loading.finish();
  if (stepPids)
    await mustRun(host, [...root, 'rm', '-f', '--', stepPids.database], 'Removing a pid file');
  reporter.info(
    `Loaded ${formatBytes(loaded.bytes)} of SQL with ${run.client}${loaded.dropped ? ` (${loaded.dropped} ownership statements naming ${manifest.database.user} left out: the objects belong to ${connection.user})` : ''}.`,
  );
}

/** ownCloud's closing steps and checks; returns how many tables' rows were compared. */
async function finishRestore(run: RestoreRun, occUser: string): Promise<number> {
  const { host, layout, backup } = run;
  const { reporter, signal } = run.context;
  const manifest = backup.facts;
  const occ = { installDir: layout.installDir, user: occUser };
  const runOcc = (args: string[]) =>
    mustRun(host, occCommand(host, occ, args), `occ ${args.join(' ')}`, {
      shielded: true,
      timeoutMs: 300_000,
    });
  await runOcc(['maintenance:data-fingerprint']);
  reporter.info('occ maintenance:data-fingerprint: sync clients will re-sync instead of deleting.');
  if (signal.aborted) throw new InterruptedError();
  const status = JSON.parse(
    (await runOcc(['status', '--output=json'])).stdout.trim().split('\n').pop() ?? '{}',
  ) as {
    installed?: boolean;
    version?: string;
  };
  if (status.installed !== true)
    throw new BackupError('occ status does not say installed after the restore.');
  if (status.version !== manifest.instance.version)
    throw new BackupError(
      `occ status says version ${status.version ?? '?'} after the restore; the backup is of ${manifest.instance.version}.`,
    );
  const counted = await checkRowCounts(run, loadContext(run, occUser));
  if (signal.aborted) throw new InterruptedError();
  if (manifest.maintenance.priorState) {
    reporter.info(
      "Maintenance mode stays on: it was on before the backup (the administrator's state).",
    );
  } else {
    await runOcc(['maintenance:mode', '--off']);
    reporter.info('Maintenance mode off, as it was before the backup.');
  }
  return counted;
}

/** After success: the previous state kept (and measured), or removed (discard-previous). */
async function keepOrDiscardPrevious(run: RestoreRun): Promise<RestoreResult['previous']> {
  const { host, root, plan, containers } = run;
  const { reporter } = run.context;
  let previous: RestoreResult['previous'];
  if (plan.safetyCopy && containers.length > 0) {
    const kept = [...containers];
    if (plan.discardPrevious) {
      const freed = await discardContainers(host, root, kept);
      reporter.info(`Removed the previous state (${formatBytes(freed)}; discard-previous).`);
    } else {
      const size = reached(host, await host.run([...root, 'sh', '-c', SIZE, 'sh', ...kept]));
      previous = { paths: kept, bytes: Number(size.stdout.trim()) || 0 };
      reporter.info(
        `The previous state is kept in ${kept.join(', ')} (${formatBytes(previous.bytes)}): remove it with owncloud-backup restore --cleanup once the instance works.`,
      );
    }
  }
  return previous;
}

/** A failed restore: the previous state put back (when there is one), and why it failed. */
async function putBackAfterFailure(
  run: RestoreRun,
  maintenance: MaintenanceGuard | undefined,
  error: unknown,
): Promise<never> {
  const { host, root, plan, context, journal, note } = run;
  const { signal } = context;
  if (journal.phase === 'moving-aside' || journal.phase === 'replacing') {
    // One line: a tool's stderr tail (several lines) would push the state off it.
    const cause = signal.aborted
      ? 'The restore was interrupted'
      : describeError(error)
          .replace(/\s*\n\s*/g, '; ')
          .replace(/\.$/, '');
    if (!plan.safetyCopy && run.removing)
      throw new RestoreError(
        `${cause}. The instance is INCOMPLETE: there was no safety copy (safety-copy false) to put back; restore again.`,
      );
    try {
      await withReconnects(run, host, (session, first) =>
        putBackPrevious(session, root, journal, plan, context, first ? maintenance : undefined),
      );
    } catch (rollbackError) {
      throw new RestoreError(
        `${cause}. PUTTING THE PREVIOUS STATE BACK FAILED: ${describeError(rollbackError).replace(/\s*\n\s*/g, '; ')} The previous state is in ${journal.containers.join(', ')}: once the host is reachable, run the restore again (it moves what is there aside first), or move that state back by hand.`,
      );
    }
    note('rolled-back');
    throw new RestoreError(
      `${cause}. The previous state is back: files, database and maintenance mode as they were before the restore.`,
    );
  }
  throw error;
}

/** How long putting the previous state back keeps trying through a lost link. */
const ROLLBACK_RETRY_SECONDS = 120;

/**
 * Runs work on the host; when the link is lost (SSH), reconnects and runs it again until it
 * succeeds or the time is up. The work must be safe to run again (the put-back scripts are).
 */
async function withReconnects(
  r: Replacement,
  host: Host,
  work: (host: Host, first: boolean) => Promise<void>,
): Promise<void> {
  const deadline = Date.now() + (r.context.rollbackRetrySeconds ?? ROLLBACK_RETRY_SECONDS) * 1000;
  let current = host;
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        await work(current, attempt === 1);
        return;
      } catch (error) {
        if (!(error instanceof LinkError) || r.plan.target.kind !== 'ssh' || Date.now() >= deadline)
          throw error;
        r.context.reporter.warning(
          `The link to the host failed while putting the previous state back (${describeError(error)}); reconnecting (attempt ${attempt}).`,
        );
        await sleep(Math.min(2000 * attempt, 10_000));
        try {
          const reconnected = await SshHost.connect(r.plan.target, r.context.ssh);
          if (current !== host) await current.close();
          current = reconnected;
        } catch (connectError) {
          r.context.reporter.info(`Not reachable yet: ${describeError(connectError)}`);
        }
      }
    }
  } finally {
    // The session opened here is this function's to end (the first one is the caller's).
    if (current !== host) await current.close();
  }
}

function loadContext(r: Replacement, owner: string): LoadContext {
  return {
    connection: r.connection,
    client: r.client,
    account: r.host.account,
    owner,
    ...(r.plan.dbAdmin ? { admin: r.plan.dbAdmin } : {}),
  };
}

/**
 * The closing check of the database: as many rows per table as the backup counted inside
 * its maintenance window. Returns the number of tables compared (0 for an older backup
 * whose manifest has no counts).
 */
async function checkRowCounts(r: Replacement, context: LoadContext): Promise<number> {
  const recorded = r.backup.facts.database.rowCounts;
  if (!recorded) {
    r.context.reporter.warning(
      'The backup records no row counts (made by an older version): the rows are not compared.',
    );
    return 0;
  }
  const counted = await countRows(
    r.host,
    r.engine,
    {
      connection: context.connection,
      tool: toolOf(r.engine, r.client),
      account: context.account,
      owner: context.owner,
    },
    undefined,
    { seconds: 600 },
  );
  const differences = rowCountDifferences(recorded, counted);
  if (differences.length > 0)
    throw new BackupError(
      `The restored database does not hold what the backup counted: ${differences.slice(0, 5).join('; ')}${differences.length > 5 ? `; and ${differences.length - 5} more` : ''}.`,
    );
  const rows = Object.values(counted).reduce((sum, n) => sum + n, 0);
  r.context.reporter.info(
    `Row counts: ${Object.keys(counted).length} tables, ${rows} rows, as the backup counted them.`,
  );
  return Object.keys(counted).length;
}

async function discardContainers(
  host: Host,
  root: string[],
  containers: string[],
): Promise<number> {
  const result = await mustRun(
    host,
    [...root, 'sh', '-c', DISCARD, 'sh', ...containers],
    'Removing the previous state',
    { shielded: true },
  );
  return Number(result.stdout.trim()) || 0;
}

/**
 * Puts the target back as it was before the restore: files (what the restore wrote goes),
 * then the database from the dump saved aside, then maintenance mode.
 */
async function putBackPrevious(
  host: Host,
  root: string[],
  journal: RestoreJournal,
  plan: RestorePlan,
  context: RestoreContext,
  maintenance: MaintenanceGuard | undefined,
): Promise<void> {
  const { reporter } = context;
  reporter.warning('Putting the previous state back.');
  // A step the lost link left running on the host (tar, the client) stops first.
  const container = journal.containers[0];
  if (container)
    await mustRun(
      host,
      [
        ...root,
        'sh',
        '-c',
        STOP_STEPS,
        'sh',
        stepPidFile(container, 'files'),
        stepPidFile(container, 'database'),
      ],
      'Stopping what the restore left running',
      { shielded: true },
    );
  await mustRun(
    host,
    [...root, 'sh', '-c', PUT_BACK, 'sh', ...moveArguments([...journal.moved].reverse())],
    'Putting the previous files back',
    { shielded: true },
  );
  reporter.info(`Files back: ${journal.moved.map((m) => m.original).join(', ')}.`);
  const saved = journal.database;
  if (saved?.replaced && saved.dumpPath) {
    // The previous instance's own config.php (back in place) says how to reach its database.
    const previous = await discoverInstance(
      host,
      {
        target: plan.target,
        owncloudDir: journal.installDir,
        database: {},
        ...(plan.occUser ? { occUser: plan.occUser } : {}),
      },
      context.secrets,
    );
    const engine = engineFor(previous.database.type);
    const client = await findClient(host, engine);
    if (!client)
      throw new BackupError(
        `${host.label} has no ${engine.clients.join(' or ')} to reload the previous database.`,
      );
    const loadContext: LoadContext = {
      connection: previous.database,
      client,
      account: host.account,
      owner: previous.owner,
      ...(plan.dbAdmin ? { admin: plan.dbAdmin } : {}),
    };
    const reset = engine.resetStep(loadContext);
    await runSql(
      host,
      reset.command,
      reset.sql,
      'Preparing the database for the previous state',
      engine,
      previous.database,
    );
    const load = engine.loadCommand(loadContext);
    const result = reached(
      host,
      await host.run(
        [...root, ...guardedCommand(readingFrom(saved.dumpPath, load.argv), load.delivery)],
        {
          input: secretLine(load.secret),
          keepStdinOpen: true,
          shielded: true,
        },
      ),
    );
    if (result.exitCode !== 0)
      throw new BackupError(
        `Reloading the previous database from ${saved.dumpPath} failed (exit ${result.exitCode}): ${stderrTail(result.stderr) || 'no message'}`,
      );
    reporter.info(`Database '${saved.name}' back from ${saved.dumpPath}.`);
  }
  if (journal.containers.length > 0)
    await mustRun(
      host,
      [
        ...root,
        'sh',
        '-c',
        'for c; do rm -f -- "$c/database.sql"; rmdir -- "$c" 2>/dev/null || true; done',
        'sh',
        ...journal.containers,
      ],
      'Removing the emptied safety copy directories',
      { shielded: true },
    );
  if (maintenance) await maintenance.restore();
  else if (journal.maintenance && journal.maintenance.phase !== 'restored')
    await MaintenanceGuard.recover(host, journal.maintenance, (m) => reporter.info(m));
}

/**
 * For a process that outlives a killed restore (the action's post step): puts the previous
 * state back as the journal describes it.
 */
export async function rollBackRestore(
  plan: RestorePlan,
  journal: RestoreJournal,
  context: Pick<RestoreContext, 'reporter' | 'secrets' | 'ssh'>,
): Promise<void> {
  if (journal.phase !== 'moving-aside' && journal.phase !== 'replacing') return;
  const full: RestoreContext = { ...context, signal: new AbortController().signal };
  const host = await openHost(plan.target, full.secrets, full.ssh);
  try {
    await putBackPrevious(host, await rootOn(host), journal, plan, full, undefined);
  } finally {
    await host.close();
  }
}

/** `restore --cleanup`: removes what earlier restores moved aside, beside the given paths. */
export async function cleanupPrevious(
  plan: RestorePlan,
  context: Pick<RestoreContext, 'reporter' | 'secrets' | 'ssh'>,
  paths: string[],
): Promise<{ removed: string[]; bytes: number }> {
  const full: RestoreContext = { ...context, signal: new AbortController().signal };
  const host = await openHost(plan.target, full.secrets, full.ssh);
  try {
    const root = await rootOn(host);
    // The data directory as the instance's config.php says, when it is there to ask.
    const dataDir =
      plan.dataDir ??
      (await discoverInstance(
        host,
        { ...plan, owncloudDir: paths[0]!, database: {} },
        context.secrets,
      ).then(
        (found) => found.dataDir,
        () => undefined,
      ));
    const roots = [
      ...new Set([...paths, ...(dataDir ? [dataDir] : [])].flatMap((p) => [posix.dirname(p), p])),
    ];
    // Containers sit beside each replaced path: in these directories or one level below
    // (themes/); so do the directories a restore from a restic repository restores into,
    // left behind only by a restore that was killed.
    const found = await mustRun(
      host,
      [
        ...root,
        'sh',
        '-c',
        'for d; do [ -d "$d" ] && find "$d" -mindepth 1 -maxdepth 2 -xdev -type d \\( -name ".owncloud-restore-previous-*" -o -name ".owncloud-restore-incoming-*" \\) -prune -print0; done; true',
        'sh',
        ...roots,
      ],
      'Looking for the previous state of earlier restores',
    );
    const containers = [...new Set(found.stdout.split('\0').filter(Boolean))];
    if (containers.length === 0) return { removed: [], bytes: 0 };
    const bytes = await discardContainers(host, root, containers);
    return { removed: containers, bytes };
  } finally {
    await host.close();
  }
}
