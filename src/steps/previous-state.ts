// The previous state of the target, kept until the restore has succeeded: the paths a
// restore replaces are moved aside on their own file system (a rename: instant, no space),
// the previous database is dumped aside on the host, and the journal says where everything
// went, so that a failure, an interrupt or the action's post step can put it all back.
import type { MaintenanceRecord } from './maintenance.ts';
import type { DatabaseType } from '../settings.ts';

/** One path moved aside: the path itself, or (for a mount point) the entries in it. */
export interface MovedPath {
  original: string;
  /** Where it is now. */
  aside: string;
  /**
   * `path`: original was renamed to aside; `entries`: its entries were moved into aside (a
   * mount point); `absent`: original did not exist before (putting back removes it).
   */
  how: 'path' | 'entries' | 'absent';
}

export interface RestoreJournal {
  /** Names this restore's containers: `.owncloud-restore-previous-<stamp>`. */
  stamp: string;
  installDir: string;
  /**
   * preparing: nothing changed yet; moving-aside / replacing: the target is changing and
   * must be put back on failure; done: restored; rolled-back: the previous state is back.
   */
  phase: 'preparing' | 'moving-aside' | 'replacing' | 'done' | 'rolled-back';
  /** Maintenance mode of the instance found on the target (undefined: none was running). */
  maintenance?: MaintenanceRecord;
  /** Directories holding the previous state (hidden, root-only), one per file system. */
  containers: string[];
  moved: MovedPath[];
  /** The previous database, dumped on the host before it was replaced. */
  database?: { type: DatabaseType; name: string; dumpPath: string; replaced: boolean };
}

/** The hidden, root-only directory one restore moves the previous state into. */
export function containerName(stamp: string): string {
  return `.owncloud-restore-previous-${stamp}`;
}

/** A stamp for container names: UTC, sortable, no characters a shell or URL minds. */
export function restoreStamp(date: Date): string {
  return date
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

/** The paths to move, without those inside another one (they move with it). Pure. */
export function outermostPaths(paths: readonly string[]): string[] {
  const unique = [...new Set(paths)].sort();
  return unique.filter(
    (path) =>
      !unique.some((other) => other !== path && (other === '/' || path.startsWith(`${other}/`))),
  );
}

/** Where each path goes (pure): into a container beside it, or, for a mount point, inside it. */
export function planMoves(
  paths: readonly { path: string; exists: boolean; mountPoint: boolean }[],
  stamp: string,
): MovedPath[] {
  return paths.map(({ path, exists, mountPoint }): MovedPath => {
    if (!exists) return { original: path, aside: '', how: 'absent' };
    const slash = path.lastIndexOf('/');
    const parent = slash <= 0 ? '/' : path.slice(0, slash);
    const base = path.slice(slash + 1);
    return mountPoint
      ? { original: path, aside: `${path}/${containerName(stamp)}`, how: 'entries' }
      : {
          original: path,
          aside: `${parent === '/' ? '' : parent}/${containerName(stamp)}/${base}`,
          how: 'path',
        };
  });
}

/** The container a move uses (the aside path's directory, or the aside path itself). */
export function containerOf(move: MovedPath): string | undefined {
  if (move.how === 'absent') return undefined;
  return move.how === 'entries' ? move.aside : move.aside.slice(0, move.aside.lastIndexOf('/'));
}

// Each script runs on the host as root, with the moves as arguments in threes
// (how, original, aside); each is safe to run again after an interruption.

/** For each path: exists? (e/-) and a mount point? (m/-), NUL-separated. */
export const PROBE_PATHS = `
for p; do
  if [ -e "$p" ] || [ -L "$p" ]; then e=e; else e=-; fi
  m=-
  if [ -d "$p" ] && [ ! -L "$p" ]; then
    parent=$(dirname -- "$p")
    if [ "$(stat -c %d -- "$p")" != "$(stat -c %d -- "$parent")" ]; then m=m; fi
  fi
  printf '%s%s\\0' "$e" "$m"
done
`.trim();

export const MOVE_ASIDE = `
set -e
while [ $# -ge 3 ]; do
  how=$1 original=$2 aside=$3; shift 3
  if [ "$how" = absent ]; then
    continue
  elif [ "$how" = entries ]; then
    mkdir -p -m 0700 -- "$aside"
    name=$(basename -- "$aside")
    find "$original" -mindepth 1 -maxdepth 1 ! -name "$name" -exec mv -t "$aside" -- {} +
  else
    container=$(dirname -- "$aside")
    mkdir -p -m 0700 -- "$container"
    if [ -e "$original" ] || [ -L "$original" ]; then mv -T -- "$original" "$aside"; fi
  fi
done
`.trim();

/**
 * Puts moved paths back: whatever the restore wrote in their place goes first. A path that
 * did not exist before the restore (how 'absent') is only removed.
 */
export const PUT_BACK = `
set -e
while [ $# -ge 3 ]; do
  how=$1 original=$2 aside=$3; shift 3
  case $how in
    entries)
      [ -d "$aside" ] || continue
      name=$(basename -- "$aside")
      # Once the restored entries are gone, the marker says so: run again after an
      # interruption, the entries already moved back are not taken for restored ones.
      if [ ! -e "$aside/.owncloud-restore-putting-back" ]; then
        find "$original" -mindepth 1 -maxdepth 1 ! -name "$name" -exec rm -rf -- {} +
        : > "$aside/.owncloud-restore-putting-back"
      fi
      find "$aside" -mindepth 1 -maxdepth 1 ! -name .owncloud-restore-putting-back -exec mv -t "$original" -- {} +
      rm -f -- "$aside/.owncloud-restore-putting-back"
      rmdir -- "$aside"
      ;;
    path)
      [ -e "$aside" ] || [ -L "$aside" ] || continue
      rm -rf -- "$original"
      mv -T -- "$aside" "$original"
      rmdir -- "$(dirname -- "$aside")" 2>/dev/null || true
      ;;
    absent)
      rm -rf -- "$original"
      ;;
  esac
done
`.trim();

/** Removes whole containers (the previous state, once it is no longer needed); prints bytes freed. */
export const DISCARD = `
total=0
for c; do
  [ -e "$c" ] || continue
  size=$(du -s -x --bytes -- "$c" | cut -f1)
  rm -rf -- "$c"
  total=$((total + size))
done
echo "$total"
`.trim();

/** Sizes in bytes of the given containers (for the closing message). */
export const SIZE = `du -s -x --bytes -c -- "$@" | tail -n 1 | cut -f1`;

export function moveArguments(moves: readonly MovedPath[]): string[] {
  return moves.flatMap((m) => [m.how, m.original, m.aside]);
}

/**
 * Where a restore step that writes on the host (tar, the database client) leaves its pid,
 * in the container: if the link dies, that process may still be working through what
 * reached the host, and putting the previous state back must first stop it.
 */
export function stepPidFile(container: string, step: 'files' | 'database'): string {
  return `${container}/.restore-${step}.pid`;
}

/** argv that writes its own pid to a file, then becomes the command (same pid). */
export function recordingPid(pidFile: string, argv: readonly string[]): string[] {
  return ['sh', '-c', 'echo $$ > "$1"; shift; exec "$@"', 'sh', pidFile, ...argv];
}

/** Stops the processes the pid files name (TERM, then KILL after 10 s) and removes the files. */
export const STOP_STEPS = `
for f; do
  [ -f "$f" ] || continue
  pid=$(cat -- "$f")
  case $pid in ''|*[!0-9]*) rm -f -- "$f"; continue ;; esac
  if kill -TERM "$pid" 2>/dev/null; then
    n=0
    while kill -0 "$pid" 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f -- "$f"
done
`.trim();
