// What the main step leaves for the post step, behind a small interface (the runner's
// GITHUB_STATE through @actions/core in production).
import * as core from '@actions/core';

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
  /** Maintenance mode as main left it: JSON of MaintenanceState. */
  maintenance: 'maintenance',
} as const;

export interface MaintenanceState {
  switchedByUs: boolean;
  restored: boolean;
  installDir: string;
  occUser: string;
}

export function readMaintenanceState(store: StateStore): MaintenanceState | undefined {
  const text = store.get(STATE.maintenance);
  if (!text) return undefined;
  return JSON.parse(text) as MaintenanceState;
}

export function readRuntimeDirs(store: StateStore): string[] {
  const text = store.get(STATE.runtimeDirs);
  return text ? (JSON.parse(text) as string[]) : [];
}

export function readSshMasters(store: StateStore): { pid: number; socketDir: string }[] {
  const text = store.get(STATE.sshMasters);
  return text ? (JSON.parse(text) as { pid: number; socketDir: string }[]) : [];
}
