// Children of this tool must not outlive it, even when it is SIGKILLed (which no handler
// of ours ever sees): an rsync left running keeps writing into a backup nobody finishes.
// Each child runs in its own process group (with its own children: rsync forks), and a
// small watcher holds a pipe from this process. The kernel closes that pipe however we
// end; the watcher then kills every process group still registered.
import { spawn, type ChildProcess } from 'node:child_process';
import { childEnvironment } from './environment.ts';

/** The watcher: `+PGID` registers a group, `-PGID` forgets it; end of input kills the rest. */
export const REAPER_SCRIPT = `
groups=' '
while IFS= read -r line; do
  case $line in
    +*) groups="$groups\${line#+} " ;;
    -*) p=\${line#-}; case $groups in *" $p "*) groups="\${groups%% $p *} \${groups#* $p }" ;; esac ;;
  esac
done
for g in $groups; do kill -9 "-$g" 2>/dev/null; done
exit 0
`.trim();

class Reaper {
  private readonly child: ChildProcess;
  private alive = true;

  constructor(prefix: readonly string[]) {
    const argv = [...prefix, 'sh', '-c', REAPER_SCRIPT, 'owncloud-backup-reaper'];
    this.child = spawn(argv[0]!, argv.slice(1), {
      stdio: ['pipe', 'ignore', 'ignore'],
      // No secret-bearing variable reaches it.
      env: childEnvironment(process.env),
      // Its own session: a Ctrl-C in the terminal must not end it before we are done.
      detached: true,
    });
    this.child.once('exit', () => (this.alive = false));
    this.child.once('error', () => (this.alive = false));
    this.child.stdin!.on('error', () => (this.alive = false));
    // Neither the watcher nor its pipe keeps this process alive.
    this.child.unref();
    (this.child.stdin as unknown as { unref?: () => void }).unref?.();
  }

  private send(line: string): void {
    if (this.alive) this.child.stdin!.write(`${line}\n`);
  }

  /** The write end of the watcher's pipe as a file descriptor of ours, if it can be had. */
  get fd(): number | undefined {
    const handle = (this.child.stdin as unknown as { _handle?: { fd?: number } })._handle;
    return this.alive && typeof handle?.fd === 'number' && handle.fd >= 0 ? handle.fd : undefined;
  }

  watch(pgid: number): () => void {
    this.send(`+${pgid}`);
    return () => this.forget(pgid);
  }

  forget(pgid: number): void {
    this.send(`-${pgid}`);
  }
}

let reaper: Reaper | undefined;
let reaperPrefix = '';

/**
 * Runs a command so that it registers its own process group with the watcher (on fd 3,
 * the watcher's pipe) before it execs: a command seen running is always known to the
 * watcher, however soon after its start this process is killed. (Registering from here
 * after the start leaves a moment in which a kill makes an orphan.)
 */
const SELF_REGISTER = 'printf "+%s\\n" "$$" >&3 && exec 3>&- && exec "$@"';

export interface Registered {
  argv: string[];
  /** The file descriptor to give the child as its fd 3. */
  fd: number;
}

/** The command wrapped to register itself, or undefined when the watcher's pipe cannot be shared. */
export function selfRegistering(argv: readonly string[]): Registered | undefined {
  reaper ??= new Reaper([]);
  const fd = reaper.fd;
  if (fd === undefined) return undefined;
  return { argv: ['sh', '-c', SELF_REGISTER, 'owncloud-backup-child', ...argv], fd };
}

/** Forgets a group that registered itself, once it has ended. */
export function forgetGroup(pgid: number | undefined): void {
  if (pgid !== undefined) reaper?.forget(pgid);
}

/**
 * Registers a child that leads its own process group (spawned detached): its whole group
 * is killed if this process dies before it. Returns the call that forgets it (at its exit).
 */
export function killWithUs(pid: number | undefined): () => void {
  if (pid === undefined) return () => {};
  reaper ??= new Reaper([]);
  return reaper.watch(pid);
}

/**
 * From now on the watcher runs with this prefix (e.g. `sudo -n --`), so that it can kill
 * the children that run as root through the same prefix. Groups registered before stay
 * with the watcher that knows them.
 */
export function elevateReaper(prefix: readonly string[]): void {
  const key = prefix.join('\0');
  if (prefix.length === 0 || key === reaperPrefix) return;
  reaper = new Reaper(prefix);
  reaperPrefix = key;
}
