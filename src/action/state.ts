// What the main step leaves for the post step, behind a small interface (the runner's
// GITHUB_STATE through @actions/core in production).
import * as core from '@actions/core';
import type { MaintenanceRecord } from '../steps/maintenance.ts';
import type { RestoreJournal } from '../steps/previous-state.ts';

export interface StateStore {
  save(name: string, value: string): void;
  get(name: string): string;
}

export const coreState: StateStore = {
  save: (name, value) => core.saveState(name, value),
  get: (name) => core.getState(name),
};

export const STATE = {
  /** Directories holding the SSH key and known_hosts, to delete on every path. */
  runtimeDirs: 'runtime-dirs',
  /** SSH master connections (pid, socket dir) main started: JSON array. */
  sshMasters: 'ssh-masters',
  /** Maintenance mode as main left it, saved before each change: JSON of MaintenanceState. */
  maintenance: 'maintenance',
  /** The backup directory main was writing (`….incomplete`), saved before it is created. */
  incompleteDir: 'incomplete-dir',
  /** The restore's journal, saved before each change to the target: JSON of RestoreJournal. */
  restoreJournal: 'restore-journal',
  /** Where the restore downloads the artifact on the runner, saved before it is created. */
  downloadDir: 'download-dir',
  /** The downloaded backup (the restore plan's backupPath), for a roll-back in the post step. */
  backupPath: 'backup-path',
} as const;

/** The record, plus `restored` for a reader that only asks whether anything is left to do. */
export type MaintenanceState = MaintenanceRecord & { restored: boolean };

export function maintenanceState(record: MaintenanceRecord): MaintenanceState {
  return { ...record, restored: record.phase === 'restored' };
}

export function readMaintenanceState(store: StateStore): MaintenanceRecord | undefined {
  const text = store.get(STATE.maintenance);
  if (!text) return undefined;
  const saved = JSON.parse(text) as Partial<MaintenanceState>;
  if (typeof saved.installDir !== 'string' || typeof saved.occUser !== 'string') return undefined;
  return {
    phase: saved.phase ?? (saved.restored ? 'restored' : saved.switchedByUs ? 'on' : 'restored'),
    switchedByUs: saved.switchedByUs ?? true,
    priorState: saved.priorState ?? false,
    installDir: saved.installDir,
    occUser: saved.occUser,
  };
}

export function readRuntimeDirs(store: StateStore): string[] {
  const text = store.get(STATE.runtimeDirs);
  return text ? (JSON.parse(text) as string[]) : [];
}

export function readSshMasters(store: StateStore): { pid: number; socketDir: string }[] {
  const text = store.get(STATE.sshMasters);
  return text ? (JSON.parse(text) as { pid: number; socketDir: string }[]) : [];
}

export function readRestoreJournal(store: StateStore): RestoreJournal | undefined {
  const text = store.get(STATE.restoreJournal);
  return text ? (JSON.parse(text) as RestoreJournal) : undefined;
}
