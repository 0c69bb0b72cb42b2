// The pure parts of a backup into a restic repository: the file set as restic's paths and
// patterns, the destination's inputs validated into a plan (secrets only from the
// environment or files), the backups found again from their snapshots' tags, and the
// leftovers of runs that did not finish.
import { describe, expect, it } from 'vitest';
import { incompleteBackups, listedBackups, partTags, tagValue } from '../../src/backup-restic.ts';
import { cliInputs, listText } from '../../src/cli/main.ts';
import type { Snapshot } from '../../src/destination/restic.ts';
import { planBackup, resticCheck } from '../../src/settings.ts';
import type { FileSet } from '../../src/steps/files.ts';
import { escapeResticPattern, resticSelection } from '../../src/steps/restic-files.ts';

function fileSet(overrides: Partial<FileSet> = {}): FileSet {
  return {
    installDir: '/var/www/owncloud',
    installPaths: ['config', 'themes/mine'],
    dataDir: '/srv/data',
    absolutePaths: ['/etc/apache2/sites-available/owncloud.conf'],
    exclude: [],
    dataExclude: [],
    install: { type: 'package', reason: 'test' },
    appDirs: [],
    included: [],
    parts: [
      {
        source: '/var/www/owncloud/config',
        member: 'owncloud/config',
        part: 'install',
        patternRoot: 'config',
      },
      {
        source: '/var/www/owncloud/themes/mine',
        member: 'owncloud/themes/mine',
        part: 'install',
        patternRoot: 'themes/mine',
      },
      { source: '/srv/data', member: 'data', part: 'data', patternRoot: '' },
      {
        source: '/etc/apache2/sites-available/owncloud.conf',
        member: 'extra/etc/apache2/sites-available/owncloud.conf',
        part: 'absolute',
        patternRoot: 'etc/apache2/sites-available/owncloud.conf',
      },
    ],
    skip: [],
    readAs: [],
    ...overrides,
  } as FileSet;
}

describe('resticSelection', () => {
  it('reads the installation apart from the data and the absolute paths', () => {
    const { install, live } = resticSelection(fileSet());
    expect(install.paths).toEqual(['/var/www/owncloud/config', '/var/www/owncloud/themes/mine']);
    expect(live.paths).toEqual(['/srv/data', '/etc/apache2/sites-available/owncloud.conf']);
  });

  it('leaves out the live SQLite files literally, and keeps the patterns their meaning', () => {
    const { install, live } = resticSelection(
      fileSet({
        skip: ['/srv/data/own[1]*.db', '/srv/data/own[1]*.db-wal'],
        exclude: ['*/thumbnails/', '/alice/files/big*', '**/cache/**', '/config/secret.php'],
      }),
    );
    expect(live.excludes).toEqual([
      '/srv/data/own\\[1]\\*.db',
      '/srv/data/own\\[1]\\*.db-wal',
      '*/thumbnails',
      // Anchored: at the root of each part it falls in (the data directory's is its own).
      '/srv/data/alice/files/big*',
      '**/cache/**',
      '/var/www/owncloud/config/secret.php',
      '/srv/data/config/secret.php',
    ]);
    expect(install.excludes).toEqual(live.excludes);
  });

  it('reads a data directory inside the installation with the data, not twice', () => {
    const { install, live } = resticSelection(
      fileSet({
        parts: [
          { source: '/var/www/owncloud', member: 'owncloud', part: 'install', patternRoot: '' },
          { source: '/var/www/owncloud/data', member: 'data', part: 'data', patternRoot: '' },
        ],
      }),
    );
    expect(install.paths).toEqual(['/var/www/owncloud']);
    expect(install.excludes).toEqual(['/var/www/owncloud/data']);
    expect(live).toEqual({ paths: ['/var/www/owncloud/data'], excludes: [] });
  });

  it('refuses a pattern that would leave out a part whole, as the tar passes do', () => {
    expect(() => resticSelection(fileSet({ exclude: ['data'] }))).toThrow(
      /matches the name of '\/srv\/data' itself/,
    );
  });

  it('escapes what restic patterns give a meaning to', () => {
    expect(escapeResticPattern('/a\\b*c?d[e]')).toBe('/a\\\\b\\*c\\?d\\[e]');
  });
});

describe('the restic destination in the plan', () => {
  const base = { 'owncloud-dir': '/var/www/owncloud', destination: 'restic' };
  const defaults = { backupDir: '/backups', environment: { AWS_ACCESS_KEY_ID: 'AKIA1' } };

  it('takes the repository, the password, named backend variables, options and check', () => {
    const plan = planBackup(
      {
        ...base,
        'restic-repository': 's3:https://s3.example/bucket',
        'restic-password': 'pw',
        'restic-env': 'AWS_ACCESS_KEY_ID',
        'restic-option': 's3.storage-class=STANDARD_IA',
        'restic-init': 'true',
        check: 'read-data-subset=5%',
      },
      defaults,
    );
    expect(plan.restic).toEqual({
      repository: 's3:https://s3.example/bucket',
      password: 'pw',
      env: { AWS_ACCESS_KEY_ID: 'AKIA1' },
      options: ['s3.storage-class=STANDARD_IA'],
      init: true,
      restoreTestAsked: false,
      check: { kind: 'read-data-subset', percent: 5 },
    });
    expect(plan.restoreTest).toBe(false);
  });

  it.each([
    [{}, "input 'restic-repository': a restic repository is needed"],
    [{ 'restic-repository': '/r' }, "input 'restic-password': the repository password is needed"],
    [
      { 'restic-repository': '/r', 'restic-password': 'p', 'restic-env': 'NOT_SET' },
      'the environment variable NOT_SET is not set',
    ],
    [
      { 'restic-repository': '/r', 'restic-password': 'p', 'restic-env': 'RESTIC_PASSWORD' },
      'RESTIC_PASSWORD is given by',
    ],
    [
      { 'restic-repository': '/r', 'restic-password': 'p', 'restic-option': '--verbose' },
      'is not of the form key=value',
    ],
    [
      { 'restic-repository': '/r', 'restic-password': 'p', check: 'all' },
      'Expected none, metadata',
    ],
    [
      { 'restic-repository': '/r', 'restic-password': 'p', 'encrypt-to': 'age1x' },
      'encrypted by restic itself',
    ],
  ])('refuses %j with one message naming the input', (given, message) => {
    expect(() => planBackup({ ...base, ...given }, defaults)).toThrow(message);
  });

  it('takes the destination of its caller or restic', () => {
    expect(() =>
      planBackup({ 'owncloud-dir': '/x', destination: 'artifact' }, { backupDir: '/b' }),
    ).toThrow(
      "Invalid input 'destination': 'artifact' is not supported. Expected one of: directory, restic.",
    );
    expect(
      planBackup(
        { 'owncloud-dir': '/x', destination: 'artifact' },
        { backupDir: '/b', destination: 'artifact' },
      ).restic,
    ).toBeUndefined();
  });

  it('refuses restic inputs without destination restic', () => {
    expect(() =>
      planBackup({ 'owncloud-dir': '/x', 'restic-repository': '/r' }, { backupDir: '/b' }),
    ).toThrow(
      "Invalid input 'restic-repository': it only applies with input 'destination' restic.",
    );
  });

  it.each([
    ['', { kind: 'none' }],
    ['none', { kind: 'none' }],
    ['metadata', { kind: 'metadata' }],
    ['read-data-subset=100%', { kind: 'read-data-subset', percent: 100 }],
    ['read-data-subset=0.5%', { kind: 'read-data-subset', percent: 0.5 }],
  ])('check %j', (given, expected) => {
    expect(
      resticCheck(given, (m) => {
        throw new Error(m);
      }),
    ).toEqual(expected);
  });

  it.each(['read-data-subset=0%', 'read-data-subset=101%', 'read-data-subset=5'])(
    'check %j is refused',
    (given) => {
      expect(() =>
        resticCheck(given, (m) => {
          throw new Error(m);
        }),
      ).toThrow('Expected none');
    },
  );
});

describe('the command line of the restic destination', () => {
  it('reads the repository and the password from the environment, never from argv', () => {
    const inputs = cliInputs(['backup', '--destination', 'restic', '--restic-env', 'B2_KEY'], {
      OWNCLOUD_BACKUP_RESTIC_REPOSITORY: 'rest:https://u:secret@h/',
      OWNCLOUD_BACKUP_RESTIC_PASSWORD: 'pw',
    });
    expect(inputs.raw['restic-repository']).toBe('rest:https://u:secret@h/');
    expect(inputs.raw['restic-password']).toBe('pw');
    expect(inputs.raw['restic-env']).toBe('B2_KEY');
    expect(() => cliInputs(['backup', '--restic-password', 'pw'], {})).toThrow(
      /Refusing --restic-password/,
    );
    expect(() =>
      cliInputs(
        ['backup', '--destination', 'restic', '--restic-repository', 'rest:https://u:p@h/'],
        {},
      ),
    ).toThrow(/Refusing --restic-repository with a password in its URL/);
  });

  it('list takes the repository options and nothing of a backup', () => {
    const inputs = cliInputs(['list', '--restic-repository', '/srv/repo'], {
      OWNCLOUD_BACKUP_RESTIC_PASSWORD: 'pw',
    });
    expect(inputs.command).toBe('list');
    expect(inputs.raw.destination).toBe('restic');
    expect(() => cliInputs(['list', '--keep-last', '3'], {})).toThrow(
      'Option --keep-last only applies to backup',
    );
  });
});

describe('backups found again from their snapshots', () => {
  const snap = (id: string, time: string, tags: string[]): Snapshot => ({
    id,
    time,
    host: 'oc1',
    tags,
    paths: ['/'],
  });
  const complete = (name: string, time: string, id: string) => [
    snap(`${id}f`, time, partTags('oc1', name, 'files')),
    snap(`${id}m`, time, [
      ...partTags('oc1', name, 'manifest'),
      'version=10.15.0',
      'db=mysql',
      'bytes=2048',
    ]),
  ];

  it('lists the complete ones, newest first, with their version, database and size', () => {
    const listed = listedBackups([
      ...complete('owncloud-backup-20261201-020000', '2026-12-01T02:00:00Z', 'a'),
      ...complete('owncloud-backup-20261202-020000', '2026-12-02T02:00:00Z', 'b'),
      snap(
        'c',
        '2026-12-03T02:00:00Z',
        partTags('oc1', 'owncloud-backup-20261203-020000', 'files'),
      ),
      snap('d', '2026-12-03T02:00:00Z', ['someone-else', 'part=manifest']),
    ]);
    expect(listed.map((b) => [b.name, b.snapshot, b.version, b.db, b.bytes])).toEqual([
      ['owncloud-backup-20261202-020000', 'bm', '10.15.0', 'mysql', 2048],
      ['owncloud-backup-20261201-020000', 'am', '10.15.0', 'mysql', 2048],
    ]);
    expect(listText(listed).split('\n')[0]).toMatch(/^BACKUP +SNAPSHOT +TIME +INSTANCE/);
    expect(listText([])).toBe('No complete backups in the repository.\n');
  });

  it('finds the snapshots of backups without a manifest (a killed run)', () => {
    const leftovers = incompleteBackups([
      ...complete('owncloud-backup-20261201-020000', '2026-12-01T02:00:00Z', 'a'),
      snap(
        'c1',
        '2026-12-03T02:00:00Z',
        partTags('oc1', 'owncloud-backup-20261203-020000', 'files-live'),
      ),
      snap(
        'c2',
        '2026-12-03T02:00:00Z',
        partTags('oc1', 'owncloud-backup-20261203-020000', 'install'),
      ),
    ]);
    expect([...leftovers]).toEqual([['owncloud-backup-20261203-020000', ['c1', 'c2']]]);
  });

  it('reads a tag value', () => {
    expect(tagValue({ tags: ['a', 'part=files', 'x=1=2'] }, 'x')).toBe('1=2');
    expect(tagValue({ tags: [] }, 'part')).toBeUndefined();
  });
});
