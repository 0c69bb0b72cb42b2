// Preflight: before anything changes on the host, make sure every tool the run needs is
// there (on the host and here) and that the runner has room for the backup.
import { existsSync, realpathSync, statfsSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { InputError } from '../errors.ts';
import type { DatabaseEngine, DumpTool } from '../database/index.ts';
import { BackupError } from '../errors.ts';
import { runnerPrivilege, type RunnerPrivilege } from '../host/runner.ts';
import type { Reporter } from '../report.ts';
import type { BackupPlan } from '../settings.ts';
import { compressorProgram } from './compress.ts';
import { checkDatabase } from './dump.ts';
import type { Instance } from './discover.ts';
import { planFileSet, type FileSet } from './files.ts';
import { isWithin } from './installation.ts';
import { asUser, reached, type Host } from '../host/host.ts';
import { runProcess, stderrTail } from '../host/process.ts';

const MISSING = `for p; do command -v "$p" >/dev/null 2>&1 || echo "$p"; done`;
// Arguments: how many names the dump program may have, those names, then the programs the
// run needs. Prints the first dump program found and the first line of its --version (or
// empty lines), then the needed programs that are missing, one a line.
const TOOLS = `n=$1; shift
i=0; dump=; version=
for p; do
  [ "$i" -lt "$n" ] || break
  i=$((i + 1))
  if command -v "$p" >/dev/null 2>&1; then dump=$p; version=$("$p" --version 2>&1 | head -n 1); break; fi
done
printf '%s\\n%s\\n' "$dump" "$version"
shift "$n"
${MISSING}`;

/** Names of the programs (of those given) the host lacks. */
export async function missingOnHost(host: Host, programs: string[]): Promise<string[]> {
  const result = reached(host, await host.run(['sh', '-c', MISSING, 'sh', ...programs]));
  return result.stdout.split('\n').filter(Boolean);
}

export async function missingHere(programs: string[]): Promise<string[]> {
  const result = await runProcess(['sh', '-c', MISSING, 'sh', ...programs]);
  return result.stdout.split('\n').filter(Boolean);
}

/**
 * In one command: the engine's dump program on the host (the first of its names found) and
 * its version, and which of the other programs given the host lacks.
 */
export async function findTools(
  host: Host,
  engine: DatabaseEngine,
  programs: string[],
): Promise<{ tool: DumpTool; missing: string[] }> {
  const names = engine.programs;
  const result = reached(
    host,
    await host.run(['sh', '-c', TOOLS, 'sh', String(names.length), ...names, ...programs]),
  );
  const [program = '', version = '', ...missing] = result.stdout.split('\n');
  if (result.exitCode !== 0 || program.trim() === '')
    throw new BackupError(
      `${host.label} has no ${names.join(' or ')} to dump the ${engine.type} database: install it there.`,
    );
  return {
    tool: {
      program: program.trim(),
      // sqlite3 appends a 40-hex source id that tells a reader nothing.
      version: version.trim().replace(/\s+[0-9a-f]{40,}\S*$/, ''),
    },
    missing: missing.filter(Boolean),
  };
}

/** Apparent size in bytes of the given paths on the host (one file system each, as tar --one-file-system reads them). */
export async function sizeOnHost(host: Host, owner: string, paths: string[]): Promise<number> {
  if (paths.length === 0) return 0;
  const result = reached(
    host,
    // -D: a symlinked top-level path is measured as what it points to, as it is copied.
    await host.run(
      asUser(host.account, owner, ['du', '-s', '-x', '-D', '--bytes', '--', ...paths]),
    ),
  );
  if (result.exitCode !== 0 && result.stdout.trim() === '')
    throw new BackupError(
      `Could not measure the files to back up on ${host.label}: ${stderrTail(result.stderr)}`,
    );
  return result.stdout
    .split('\n')
    .filter(Boolean)
    .reduce((sum, line) => sum + Number(line.split('\t')[0] ?? 0), 0);
}

/** Free bytes where dir is (or will be created: its nearest existing ancestor). */
export function freeBytes(dir: string): number {
  const stats = statfsSync(nearestExisting(dir));
  return stats.bavail * stats.bsize;
}

/** The path itself when it exists, else its nearest existing ancestor. */
function nearestExisting(path: string): string {
  let current = path;
  while (!existsSync(current) && dirname(current) !== current) current = dirname(current);
  return current;
}

/**
 * Where a path really is, symlinks resolved as far as it exists (it may not exist yet):
 * the real path of its nearest existing ancestor, then the rest as given.
 */
export function resolveAsFarAsExists(path: string): string {
  const existing = nearestExisting(path);
  let real: string;
  try {
    real = realpathSync(existing);
  } catch {
    real = existing;
  }
  return existing === path ? real : join(real, relative(existing, path));
}

/**
 * The copied path a backup directory lies in (each backup would then hold the ones before
 * it), or undefined. The backup dir and each `real` are paths with symlinks resolved.
 */
export function backupDirInside(
  backupDir: string,
  included: { path: string; real: string; what: string }[],
): { path: string; real: string; what: string } | undefined {
  // The innermost one names the place best (the data dir, not the installation around it).
  return included
    .filter((i) => isWithin(backupDir, i.real))
    .sort((a, b) => b.real.length - a.real.length)[0];
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/**
 * Room needed on the runner: the archives, which at worst (data that does not compress,
 * like photos) are as large as the files, plus tar's headers and a margin for the dump.
 */
export function requiredBytes(sourceBytes: number): number {
  return Math.ceil(sourceBytes * 1.05) + 64 * 1024 * 1024;
}

export interface Preflight {
  tool: DumpTool;
  fileSet: FileSet;
  privilege: RunnerPrivilege;
  /** The files' apparent size on the host: what the base pass is expected to read. */
  sizeBytes: number;
}

/**
 * Everything checked before the instance is touched: the dump tool and the other programs
 * on the host, the programs here, that the dump can reach and read the database (with its
 * own credentials), whether this runner can keep owners, what to copy, and whether the
 * backup directory has room for it.
 */
export async function preflight(
  host: Host,
  plan: BackupPlan,
  instance: Instance,
  engine: DatabaseEngine,
  reporter: Reporter,
  /** runnerFiles false: the files never come here (restic on the host): no tar, no space. */
  options: { runnerFiles: boolean } = { runnerFiles: true },
): Promise<Preflight> {
  // restic reads the files itself (its own preflight finds it): no tar on the host then.
  const hostPrograms = ['php', ...(options.runnerFiles ? ['tar'] : []), 'du', 'mktemp'];
  if (host.account !== instance.owner)
    hostPrograms.push(host.account === 'root' ? 'runuser' : 'sudo');
  const { tool, missing: missingThere } = await findTools(host, engine, hostPrograms);
  reporter.info(`Dump tool on the host: ${tool.program} (${tool.version}).`);
  if (missingThere.length > 0)
    throw new BackupError(`${host.label} lacks ${missingThere.join(', ')}: install it there.`);
  const missing = await missingHere([
    ...(options.runnerFiles ? ['tar', compressorProgram(plan.compression)] : []),
    ...(plan.target.kind === 'ssh' ? ['ssh'] : []),
  ]);
  if (missing.length > 0)
    throw new BackupError(`This machine lacks ${missing.join(', ')}: install it to take backups.`);
  await checkDatabase({
    host,
    engine,
    connection: instance.database,
    tool,
    owner: instance.owner,
  });
  reporter.info(`The ${instance.database.type} database '${instance.database.name}' answers.`);
  const privilege = await runnerPrivilege();
  const fileSet = await planFileSet(host, plan, instance, (m) => reporter.warning(m));
  // On this machine tar reads the files with the runner's own privilege (sudo when it has it).
  if (plan.target.kind === 'local' && host.account !== instance.owner)
    fileSet.readAs = privilege.prefix;
  reporter.info(
    `${fileSet.install.type === 'package' ? 'Package' : 'Tarball'} install (${fileSet.install.reason}).`,
  );
  // On this machine both sides are here: a backup-dir inside a copied path would copy itself.
  if (plan.target.kind === 'local' && options.runnerFiles) {
    const real = resolveAsFarAsExists(plan.backupDir);
    const container = backupDirInside(real, fileSet.included);
    if (container)
      throw new InputError(
        `backup-dir '${plan.backupDir}'${real === plan.backupDir ? '' : ` (really ${real})`} lies inside ${container.what} '${container.path}'${container.real === container.path ? '' : ` (really ${container.real})`}, which the backup copies: each backup would hold the ones before it. Choose a backup-dir outside the instance's files.`,
      );
  }
  const whole = fileSet.installPaths.includes('.');
  const measured = [
    ...(whole
      ? [fileSet.installDir]
      : fileSet.installPaths.map((p) => `${fileSet.installDir}/${p}`)),
    // A tarball install's measure already holds a data directory inside it.
    ...(whole && fileSet.dataDirInsideInstall ? [] : [fileSet.dataDir]),
    // Linked elsewhere: measured where they point, as they are copied.
    ...(fileSet.linkedInside ?? []).map((p) => `${fileSet.installDir}/${p}`),
    ...fileSet.absolutePaths,
  ];
  const size = await sizeOnHost(host, instance.owner, measured);
  if (!options.runnerFiles) {
    reporter.info(`About ${formatBytes(size)} of files to back up.`);
    return { tool, fileSet, privilege, sizeBytes: size };
  }
  const need = requiredBytes(size);
  const free = freeBytes(plan.backupDir);
  reporter.info(
    `About ${formatBytes(size)} of files to copy; ${formatBytes(free)} free in ${plan.backupDir}.`,
  );
  if (free < need)
    throw new BackupError(
      `Not enough space in ${plan.backupDir}: this backup needs about ${formatBytes(need)} (the archives, as large as the files when they do not compress), ${formatBytes(free)} is free. Free space or choose another backup-dir.`,
    );
  return { tool, fileSet, privilege, sizeBytes: size };
}
