// One backup at a time per backup directory and per instance. A lock is flock(2) on the
// directory itself (a directory opened read-only can be locked: nothing is created, in the
// instance or anywhere), held by a `flock -n DIR … cat` process whose stdin is our pipe:
// when we end, however we end, or the SSH link dies, cat sees the end of its input and the
// lock goes with it. No lock can outlive its run, so none is ever stale.
import { setTimeout as sleep } from 'node:timers/promises';
import { BackupError } from '../errors.ts';
import { reached, type Host } from './host.ts';
import { stderrTail } from './process.ts';

/** Marks our holder's argv; the argument after it says who holds the lock. */
export const HOLDER_MARK = 'owncloud-backup-lock';

/** Says "locked" once flock holds the lock, then waits for the end of stdin. */
const HOLD = 'echo locked; exec cat >/dev/null';

/** argv that holds the lock on `path` until stdin ends, or exits 1 at once if it is held. */
export function lockCommand(path: string, holder: string): string[] {
  return ['flock', '-n', path, 'sh', '-c', HOLD, HOLDER_MARK, holder];
}

// The pid holding a flock on the path, from /proc/locks (`1: FLOCK ADVISORY WRITE PID
// MAJ:MIN:INODE …`, device numbers in hex), and that process's argv, one per line.
const WHO_HOLDS = `
d=$(stat -L -c %d -- "$1") && i=$(stat -L -c %i -- "$1") || exit 1
key=$(printf '%02x:%02x:%s' $(( (d >> 8) & 4095 )) $(( (d & 255) | ((d >> 12) & 1048320) )) "$i")
pid=$(awk -v k="$key" '$2 == "FLOCK" && $6 == k { print $5; exit }' /proc/locks)
[ -n "$pid" ] || exit 1
tr '\\0' '\\n' < "/proc/$pid/cmdline"
`.trim();

/** argv that prints the argv of the process holding a flock on `path`. */
export function whoHoldsCommand(path: string): string[] {
  return ['sh', '-c', WHO_HOLDS, 'owncloud-backup', path];
}

/** Who holds our lock, from the holder's argv (one argument per line); undefined if not ours. */
export function holderFromArgv(argvLines: string): string | undefined {
  const args = argvLines.split('\n');
  const at = args.indexOf(HOLDER_MARK);
  return at >= 0 && args[at + 1] ? args[at + 1] : undefined;
}

/** How this run names itself to a second one: pid, machine and start time. */
export function holderName(pid: number, machine: string, startedAt: Date): string {
  return `owncloud-backup pid ${pid} on ${machine}, started ${startedAt.toISOString()}`;
}

export interface HeldLock {
  release(): Promise<void>;
}

/**
 * Takes the lock on a directory on the host. `wrap` turns the argv into the one to run
 * (e.g. as the instance's owner). Throws `busy(holder)`'s message when another run holds
 * it, naming that run when it can be found.
 */
export async function acquireLock(
  host: Host,
  path: string,
  holder: string,
  busy: (heldBy: string) => string,
  wrap: (argv: string[]) => string[] = (argv) => argv,
): Promise<HeldLock> {
  const holding = host.stream(wrap(lockCommand(path, holder)), { feedStdin: true });
  let output = '';
  const locked = new Promise<boolean>((resolve) => {
    holding.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('locked\n')) resolve(true);
    });
    void holding.done.then(() => resolve(false));
  });
  if (await locked) {
    return {
      release: async () => {
        holding.stdin.end();
        // Normally at once; a dead link must not hold up the end of the run.
        const ended = await Promise.race([
          holding.done.then(() => true),
          sleep(5000, false, { ref: false }),
        ]);
        if (!ended) holding.kill();
      },
    };
  }
  const result = reached(host, await holding.done);
  if (
    result.exitCode === 127 ||
    /flock: (not found|command not found)|execute flock|flock: No such file/i.test(result.stderr)
  )
    throw new BackupError(
      `${host.label} lacks flock (util-linux), which keeps two backups from overlapping: install it there.`,
    );
  // flock -n says nothing when the lock is taken: anything on stderr is another failure.
  if (result.exitCode !== 1 || result.stderr.trim() !== '')
    throw new BackupError(
      `Could not lock ${path} on ${host.label} (flock exit ${result.exitCode}): ${stderrTail(result.stderr)}`,
    );
  const who = await host.run(wrap(whoHoldsCommand(path)));
  throw new BackupError(
    busy(
      (who.exitCode === 0 && holderFromArgv(who.stdout)) ||
        'another process; it did not say who it is',
    ),
  );
}
