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
  /** `path`: original was renamed to aside; `entries`: its entries were moved into aside. */
  how: 'path' | 'entries';
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
