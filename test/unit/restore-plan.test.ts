// The pure parts of a restore: where each archive member goes, which paths are replaced and
// where they are moved aside, what config.php gets, how restored row counts are judged.
import { describe, expect, it } from 'vitest';
import { configChanges, restoreLayout } from '../../src/restore.ts';
import { rowCountDifferences, withoutStatements } from '../../src/steps/restore-database.ts';
import type { Manifest } from '../../src/manifest.ts';
import { cliInputs } from '../../src/cli/main.ts';
import { cliLabel, planRestore } from '../../src/settings.ts';
import { outermostPaths, planMoves } from '../../src/steps/previous-state.ts';
import { memberTransform, tarExtractCommand } from '../../src/steps/restore-files.ts';
import { resolveDatabase } from '../../src/instance.ts';

function manifestOf(files: Partial<Manifest['files']>, source: Partial<Manifest['source']> = {}) {
  return {
    source: { installDir: '/var/www/owncloud', dataDir: '/var/www/owncloud/data', ...source },
    files: {
      layout: { owncloud: '/var/www/owncloud', data: '/var/www/owncloud/data' },
      installPaths: ['config', 'themes/mytheme', 'apps-external'],
      absolutePaths: [],
      ...files,
    },
  } as unknown as Manifest;
}

describe('where a backup goes', () => {
  it('a package install replaces only what the backup holds, and the data directory', () => {
    const layout = restoreLayout(manifestOf({}), {});
    expect(layout.replaced).toEqual([
      '/var/www/owncloud/apps-external',
      '/var/www/owncloud/config',
      '/var/www/owncloud/data',
      '/var/www/owncloud/themes/mytheme',
    ]);
    expect(layout.members).toEqual({
      owncloud: '/var/www/owncloud',
      data: '/var/www/owncloud/data',
    });
  });

  it('a tarball install replaces the whole installation; a data directory inside moves with it', () => {
    const layout = restoreLayout(manifestOf({ installPaths: ['.'] }), { owncloudDir: '/srv/oc' });
    expect(layout.replaced).toEqual(['/srv/oc']);
    expect(layout.dataDir).toBe('/srv/oc/data');
  });

  it('an absolute extra path goes back under its own path, and data-dir overrides', () => {
    const manifest = manifestOf({
      layout: { owncloud: '/a', data: '/d', extra: '/' },
      absolutePaths: ['/etc/ssl/cloud'],
    });
    const layout = restoreLayout(manifest, { dataDir: '/mnt/data' });
    expect(layout.members).toEqual({
      owncloud: '/var/www/owncloud',
      data: '/mnt/data',
      extra: '/',
    });
    expect(layout.replaced).toContain('/etc/ssl/cloud');
    expect(layout.replaced).toContain('/mnt/data');
  });

  it('nested paths are not moved twice', () => {
    expect(outermostPaths(['/a/b', '/a', '/c', '/a/b/c', '/ab'])).toEqual(['/a', '/ab', '/c']);
  });

  it('moves go into a hidden container beside each path, or inside a mount point', () => {
    expect(
      planMoves(
        [
          { path: '/var/www/owncloud/config', exists: true, mountPoint: false },
          { path: '/mnt/data', exists: true, mountPoint: true },
          { path: '/new', exists: false, mountPoint: false },
        ],
        '20261201T120000Z',
      ),
    ).toEqual([
      {
        original: '/var/www/owncloud/config',
        aside: '/var/www/owncloud/.owncloud-restore-previous-20261201T120000Z/config',
        how: 'path',
      },
      {
        original: '/mnt/data',
        aside: '/mnt/data/.owncloud-restore-previous-20261201T120000Z',
        how: 'entries',
      },
      { original: '/new', aside: '', how: 'absent' },
    ]);
  });
});

describe('tar on the host', () => {
  it('maps a member and everything below it, with sed metacharacters in the target escaped', () => {
    expect(memberTransform('data', '/srv/a,b&c\\d')).toBe('s,^data(/|$),srv/a\\,b\\&c\\\\d\\1,xS');
    expect(memberTransform('extra', '/')).toBe('s,^extra(/|$),.\\1,xS');
  });

  it('keeps existing directories as they are and restores every kind of metadata', () => {
    const argv = tarExtractCommand({ owncloud: '/var/www/owncloud' }, 'zstd');
    expect(argv).toEqual(
      expect.arrayContaining([
        '--zstd',
        '--directory=/',
        '--acls',
        '--xattrs',
        '--numeric-owner',
        '--same-owner',
        '--no-overwrite-dir',
      ]),
    );
  });
});

describe('config.php on the target', () => {
  const archived = {
    datadirectory: '/var/www/owncloud/data/',
    dbtype: 'mysql',
    dbhost: '127.0.0.1:3306',
    dbname: 'owncloud',
    dbuser: 'oc',
    dbpassword: 'old',
  };
  it('changes nothing when nothing new is given', () => {
    const connection = resolveDatabase(archived, {}, '/var/www/owncloud/data');
    expect(configChanges(archived, connection, '/var/www/owncloud/data', {})).toEqual({});
  });
  it('replaces exactly the values given, and a moved data directory', () => {
    const overrides = { host: 'db.internal', port: 3307, name: 'oc2', user: 'oc', password: 'new' };
    const connection = resolveDatabase(archived, overrides, '/mnt/data');
    expect(configChanges(archived, connection, '/mnt/data', overrides)).toEqual({
      datadirectory: '/mnt/data',
      dbhost: 'db.internal:3307',
      dbname: 'oc2',
      dbpassword: 'new',
    });
  });
});

describe('the closing check of the database', () => {
  it('names missing, extra and short tables', () => {
    expect(rowCountDifferences({ oc_a: 2, oc_b: 3 }, { oc_a: 2, oc_b: 3 })).toEqual([]);
    expect(rowCountDifferences({ oc_a: 2, oc_b: 3 }, { oc_a: 1, oc_c: 0 })).toEqual([
      'oc_a has 1 rows, the backup counted 2',
      'oc_b is missing (3 rows at backup time)',
      'oc_c was not in the backup',
    ]);
  });
});

describe('restore options', () => {
  const plan = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const inputs = cliInputs(['restore', ...args], env, '/backups');
    return planRestore(inputs.raw, inputs.backupPath ?? '', inputs.label);
  };
  it('takes the backup directory relative to the working directory; paths default to the recorded ones', () => {
    const restore = plan(['2026-12-01_020000']);
    expect(restore.backupPath).toBe('/backups/2026-12-01_020000');
    expect(restore.owncloudDir).toBe('');
    expect(restore.safetyCopy).toBe(true);
    expect(restore.discardPrevious).toBe(false);
  });
  it('reads the admin password from the environment, never from argv', () => {
    expect(
      plan(['b', '--db-admin-user', 'root'], { OWNCLOUD_BACKUP_DB_ADMIN_PASSWORD: 's3' }).dbAdmin,
    ).toEqual({
      user: 'root',
      password: 's3',
    });
    expect(() => plan(['b', '--db-admin-password', 'x'])).toThrow(/Refusing --db-admin-password/);
  });
  it('refuses options of the other command, and a password without its admin', () => {
    expect(() => plan(['b', '--compression', 'gzip'])).toThrow(
      'Option --compression only applies to backup',
    );
    expect(() => cliInputs(['backup', '--owner', 'x'], {})).toThrow(
      'Option --owner only applies to restore',
    );
    expect(() => plan(['b'], { OWNCLOUD_BACKUP_DB_ADMIN_PASSWORD: 'x' })).toThrow(
      'Invalid environment variable OWNCLOUD_BACKUP_DB_ADMIN_PASSWORD: it only applies with option --db-admin-user',
    );
    expect(() => plan(['b', '--safety-copy', 'false', '--discard-previous'])).toThrow(
      /Invalid option --discard-previous: it only applies with a safety copy/,
    );
    expect(() => plan([])).toThrow('Expected: owncloud-backup restore BACKUP-DIR');
    expect(() => plan(['--cleanup', 'b'])).toThrow('restore --cleanup takes no BACKUP-DIR');
    expect(() => planRestore({ owner: 'bad user' }, '/b', cliLabel)).toThrow(
      "Invalid option --owner: 'bad user' is not a user name.",
    );
  });
});

describe('a failed database statement in a message', () => {
  it('never quotes the statement, which may hold a password literal', () => {
    const psql =
      "ERROR:  syntax error at or near \"x\"\nLINE 1: ...ROLE %I LOGIN PASSWORD %L', 'u', 'it''s secret') WHERE\n                                                         ^";
    expect(withoutStatements(psql)).toBe('ERROR:  syntax error at or near "x"');
    const mysql =
      "ERROR 1064 (42000) at line 4: You have an error in your SQL syntax; check the manual near 'IDENTIFIED BY 'it\\'s secret'' at line 1";
    expect(withoutStatements(mysql)).toBe(
      'ERROR 1064 (42000) at line 4: You have an error in your SQL syntax; check the manual near (the statement is not shown) at line 1',
    );
  });
});
