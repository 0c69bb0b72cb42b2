// What restic reads on the host for a repository backup: the same file set as the tar
// passes (steps/files.ts), as restic's paths and exclude patterns. restic stores each path
// where it really is on the host (a symlinked top-level path is read where it points, as
// tar reads it); the manifest records which part each path is.
import { BackupError } from '../errors.ts';
import {
  anchoredIn,
  fromRoot,
  outermostSources,
  tarExcludeOptions,
  type FileSet,
} from './files.ts';
import { isWithin } from './installation.ts';

export interface ResticSelection {
  /** Absolute host paths, none inside another. */
  paths: string[];
  /** restic `--exclude` patterns (absolute ones anchored at the host's root). */
  excludes: string[];
}

/** `path` with every character restic's patterns give a meaning to escaped. Pure. */
export function escapeResticPattern(path: string): string {
  return path.replace(/[\\*?[]/g, '\\$&');
}

/**
 * The file set as restic's paths and excludes, in the two parts the backup takes apart:
 * `install` (config/, the theme, apps: read once, before the maintenance window, so that
 * config.php is kept as it was before maintenance mode went on) and `live` (the data
 * directory and the absolute paths: read while the instance is live, then again inside the
 * window). The user's patterns keep their meaning (see tarExcludeOptions): one with a
 * leading '/' is anchored at the root of each part it falls in, any other matches at any
 * depth (`*` within a name, `**` across names); the paths never read (the live SQLite
 * files) are left out literally. Pure.
 */
export function resticSelection(fileSet: FileSet): {
  install: ResticSelection;
  live: ResticSelection;
} {
  // The same refusals as the tar passes (a pattern that would leave out a part whole).
  tarExcludeOptions(fileSet.exclude, fileSet.parts);
  const excludes = fileSet.skip.map((path) => `/${escapeResticPattern(fromRoot(path))}`);
  for (const raw of fileSet.exclude) {
    const pattern = raw.replace(/\/+$/, '');
    if (pattern === '') continue;
    if (!pattern.startsWith('/')) {
      excludes.push(pattern);
      continue;
    }
    for (const { part, within } of anchoredIn(pattern, fileSet.parts)) {
      const source = `/${escapeResticPattern(fromRoot(part.source))}`;
      excludes.push(within === '' ? source : `${source}/${within}`);
    }
  }
  const installParts = fileSet.parts.filter((p) => p.part === 'install');
  const liveParts = fileSet.parts.filter((p) => p.part !== 'install');
  const install = outermostSources(installParts);
  const live = outermostSources(liveParts);
  if (install.length === 0 || live.length === 0)
    throw new BackupError('Nothing to back up: the file set has no installation or data part.');
  // A data directory inside the installation (a tarball install) is the live part's.
  const inside = live
    .filter((l) => install.some((i) => isWithin(l, i)))
    .map((l) => `/${escapeResticPattern(fromRoot(l))}`);
  const unique = (list: string[]) => [...new Set(list)];
  return {
    install: { paths: install, excludes: unique([...excludes, ...inside]) },
    live: { paths: live, excludes: unique(excludes) },
  };
}
