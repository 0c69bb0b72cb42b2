// The pure pieces behind what the files archive holds: apps_paths, the package database's
// answers, Nextcloud's shipped.json, tar passes that read symlinked top-level paths where they point, a
// backup-dir inside what is copied, and summaries that say what was left out and why.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { jobSummary } from '../../src/action/summary.ts';
import type { BackupResult } from '../../src/backup.ts';
import { summary } from '../../src/cli/main.ts';
import { CONFIG_KEYS, parseAppsPaths } from '../../src/instance.ts';
import { leftOutOf, type Manifest } from '../../src/manifest.ts';
import { InputError } from '../../src/errors.ts';
import {
  tarCommands,
  tarExcludeOptions,
  tarTransforms,
  type FileSet,
} from '../../src/steps/files.ts';
import {
  dpkgPattern,
  isWithin,
  parseDpkgSearch,
  parseShippedJson,
} from '../../src/steps/installation.ts';
import { backupDirInside, resolveAsFarAsExists } from '../../src/steps/preflight.ts';
import { planBackup } from '../../src/settings.ts';

describe('install-type', () => {
  it('defaults to auto, and takes package and tarball as given', () => {
    const plan = (given?: string) =>
      planBackup(given ? { 'install-type': given } : {}, { backupDir: '/b' }).installType;
    expect(plan()).toBe('auto');
    expect(plan('auto')).toBe('auto');
    expect(plan('package')).toBe('package');
    expect(plan('Tarball')).toBe('tarball');
  });
});

describe("config.php's apps_paths", () => {
  it('is read from config.php', () => {
    expect(CONFIG_KEYS).toContain('apps_paths');
  });

  it('becomes a list of absolute, normalised app directories', () => {
    expect(
      parseAppsPaths(
        [
          { path: '/var/www/owncloud/apps', url: '/apps', writable: false },
          { path: '/var/www/owncloud/apps-external/', url: '/apps-external', writable: true },
          { path: 'custom_apps', url: '/custom_apps', writable: 'true' },
          { path: '/var/www/owncloud//apps', url: '/again', writable: true },
          { url: '/no-path' },
          'not an entry',
          { path: '' },
        ],
        '/var/www/owncloud',
      ),
    ).toEqual([
      { path: '/var/www/owncloud/apps', url: '/apps', writable: false },
      { path: '/var/www/owncloud/apps-external', url: '/apps-external', writable: true },
      { path: '/var/www/owncloud/custom_apps', url: '/custom_apps', writable: true },
    ]);
  });

  it('takes a PHP array with keys (JSON object) as well, and nothing when absent', () => {
    expect(
      parseAppsPaths({ 3: { path: '/srv/apps', url: '/apps', writable: false } }, '/x'),
    ).toEqual([{ path: '/srv/apps', url: '/apps', writable: false }]);
    expect(parseAppsPaths(undefined, '/x')).toEqual([]);
    expect(parseAppsPaths('apps', '/x')).toEqual([]);
  });
});

describe('the package database', () => {
  it('is asked for a path literally: glob characters are escaped', () => {
    expect(dpkgPattern('/srv/own[cloud]/*?/a\\b')).toBe('/srv/own\\[cloud]/\\*\\?/a\\\\b');
    expect(dpkgPattern('/var/www/owncloud/version.php')).toBe('/var/www/owncloud/version.php');
  });

  it("answers with each path's owners; diversions are not owners", () => {
    expect(
      parseDpkgSearch(
        [
          'owncloud-complete-files: /var/www/owncloud/version.php',
          'diversion by x from: /var/www/owncloud/occ',
          'pkg-a, pkg-b: /var/www/owncloud/apps',
          'libx:amd64: /srv/odd: name/files',
          '',
        ].join('\n'),
      ),
    ).toEqual(
      new Map([
        ['/var/www/owncloud/version.php', 'owncloud-complete-files'],
        ['/var/www/owncloud/apps', 'pkg-a, pkg-b'],
        ['/srv/odd: name/files', 'libx:amd64'],
      ]),
    );
  });
});

describe("Nextcloud's core/shipped.json", () => {
  it('lists the shipped and always-enabled apps', () => {
    expect(
      parseShippedJson(
        JSON.stringify({
          shippedApps: ['files', 'dav', 'theming'],
          alwaysEnabled: ['files', 'lookup_server_connector'],
          defaultEnabled: ['photos'],
        }),
      ),
    ).toEqual(new Set(['files', 'dav', 'theming', 'lookup_server_connector']));
  });

  it('is no list when it is not JSON or lists nothing', () => {
    expect(parseShippedJson('{')).toBeUndefined();
    expect(parseShippedJson('{"other": []}')).toBeUndefined();
  });
});

describe('paths within paths', () => {
  it('is the path itself or below it, never a sibling sharing a prefix', () => {
    expect(isWithin('/srv/data', '/srv/data')).toBe(true);
    expect(isWithin('/srv/data/backups', '/srv/data')).toBe(true);
    expect(isWithin('/srv/data-backups', '/srv/data')).toBe(false);
    expect(isWithin('/anything', '/')).toBe(true);
  });
});

describe('tar passes over the file set', () => {
  const fileSet: FileSet = {
    installDir: '/var/www/owncloud',
    installPaths: ['config', 'themes/mytheme', 'apps-external'],
    dataDir: '/srv/data',
    absolutePaths: ['/etc/apache2/sites-enabled/owncloud.conf', '/srv/more-apps'],
    exclude: [],
    dataExclude: ['owncloud.db'],
    kinds: {
      config: 'dir',
      'themes/mytheme': 'dir',
      'apps-external': 'dir',
      '/etc/apache2/sites-enabled/owncloud.conf': 'file-link',
      '/srv/more-apps': 'dir',
    },
    install: { type: 'package', reason: 'install-type: package' },
    appDirs: [],
    included: [],
    parts: [
      // config/ is a symlink to /etc/owncloud: read where it points.
      {
        source: '/etc/owncloud',
        member: 'owncloud/config',
        part: 'install',
        patternRoot: 'config',
      },
      {
        source: '/var/www/owncloud/themes/mytheme',
        member: 'owncloud/themes/mytheme',
        part: 'install',
        patternRoot: 'themes/mytheme',
      },
      {
        source: '/var/www/owncloud/apps-external',
        member: 'owncloud/apps-external',
        part: 'install',
        patternRoot: 'apps-external',
      },
      { source: '/srv/data', member: 'data', part: 'data', patternRoot: '' },
      {
        source: '/etc/apache2/sites-available/owncloud.conf',
        member: 'extra/etc/apache2/sites-enabled/owncloud.conf',
        part: 'absolute',
        patternRoot: 'etc/apache2/sites-enabled/owncloud.conf',
      },
      {
        source: '/srv/more-apps',
        member: 'extra/srv/more-apps',
        part: 'absolute',
        patternRoot: 'srv/more-apps',
      },
    ],
    skip: ['/srv/data/owncloud.db'],
    readAs: [],
  };

  it('reads the installation in a plain run and the rest incrementally; the delta reads only the rest', () => {
    const base = tarCommands(fileSet, 'base', '/tmp/s/snapshot');
    const delta = tarCommands(fileSet, 'delta', '/tmp/s/snapshot');
    expect(base).toHaveLength(2);
    expect(delta).toHaveLength(1);
    const read = (argv: string[]) =>
      argv.filter((a) => a.startsWith('--add-file=')).map((a) => a.slice('--add-file='.length));
    // The directories above themes/mytheme and above the absolute paths alone (no
    // recursion), then the install parts.
    expect(read(base[0]!)).toEqual([
      'var/www/owncloud/themes',
      'etc',
      'srv',
      'etc/apache2',
      'etc/apache2/sites-enabled',
      'etc/owncloud',
      'var/www/owncloud/themes/mytheme',
      'var/www/owncloud/apps-external',
    ]);
    const plain = base[0]!;
    expect(plain.indexOf('--no-recursion')).toBeLessThan(
      plain.indexOf('--add-file=var/www/owncloud/themes'),
    );
    expect(plain.indexOf('--recursion')).toBeLessThan(plain.indexOf('--add-file=etc/owncloud'));
    expect(plain.some((a) => a.startsWith('--listed-incremental'))).toBe(false);
    expect(plain).toContain('--transform=s,^etc/owncloud(/|$),/owncloud/config\\1,xrhS');
    expect(plain).toContain('--transform=s,^var/www/owncloud(/|$),/owncloud\\1,xrhS');
    // What no part renames (the directories above absolute paths) goes below extra/.
    expect(plain[plain.indexOf('--transform=s,^/,,rhS') - 1]).toBe(
      '--transform=s,^([^/]),/extra/\\1,xrhS',
    );
    for (const argv of [base[1]!, delta[0]!]) {
      expect(read(argv)).toEqual([
        'srv/data',
        'etc/apache2/sites-available/owncloud.conf',
        'srv/more-apps',
      ]);
      expect(argv).toContain('--listed-incremental=/tmp/s/snapshot');
      expect(argv).toContain('--exclude=srv/data/owncloud.db');
      expect(argv).toContain('--one-file-system');
      expect(argv.some((a) => a.includes('owncloud/config'))).toBe(false);
    }
    expect(delta[0]).toContain('--no-check-device');
    expect(base[1]).not.toContain('--no-check-device');
    // Wildcards left on for the paths to read drop tar's directory records.
    for (const argv of tarCommands({ ...fileSet, exclude: ['*/thumbnails/'] }, 'base', '/s')) {
      expect(argv.lastIndexOf('--wildcards')).toBeGreaterThan(-1);
      expect(argv.lastIndexOf('--no-wildcards')).toBeGreaterThan(argv.lastIndexOf('--wildcards'));
    }
  });

  it('renames the innermost part first and marks each result so that no later rename applies', () => {
    expect(
      tarTransforms([
        { source: '/owncloud', member: 'owncloud', part: 'install', patternRoot: '' },
        { source: '/owncloud/data', member: 'data', part: 'data', patternRoot: '' },
        { source: '/data', member: 'extra/data', part: 'absolute', patternRoot: 'data' },
        {
          source: '/srv/a.b,c',
          member: 'extra/srv/a.b,c',
          part: 'absolute',
          patternRoot: 'srv/a.b,c',
        },
      ]),
    ).toEqual([
      '--transform=s,^owncloud/data(/|$),/data\\1,xrhS',
      '--transform=s,^srv/a\\.b\\,c(/|$),/extra/srv/a.b\\,c\\1,xrhS',
      '--transform=s,^owncloud(/|$),/owncloud\\1,xrhS',
      '--transform=s,^data(/|$),/extra/data\\1,xrhS',
      '--transform=s,^/,,rhS',
    ]);
  });

  it("turns rsync's exclude patterns into tar's, anchored ones at each part's root", () => {
    expect(tarExcludeOptions(['*/thumbnails/'], fileSet.parts)).toEqual([
      '--no-anchored',
      '--wildcards',
      '--no-wildcards-match-slash',
      '--exclude=*/thumbnails',
    ]);
    expect(tarExcludeOptions(['appdata_*/**/preview'], fileSet.parts)).toEqual([
      '--no-anchored',
      '--wildcards',
      '--wildcards-match-slash',
      '--exclude=appdata_*/*/preview',
    ]);
    // Anchored: relative to the data directory, and to the installation for config/.
    expect(tarExcludeOptions(['/alice/files/', '/config/big.log'], fileSet.parts)).toEqual([
      '--anchored',
      '--wildcards',
      '--no-wildcards-match-slash',
      '--exclude=srv/data/alice/files',
      '--anchored',
      '--wildcards',
      '--no-wildcards-match-slash',
      '--exclude=etc/owncloud/big.log',
      '--anchored',
      '--wildcards',
      '--no-wildcards-match-slash',
      '--exclude=srv/data/config/big.log',
    ]);
  });

  it("refuses a pattern that matches a part's own path: tar would leave the part out whole", () => {
    expect(() => tarExcludeOptions(['data'], fileSet.parts)).toThrow(
      /^exclude: 'data' matches the name of '\/srv\/data' itself, which would leave it out whole\. Anchor the pattern with a leading '\/' \(e\.g\. '\/data'\) to mean a path inside it\.$/,
    );
    expect(() => tarExcludeOptions(['srv/*'], fileSet.parts)).toThrow(InputError);
  });
});

describe('a backup-dir inside what is copied', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ocb-unit-backupdir-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const included = [
    { path: '/var/www/owncloud', real: '/var/www/owncloud', what: 'the installation' },
    { path: '/var/www/owncloud/data', real: '/var/www/owncloud/data', what: 'the data directory' },
    { path: '/mnt/files', real: '/srv/real-files', what: 'an extra path' },
  ];

  it('names the innermost copied path it lies in, by real paths', () => {
    expect(backupDirInside('/var/www/owncloud/data/backups', included)?.what).toBe(
      'the data directory',
    );
    expect(backupDirInside('/var/www/owncloud/backups', included)?.what).toBe('the installation');
    expect(backupDirInside('/srv/real-files/b', included)?.path).toBe('/mnt/files');
    expect(backupDirInside('/var/www/owncloud-backups', included)).toBeUndefined();
    expect(backupDirInside('/srv/backups', included)).toBeUndefined();
  });

  it('is resolved through symlinks as far as it exists, without creating anything', () => {
    mkdirSync(join(dir, 'real'));
    symlinkSync(join(dir, 'real'), join(dir, 'link'));
    expect(resolveAsFarAsExists(join(dir, 'link', 'not', 'yet'))).toBe(
      join(dir, 'real', 'not', 'yet'),
    );
    expect(resolveAsFarAsExists(join(dir, 'link'))).toBe(join(dir, 'real'));
    expect(resolveAsFarAsExists(join(dir, 'plain'))).toBe(join(dir, 'plain'));
  });
});

describe('summaries', () => {
  const manifest = {
    name: 'owncloud-backup-20261126-021700',
    instance: { product: 'nextcloud', version: '28.0.4.1', instanceId: 'oc1', theme: '' },
    source: {
      host: 'root@cloud.example.com:22',
      installDir: '/var/www/nextcloud',
      dataDir: '/srv/data',
      installType: 'package',
      installTypeReason: 'install-type: package',
    },
    database: { type: 'mysql', name: 'nc', dumpTool: 'mysqldump', dumpToolVersion: 'Ver 10.19' },
    files: {
      layout: { owncloud: '/var/www/nextcloud', data: '/srv/data' },
      installPaths: ['config', 'apps/news', 'custom_apps'],
      absolutePaths: [],
      excludePatterns: ['*/thumbnails/'],
      leftOut: ['nc.db', 'nc.db-journal'],
      appDirs: [
        {
          path: '/var/www/nextcloud/apps',
          listed: true,
          writable: false,
          copied: 'apps',
          apps: ['news'],
          shipped: ['dav', 'files'],
          reason: 'ships with the server code',
        },
      ],
      serverCode: {
        what: 'everything else in /var/www/nextcloud',
        why: 'server code: package install, reinstall the same version (Nextcloud 28.0.4.1)',
      },
      fileCount: 3,
      bytes: 10,
    },
    maintenance: { managed: true, switchedByUs: true, seconds: 1.5 },
    archives: [{ name: 'owncloud-files_20261126.tar.zst', size: 2048, sha256: 'f'.repeat(64) }],
    durationSeconds: 9,
  } as unknown as Manifest;
  const result = {
    directory: '/b/x',
    manifest,
    manifestPath: '',
    dumpPath: '',
    filesArchivePath: '',
    sizeBytes: 0,
  } as BackupResult;

  it('lists what was left out and why', () => {
    expect(leftOutOf(manifest)).toEqual([
      {
        what: 'everything else in /var/www/nextcloud',
        why: 'server code: package install, reinstall the same version (Nextcloud 28.0.4.1)',
      },
      {
        what: 'the apps in /var/www/nextcloud/apps that ship with the release (dav, files)',
        why: 'they come back with the reinstall',
      },
      { what: '`*/thumbnails/`' },
      {
        what: '`nc.db` and its journal files',
        why: 'the live SQLite database; the dump replaces it',
      },
    ]);
  });

  it('the job summary is titled with the product found and says what was left out and why', () => {
    const text = jobSummary(result, undefined, 0, new Date('2026-11-26T02:17:00Z'));
    expect(text.split('\n')[0]).toBe('## Nextcloud backup owncloud-backup-20261126-021700');
    expect(text).toContain(
      '| Left out | everything else in /var/www/nextcloud (server code: package install, reinstall the same version (Nextcloud 28.0.4.1)); the apps in /var/www/nextcloud/apps that ship with the release (dav, files) (they come back with the reinstall); `*/thumbnails/`; `nc.db` and its journal files (the live SQLite database; the dump replaces it) |',
    );
    expect(text).toContain('| Install type | package (install-type: package) |');
    const owncloud = {
      ...manifest,
      instance: { ...manifest.instance, product: 'owncloud' },
    } as Manifest;
    expect(jobSummary({ ...result, manifest: owncloud }, undefined, 0, new Date())).toMatch(
      /^## ownCloud backup /,
    );
  });

  it('the command-line summary names the product found and each thing left out', () => {
    const text = summary(result);
    expect(text).toContain(
      '  Nextcloud 28.0.4.1 (instance oc1) from root@cloud.example.com:22, package install (install-type: package)\n',
    );
    expect(text).not.toContain('ownCloud');
    expect(text).toContain(
      '  left out: everything else in /var/www/nextcloud (server code: package install, reinstall the same version (Nextcloud 28.0.4.1))\n',
    );
    expect(text).toContain('  left out: */thumbnails/\n');
  });
});
