// Maintenance mode done right: note the state the administrator left, switch it on for the
// dump, and afterwards put back exactly that prior state, on every path out (success,
// failure, interruption), retrying through a dead link for a while before giving up loudly.
import { setTimeout as sleep } from 'node:timers/promises';
import { BackupError, LinkError, MaintenanceNotRestoredError } from '../errors.ts';
import { asUser, type Host } from '../host/host.ts';
import { stderrTail } from '../host/process.ts';

export interface OccTarget {
  installDir: string;
  /** Who runs occ: the owner of config.php unless configured. */
  user: string;
}

/** argv of `php occ ...` as the right user. */
export function occCommand(host: Host, occ: OccTarget, args: readonly string[]): string[] {
  return asUser(host.account, occ.user, ['php', `${occ.installDir}/occ`, ...args]);
}

/** Reads `occ maintenance:mode`'s answer: "Maintenance mode is currently enabled|disabled". */
export function parseMaintenanceState(output: string): boolean | undefined {
  const match = /maintenance mode is currently (enabled|disabled)/i.exec(output);
  return match ? match[1]!.toLowerCase() === 'enabled' : undefined;
}

/**
 * What a process that outlives this run (the action's post step) needs to put maintenance
 * mode back: written BEFORE `--on` is sent, so that a run killed at any moment leaves it.
 *   switching-on: `--on` may have been sent (whether it took effect is unknown);
 *   on: this run switched it on and has not switched it off yet;
 *   restored: the prior state is back (or this run never changed it).
 */
export interface MaintenanceRecord {
  phase: 'switching-on' | 'on' | 'restored';
  /** Whether this run switched it (false: it was on already). */
  switchedByUs: boolean;
  /** Maintenance mode as the administrator left it, before this run. */
  priorState: boolean;
  installDir: string;
  occUser: string;
}

export interface MaintenanceWindow {
  /** Whether this run switched maintenance mode (false: it was on already, or disabled by option). */
  switchedByUs: boolean;
  priorState: boolean;
  enabledAt?: Date;
  restoredAt?: Date;
}

// Switches maintenance mode and reads it back in one command on the host (one round trip):
// argv 1 is the flag (--on, --off), the rest `occ maintenance:mode` as the right user. The
// switch's own words and exit status are kept; only a switch that succeeded is followed by
// the SWITCHED_MARK line (on a line of its own whatever a login script printed before it)
// and the state occ reads then (occ's own answer and exit status).
const SWITCHED_MARK = 'owncloud-backup: switched';
const SWITCH_AND_READ = `flag=$1; shift
said=$("$@" "$flag" 2>&1) || { status=$?; printf '%s\\n' "$said"; exit "$status"; }
printf '\\n%s\\n' '${SWITCHED_MARK}'
exec "$@"`;

/** argv that switches maintenance mode (`--on` or `--off`) and then prints the state occ reads. */
function switchAndReadCommand(host: Host, occ: OccTarget, flag: '--on' | '--off'): string[] {
  return ['sh', '-c', SWITCH_AND_READ, 'sh', flag, ...occCommand(host, occ, ['maintenance:mode'])];
}

export class MaintenanceGuard {
  readonly window: MaintenanceWindow = { switchedByUs: false, priorState: false };
  private restored = false;

  private readonly host: Host;
  /** Where occ is and who runs it. */
  readonly target: OccTarget;
  private readonly log: (message: string) => void;
  private readonly restoreRetrySeconds: number;
  private readonly record: (record: MaintenanceRecord) => void;

  constructor(
    host: Host,
    occ: OccTarget,
    log: (message: string) => void,
    restoreRetrySeconds = 60,
    /** Told each change before it happens (and once it is confirmed), to persist it. */
    record: (record: MaintenanceRecord) => void = () => {},
  ) {
    this.host = host;
    this.target = occ;
    this.log = log;
    this.restoreRetrySeconds = restoreRetrySeconds;
    this.record = record;
  }

  private note(phase: MaintenanceRecord['phase']): void {
    this.record({
      phase,
      switchedByUs: this.window.switchedByUs,
      priorState: this.window.priorState,
      installDir: this.target.installDir,
      occUser: this.target.user,
    });
  }

  private async occRun(args: string[], shielded = false) {
    const result = await this.host.run(occCommand(this.host, this.target, args), {
      shielded,
      timeoutMs: 120_000,
    });
    const transport = this.host.transportFailure(result);
    if (transport) throw new LinkError(transport);
    if (result.exitCode !== 0)
      throw new BackupError(
        `occ ${args.join(' ')} failed on ${this.host.label} (exit ${result.exitCode}): ${stderrTail(`${result.stdout}\n${result.stderr}`)}`,
      );
    return result.stdout;
  }

  async state(shielded = false): Promise<boolean> {
    return this.stateFrom(await this.occRun(['maintenance:mode'], shielded));
  }

  private stateFrom(output: string): boolean {
    const state = parseMaintenanceState(output);
    if (state === undefined)
      throw new BackupError(
        `occ maintenance:mode answered something unexpected: ${stderrTail(output)}`,
      );
    return state;
  }

  /**
   * Sends `--on` or `--off` and reads the state back, in one command on the host: the state
   * occ reads after the switch. Shielded: an occ killed halfway through rewriting config.php
   * would leave it truncated. Fails as the two separate calls would: on the switch's failure
   * with its words, then on the reading's.
   */
  private async switchAndRead(flag: '--on' | '--off'): Promise<boolean> {
    const result = await this.host.run(switchAndReadCommand(this.host, this.target, flag), {
      shielded: true,
      timeoutMs: 240_000,
    });
    const transport = this.host.transportFailure(result);
    if (transport) throw new LinkError(transport);
    const [switched, read] = splitAt(result.stdout, SWITCHED_MARK);
    const failed = (args: string, output: string) =>
      new BackupError(
        `occ ${args} failed on ${this.host.label} (exit ${result.exitCode}): ${stderrTail(`${output}\n${result.stderr}`)}`,
      );
    if (read === undefined) throw failed(`maintenance:mode ${flag}`, switched);
    if (result.exitCode !== 0) throw failed('maintenance:mode', read);
    return this.stateFrom(read);
  }

  /**
   * For a run that switched maintenance mode on, or may have (the action's post step, after
   * the main step was killed): asks occ for the actual state, and puts the prior state back
   * if it differs. Returns what it found.
   */
  static async recover(
    host: Host,
    record: MaintenanceRecord,
    log: (message: string) => void,
    restoreRetrySeconds?: number,
  ): Promise<'was-prior-state' | 'restored'> {
    const guard = new MaintenanceGuard(
      host,
      { installDir: record.installDir, user: record.occUser },
      log,
      restoreRetrySeconds,
    );
    guard.window.priorState = record.priorState;
    // The post step runs right after main: a state other than the prior one is main's doing.
    if ((await guard.state(true)) === record.priorState) return 'was-prior-state';
    guard.window.switchedByUs = true;
    await guard.restore();
    return 'restored';
  }

  /** Switches maintenance mode on (if it is not on already) and confirms it. */
  async enable(): Promise<void> {
    this.window.priorState = await this.state();
    if (this.window.priorState) {
      this.note('restored');
      this.log('Maintenance mode was already on; it stays on afterwards, as it was found.');
      return;
    }
    // From here on the instance is (or may be) in maintenance mode: restore() must undo it,
    // and a process that outlives this one must know it, before the command is even sent.
    this.window.switchedByUs = true;
    this.note('switching-on');
    this.window.enabledAt = new Date();
    if (!(await this.switchAndRead('--on')))
      throw new BackupError('occ maintenance:mode --on did not switch maintenance mode on.');
    this.note('on');
    this.log('Maintenance mode switched on.');
  }

  /**
   * Puts back the prior state. Safe to call more than once and on any path; retries for a
   * while (the link may come back); throws only when the instance is left in a state
   * other than the prior one.
   */
  async restore(): Promise<void> {
    if (this.restored || !this.window.switchedByUs) {
      this.window.restoredAt ??= new Date();
      return;
    }
    const deadline = Date.now() + this.restoreRetrySeconds * 1000;
    let lastError: unknown;
    for (let attempt = 1; ; attempt++) {
      try {
        if (await this.switchAndRead('--off'))
          throw new BackupError('occ maintenance:mode --off did not switch maintenance mode off.');
        this.restored = true;
        this.window.restoredAt = new Date();
        this.note('restored');
        this.log('Maintenance mode switched off again (its prior state).');
        return;
      } catch (error) {
        lastError = error;
        if (Date.now() >= deadline) break;
        this.log(
          `Could not switch maintenance mode off yet (attempt ${attempt}), retrying: ${error instanceof Error ? error.message : String(error)}`,
        );
        await sleep(Math.min(1000 * attempt, 5000));
      }
    }
    throw new MaintenanceNotRestoredError(
      `MAINTENANCE MODE IS STILL ON on ${this.host.label}: switching it off failed (${lastError instanceof Error ? lastError.message : String(lastError)}). ` +
        `Run: sudo -u ${this.target.user} php ${this.target.installDir}/occ maintenance:mode --off`,
    );
  }

  /** Seconds the instance spent in maintenance mode because of this run (0 when it was on already). */
  seconds(): number {
    const { enabledAt, restoredAt } = this.window;
    if (!enabledAt) return 0;
    return ((restoredAt ?? new Date()).getTime() - enabledAt.getTime()) / 1000;
  }
}

/** The lines before the first `mark` line and those after it (undefined without one). */
function splitAt(text: string, mark: string): [string, string | undefined] {
  const lines = text.split('\n');
  const at = lines.indexOf(mark);
  if (at < 0) return [text, undefined];
  return [lines.slice(0, at).join('\n'), lines.slice(at + 1).join('\n')];
}
