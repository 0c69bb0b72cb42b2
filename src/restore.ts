// The restore orchestrator: a verified backup in, the instance as it was at backup time out.
//   verify → connect → read the backup's config → look at the target → preflight (tools,
//   version, space, database) → [maintenance on → current state moved aside (files renamed,
//   database dumped) → files back → config.php adjusted → database recreated and loaded
//   → data fingerprint → maintenance state as recorded] → closing check.
// Any failure after the first change puts the moved-aside state back (files, database,
// maintenance mode) before it is reported; the message says which state the instance is in.
import type { Reporter } from './report.ts';
import type { Secrets } from './secrets.ts';
import type { SshOptions } from './host/ssh.ts';
import type { Manifest } from './manifest.ts';
import type { RestorePlan } from './settings.ts';
import type { RestoreJournal } from './steps/previous-state.ts';

export interface RestoreContext {
  reporter: Reporter;
  secrets: Secrets;
  /** Aborted on SIGINT/SIGTERM or cancellation: the previous state is put back. */
  signal: AbortSignal;
  ssh?: SshOptions;
  /** Seconds between progress lines of the long steps (default 10). */
  progressSeconds?: number;
  /**
   * Told what the restore has changed on the target so far, before each change, so that a
   * process that outlives this one (the action's post step) can put the previous state back.
   */
  onJournal?: (journal: RestoreJournal) => void;
}

export interface RestoreResult {
  manifest: Manifest;
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
