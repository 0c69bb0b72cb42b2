// Which part of the installation is server code that a reinstall brings back, and which is
// not: the install type (a distribution package owns occ/version.php, or a tarball was
// unpacked), and the app directories with the apps that did not ship with the release
// (app-store apps, which only a backup brings back).
import { posix } from 'node:path';
import { BackupError } from '../errors.ts';
import { asUser, reached, type Host } from '../host/host.ts';
import { stderrTail } from '../host/process.ts';
import type { AppsPath } from '../instance.ts';
import type { InstallType } from '../settings.ts';
import type { Instance } from './discover.ts';
import type { HostPaths } from './host-paths.ts';

export type PackageManager = 'dpkg' | 'rpm';

export interface InstallKind {
  type: Exclude<InstallType, 'auto'>;
  /** Why this type: detected (and from what), or as install-type says. */
  reason: string;
  /** The package owning the server code, when one does. */
  package?: string;
  manager?: PackageManager;
}

/** One directory the server loads apps from, and what of it the backup holds. */
export interface AppDir {
  /** Absolute path on the host. */
  path: string;
  /** Listed in config.php's apps_paths, or found by its usual name. */
  listed: boolean;
  writable?: boolean;
  /** 'whole': all of it; 'apps': only the apps named (those not shipped); 'none'. */
  copied: 'whole' | 'apps' | 'none';
  /** With 'apps': the apps copied. */
  apps?: string[];
  /** Apps left out because they ship with the release (package installs). */
  shipped?: string[];
  reason: string;
}

/** The app directory that ships with the server code, relative to the install dir. */
export const SHIPPED_APPS_DIR = 'apps';
/** Where app-store apps go when config.php says nothing: ownCloud's and Nextcloud's names. */
const USUAL_APP_DIRS = ['apps-external', 'custom_apps'];

/** A path as a literal dpkg-query --search pattern (it would read * ? [ \ as a glob). */
export function dpkgPattern(path: string): string {
  return path.replace(/[*?[\\]/g, '\\$&');
}

/** `dpkg-query --search` output: path → owning package(s). Diversion lines are not owners. */
export function parseDpkgSearch(stdout: string): Map<string, string> {
  const owners = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    if (line === '' || line.startsWith('diversion by ')) continue;
    const colon = line.indexOf(': ');
    if (colon <= 0) continue;
    owners.set(line.slice(colon + 2), line.slice(0, colon));
  }
  return owners;
}

/** Nextcloud's core/shipped.json: the apps that come with the release. */
export function parseShippedJson(text: string): Set<string> | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (parsed === null || typeof parsed !== 'object') return undefined;
  const names = new Set<string>();
  for (const key of ['shippedApps', 'alwaysEnabled']) {
    const list = (parsed as Record<string, unknown>)[key];
    if (Array.isArray(list)) for (const name of list) if (typeof name === 'string') names.add(name);
  }
  return names.size > 0 ? names : undefined;
}

// For each package manager the host has, a `#NAME` line, then the owners of the paths given
// as `PACKAGE: PATH` lines (dpkg-query --search's form). Arguments: the number of paths, the
// paths as dpkg-query patterns, then the same paths as they are.
const PACKAGE_OWNERS = `n=$1; shift
if command -v rpm >/dev/null 2>&1; then
  echo '#rpm'
  i=0
  for p; do
    i=$((i + 1))
    [ "$i" -gt "$n" ] || continue
    o=$(rpm -qf --queryformat '%{NAME}\\n' -- "$p" 2>/dev/null) && [ -n "$o" ] &&
      printf '%s: %s\\n' "$(printf '%s\\n' "$o" | head -n 1)" "$p"
  done
fi
if command -v dpkg-query >/dev/null 2>&1; then
  echo '#dpkg'
  i=0
  for p; do i=$((i + 1)); if [ "$i" -le "$n" ]; then set -- "$@" "$p"; fi; done
  shift $((n + n))
  dpkg-query --search -- "$@" 2>/dev/null
fi
true`;

/** PACKAGE_OWNERS' output: each package manager found, with its owners (path → package). */
export function parsePackageOwners(stdout: string): Map<PackageManager, Map<string, string>> {
  const lines = new Map<PackageManager, string[]>();
  let section: string[] | undefined;
  for (const line of stdout.split('\n')) {
    if (line === '#dpkg' || line === '#rpm')
      lines.set(line.slice(1) as PackageManager, (section = []));
    else section?.push(line);
  }
  // Asked in this order: dpkg first, as a Debian system may have rpm too.
  const found = new Map<PackageManager, Map<string, string>>();
  for (const manager of ['dpkg', 'rpm'] as const) {
    const text = lines.get(manager);
    if (text) found.set(manager, parseDpkgSearch(text.join('\n')));
  }
  return found;
}

/**
 * Which of these host paths a package owns, asked of every package manager the host has, in
 * one command: manager → (path → package), for the managers found (dpkg first).
 */
async function ownersByManager(
  host: Host,
  paths: string[],
): Promise<Map<PackageManager, Map<string, string>>> {
  const result = reached(
    host,
    await host.run([
      'sh',
      '-c',
      PACKAGE_OWNERS,
      'sh',
      String(paths.length),
      ...paths.map(dpkgPattern),
      ...paths,
    ]),
  );
  return parsePackageOwners(result.stdout);
}

/** Which of these host paths a package owns: path → package. */
async function packageOwners(
  host: Host,
  manager: PackageManager,
  paths: string[],
): Promise<Map<string, string>> {
  if (paths.length === 0) return new Map();
  if (manager === 'dpkg') {
    // Exit 1 just means some path has no owner; the found ones are on stdout.
    const result = reached(
      host,
      await host.run(['dpkg-query', '--search', '--', ...paths.map(dpkgPattern)]),
    );
    const found = parseDpkgSearch(result.stdout);
    return new Map(paths.flatMap((p) => (found.has(p) ? [[p, found.get(p)!] as const] : [])));
  }
  const owners = new Map<string, string>();
  for (const path of paths) {
    const result = reached(
      host,
      await host.run(['rpm', '-qf', '--queryformat', '%{NAME}\\n', '--', path]),
    );
    if (result.exitCode === 0 && result.stdout.trim()) owners.set(path, result.stdout.trim());
  }
  return owners;
}

/**
 * Package or tarball install: `auto` asks the host's package database (dpkg, else rpm)
 * whether a package owns the installation's occ or version.php.
 */
export async function detectInstallType(
  host: Host,
  requested: InstallType,
  instance: Pick<Instance, 'installDir' | 'owner'>,
  /** What the installation's paths are, as its owner sees them (the install dir's real path). */
  paths: HostPaths,
): Promise<InstallKind> {
  if (requested === 'tarball') return { type: 'tarball', reason: 'install-type: tarball' };
  // As a package database records it: with symlinks resolved.
  const real = (await paths.fact(instance.installDir)).real;
  const candidates = [
    ...new Set([instance.installDir, real].flatMap((dir) => [`${dir}/version.php`, `${dir}/occ`])),
  ];
  const found = await ownersByManager(host, candidates);
  const managers = [...found.keys()];
  for (const [manager, owners] of found) {
    const path = candidates.find((p) => owners.has(p));
    const owner = path === undefined ? undefined : owners.get(path);
    if (path && owner) {
      const how = `${path} belongs to package ${owner} (${manager})`;
      return {
        type: 'package',
        reason: requested === 'package' ? `install-type: package; ${how}` : `detected: ${how}`,
        package: owner,
        manager,
      };
    }
  }
  if (requested === 'package') return { type: 'package', reason: 'install-type: package' };
  const asked = managers.length > 0 ? `asked ${managers.join(' and ')}` : 'no dpkg or rpm there';
  return {
    type: 'tarball',
    reason: `detected: no package owns ${instance.installDir}/version.php or occ (${asked})`,
  };
}

// Names in a directory, NUL-terminated, hidden ones too (cd first: the session's working
// directory may be one the owner cannot enter).
const LIST_ENTRIES = `cd -- "$1" || exit 1
for f in * .[!.]* ..?*; do if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\\0' "$f"; fi; done`;

/** Entries of a directory on the host, as its owner sees them. */
async function entriesOf(host: Host, owner: string, dir: string): Promise<string[]> {
  const result = reached(
    host,
    await host.run(asUser(host.account, owner, ['sh', '-c', LIST_ENTRIES, 'sh', dir])),
  );
  if (result.exitCode !== 0)
    throw new BackupError(
      `Could not list the app directory ${dir} on ${host.label}: ${stderrTail(result.stderr)}`,
    );
  return result.stdout.split('\0').filter(Boolean).sort();
}

async function readOnHost(host: Host, owner: string, path: string): Promise<string | undefined> {
  const result = reached(host, await host.run(asUser(host.account, owner, ['cat', '--', path])));
  return result.exitCode === 0 ? result.stdout : undefined;
}

/** Whether `path` is `dir` or lies below it. */
export function isWithin(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir === '/' ? '/' : `${dir}/`);
}

/** Every directory planAppDirs may look at: config.php's apps_paths, apps/ and the usual others. */
export function appDirCandidates(instance: Pick<Instance, 'installDir' | 'appsPaths'>): string[] {
  return [
    ...instance.appsPaths.map((a) => a.path),
    `${instance.installDir}/${SHIPPED_APPS_DIR}`,
    ...USUAL_APP_DIRS.map((name) => `${instance.installDir}/${name}`),
  ];
}

export interface AppDirPlan {
  appDirs: AppDir[];
  /** Install-relative paths to copy (app dirs, or single apps from apps/). */
  installPaths: string[];
  /** App dirs outside the installation. */
  absolutePaths: string[];
}

/**
 * The instance's app directories (config.php's apps_paths, else apps/, plus apps-external/
 * and custom_apps/ when present) and what of each to copy. A tarball install copies the
 * whole installation anyway; a package install copies every app directory but the apps/
 * that ships with the code, and from that one the apps the release did not ship (Nextcloud:
 * not in core/shipped.json; otherwise: not owned by the server's package).
 */
export async function planAppDirs(
  host: Host,
  instance: Pick<Instance, 'installDir' | 'owner' | 'dataDir' | 'appsPaths' | 'product'>,
  kind: InstallKind,
  warn: (message: string) => void,
  /** What the app directories are, as the owner sees them (see appDirCandidates). */
  paths: HostPaths,
): Promise<AppDirPlan> {
  const { installDir, owner } = instance;
  const exists = (path: string) => paths.isDir(path);
  const listed: (AppsPath & { listed: boolean })[] =
    instance.appsPaths.length > 0
      ? instance.appsPaths.map((a) => ({ ...a, listed: true }))
      : [
          {
            path: `${installDir}/${SHIPPED_APPS_DIR}`,
            url: '/apps',
            writable: false,
            listed: false,
          },
        ];
  for (const name of USUAL_APP_DIRS) {
    const path = `${installDir}/${name}`;
    if (!listed.some((a) => a.path === path) && (await exists(path)))
      listed.push({ path, url: `/${name}`, writable: true, listed: false });
  }

  const plan: AppDirPlan = { appDirs: [], installPaths: [], absolutePaths: [] };
  for (const dir of listed) {
    const record = {
      path: dir.path,
      listed: dir.listed,
      ...(dir.listed ? { writable: dir.writable } : {}),
    };
    const relative = isWithin(dir.path, installDir)
      ? posix.relative(installDir, dir.path)
      : undefined;
    if (!(await exists(dir.path))) {
      if (dir.listed) warn(`config.php's apps_paths names ${dir.path}, which does not exist.`);
      plan.appDirs.push({ ...record, copied: 'none', reason: 'does not exist' });
      continue;
    }
    if (isWithin(dir.path, instance.dataDir)) {
      plan.appDirs.push({ ...record, copied: 'whole', reason: 'inside the data directory' });
      continue;
    }
    if (relative === '') {
      warn(`config.php's apps_paths names the installation directory itself (${dir.path}).`);
      plan.appDirs.push({
        ...record,
        copied: kind.type === 'tarball' ? 'whole' : 'none',
        reason: 'the installation directory itself',
      });
      continue;
    }
    if (relative === undefined) {
      plan.absolutePaths.push(dir.path);
      plan.appDirs.push({ ...record, copied: 'whole', reason: 'outside the installation' });
      continue;
    }
    if (kind.type === 'tarball') {
      plan.appDirs.push({ ...record, copied: 'whole', reason: 'part of the whole installation' });
      continue;
    }
    if (relative !== SHIPPED_APPS_DIR) {
      plan.installPaths.push(relative);
      plan.appDirs.push({ ...record, copied: 'whole', reason: 'not shipped with the server code' });
      continue;
    }
    // The apps/ of a package install: shipped apps come back with the package, others do not.
    const names = await entriesOf(host, owner, dir.path);
    const shippedJson = await readOnHost(host, owner, `${installDir}/core/shipped.json`);
    const fromRelease = shippedJson === undefined ? undefined : parseShippedJson(shippedJson);
    let shipped: Set<string>;
    let how: string;
    if (fromRelease) {
      shipped = new Set(names.filter((n) => fromRelease.has(n)));
      how = 'listed in core/shipped.json';
    } else if (kind.manager) {
      const manager = kind.manager;
      const owners = await packageOwners(
        host,
        manager,
        names.map((n) => `${dir.path}/${n}`),
      );
      const real = (await paths.fact(dir.path)).real;
      const realOwners =
        real === dir.path
          ? owners
          : await packageOwners(
              host,
              manager,
              names.map((n) => `${real}/${n}`),
            );
      shipped = new Set(
        names.filter((n) => owners.has(`${dir.path}/${n}`) || realOwners.has(`${real}/${n}`)),
      );
      how = `owned by package ${kind.package} (${manager})`;
    } else {
      warn(
        `No package manager owns the server code and there is no core/shipped.json: the apps in ${dir.path} cannot be told from the shipped ones, so all of it is left out as server code. Use install-type: tarball to back it up.`,
      );
      plan.appDirs.push({
        ...record,
        copied: 'none',
        shipped: names,
        reason: 'server code (install-type: package)',
      });
      continue;
    }
    const apps = names.filter((n) => !shipped.has(n));
    plan.installPaths.push(...apps.map((n) => `${SHIPPED_APPS_DIR}/${n}`));
    plan.appDirs.push({
      ...record,
      copied: apps.length > 0 ? 'apps' : 'none',
      apps,
      shipped: [...shipped],
      reason: `ships with the server code: the shipped apps (${how}) are left out, the others copied`,
    });
  }
  return plan;
}
