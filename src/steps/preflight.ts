// Preflight: before anything changes on the host, make sure every tool the run needs is
// there (on the host and here) and that the runner has room for the backup.
import { statfsSync } from 'node:fs';
import type { DatabaseEngine, DumpTool } from '../database/index.ts';
import { BackupError } from '../errors.ts';
import { asUser, type Host } from '../host/host.ts';
import { runProcess, stderrTail, type ProcessResult } from '../host/process.ts';

const MISSING = `for p; do command -v "$p" >/dev/null 2>&1 || echo "$p"; done`;
const FIRST_WITH_VERSION = `for p; do if command -v "$p" >/dev/null 2>&1; then echo "$p"; "$p" --version 2>&1 | head -n 1; exit 0; fi; done; exit 127`;

/** The result, unless the command never ran because the link failed. */
function checked(host: Host, result: ProcessResult): ProcessResult {
  const transport = host.transportFailure(result);
  if (transport) throw new BackupError(transport);
  return result;
}

/** Names of the programs (of those given) the host lacks. */
export async function missingOnHost(host: Host, programs: string[]): Promise<string[]> {
  const result = checked(host, await host.run(['sh', '-c', MISSING, 'sh', ...programs]));
  return result.stdout.split('\n').filter(Boolean);
}

export async function missingHere(programs: string[]): Promise<string[]> {
  const result = await runProcess(['sh', '-c', MISSING, 'sh', ...programs]);
  return result.stdout.split('\n').filter(Boolean);
}

/** The engine's dump program on the host (the first of its names found) and its version. */
export async function findDumpTool(host: Host, engine: DatabaseEngine): Promise<DumpTool> {
  const result = checked(
    host,
    await host.run(['sh', '-c', FIRST_WITH_VERSION, 'sh', ...engine.programs]),
  );
  if (result.exitCode !== 0)
    throw new BackupError(
      `${host.label} has no ${engine.programs.join(' or ')} to dump the ${engine.type} database: install it there.`,
    );
  const [program, version] = result.stdout.split('\n');
  // sqlite3 appends a 40-hex source id that tells a reader nothing.
  return {
    program: program!.trim(),
    version: (version ?? '').trim().replace(/\s+[0-9a-f]{40,}\S*$/, ''),
  };
}

/** Apparent size in bytes of the given paths on the host (one file system each, as rsync -x). */
export async function sizeOnHost(host: Host, owner: string, paths: string[]): Promise<number> {
  if (paths.length === 0) return 0;
  const result = checked(
    host,
    await host.run(asUser(host.account, owner, ['du', '-s', '-x', '--bytes', '--', ...paths])),
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

export function freeBytes(dir: string): number {
  const stats = statfsSync(dir);
  return stats.bavail * stats.bsize;
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
 * Room needed on the runner: the staged copy plus the archive, which at worst (data that
 * does not compress, like photos) is as large again, plus a margin for the dump.
 */
export function requiredBytes(sourceBytes: number): number {
  return Math.ceil(sourceBytes * 2.05) + 64 * 1024 * 1024;
}

/**
 * An SSH user that is neither root nor the instance's owner runs occ (as the owner) and
 * rsync (to read every file) through sudo, which must not ask for a password.
 */
export async function requirePasswordlessSudo(host: Host, owner: string): Promise<void> {
  const result = checked(host, await host.run(['sudo', '-n', 'true']));
  if (result.exitCode !== 0)
    throw new BackupError(
      `The SSH user ${host.account} on ${host.label} is neither root nor ${owner} and cannot use sudo without a password (${stderrTail(result.stderr) || 'sudo -n failed'}): connect as root or ${owner}, or allow it passwordless sudo.`,
    );
}
