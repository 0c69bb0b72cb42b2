// What paths are on the host, as a given user sees them. Every command over SSH costs a
// round trip and a login shell on the host, so planning asks once, in one command, about
// every path it may need to know (the data directory's markers, app directories, theme
// candidates, extra paths, the top-level paths of the file set), then looks the answers up.
import { BackupError } from '../errors.ts';
import { asUser, reached, type Host } from '../host/host.ts';
import { stderrTail } from '../host/process.ts';

/** A path as found on the host: a directory (followed when a symlink), a file, or a symlink to a file. */
export type PathKind = 'dir' | 'file' | 'file-link';

export interface PathFact {
  kind: PathKind | 'missing';
  /** The path itself is a symlink. */
  link: boolean;
  /** Where it really is (symlinks resolved as far as they go). */
  real: string;
}

// For each path, NUL-separated: what it is (following a symlink), whether it is a symlink,
// and its real path. `kind` is `test -d`, then a symlink that `test -e` finds, then `test -e`.
const INSPECT = `for p; do
  if [ -d "$p" ]; then k=dir; elif [ -L "$p" ] && [ -e "$p" ]; then k=file-link; elif [ -e "$p" ]; then k=file; else k=missing; fi
  if [ -L "$p" ]; then l=link; else l=; fi
  printf '%s\\0%s\\0%s\\0' "$k" "$l" "$(readlink -f -- "$p")"
done`;

/** What each path is on the host, as `user` sees it, and where it really is: one command. */
export async function inspectPaths(
  host: Host,
  user: string,
  paths: readonly string[],
): Promise<PathFact[]> {
  if (paths.length === 0) return [];
  const result = reached(
    host,
    await host.run(asUser(host.account, user, ['sh', '-c', INSPECT, 'sh', ...paths])),
  );
  const fields = result.stdout.split('\0');
  if (result.exitCode !== 0 || fields.length < paths.length * 3)
    throw new BackupError(
      `Could not inspect the paths to back up on ${host.label}: ${stderrTail(result.stderr)}`,
    );
  return paths.map((path, i) => ({
    kind: fields[i * 3] as PathFact['kind'],
    link: fields[i * 3 + 1] === 'link',
    real: fields[i * 3 + 2] || path,
  }));
}

/**
 * The answers of one inspectPaths call, looked up by path; a path that was not asked about
 * is inspected on its own when needed.
 */
export class HostPaths {
  private readonly facts = new Map<string, PathFact>();
  private readonly host: Host;
  private readonly user: string;

  private constructor(host: Host, user: string) {
    this.host = host;
    this.user = user;
  }

  /** Asks about all these paths at once (as `user`, who can see into the data directory). */
  static async inspect(host: Host, user: string, paths: readonly string[]): Promise<HostPaths> {
    const known = new HostPaths(host, user);
    await known.add(paths);
    return known;
  }

  private async add(paths: readonly string[]): Promise<void> {
    const unknown = [...new Set(paths)].filter((p) => !this.facts.has(p));
    const found = await inspectPaths(this.host, this.user, unknown);
    unknown.forEach((path, i) => this.facts.set(path, found[i]!));
  }

  /** What the path is (inspected now if it was not asked about before). */
  async fact(path: string): Promise<PathFact> {
    if (!this.facts.has(path)) await this.add([path]);
    return this.facts.get(path)!;
  }

  /** What each path is, in one command for those not asked about before. */
  async factsOf(paths: readonly string[]): Promise<PathFact[]> {
    await this.add(paths);
    return paths.map((p) => this.facts.get(p)!);
  }

  /** `test -e`: exists (a symlink: its target does). */
  async exists(path: string): Promise<boolean> {
    return (await this.fact(path)).kind !== 'missing';
  }

  /** `test -d`: a directory (a symlink: to one). */
  async isDir(path: string): Promise<boolean> {
    return (await this.fact(path)).kind === 'dir';
  }
}
