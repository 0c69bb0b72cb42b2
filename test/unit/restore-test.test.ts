// The restore test's pure parts: finding the server programs (newest version first, the
// fixed directories replaceable for a test), choosing MariaDB's or MySQL's way to start,
// reading the archive listing, and the lines it prints.
import { describe, expect, it } from 'vitest';
import { homeStorageUsers, parseHexLines } from '../../src/database/engine.ts';
import { mysql } from '../../src/database/mysql.ts';
import { pgsql } from '../../src/database/pgsql.ts';
import {
  archiveProblems,
  expandVersionDir,
  findPrograms,
  ListingFacts,
  restoreTestLine,
  searchDirs,
} from '../../src/steps/restore-test.ts';

describe('finding the throwaway server programs', () => {
  const listing: Record<string, string[]> = {
    '/usr/lib/postgresql': ['9.6', '15', '13', '16beta', 'README'],
  };
  const list = (dir: string) => listing[dir] ?? [];

  it('tries versioned directories newest first, skipping what is not a version', () => {
    expect(expandVersionDir('/usr/lib/postgresql/*/bin', list)).toEqual([
      '/usr/lib/postgresql/15/bin',
      '/usr/lib/postgresql/13/bin',
      '/usr/lib/postgresql/9.6/bin',
    ]);
    expect(expandVersionDir('/usr/sbin', list)).toEqual(['/usr/sbin']);
  });

  it('searches PATH first, then the fixed directories, or only those the environment names', () => {
    expect(searchDirs(pgsql, { PATH: '/usr/bin:/bin' }, list)).toEqual([
      '/usr/bin',
      '/bin',
      '/usr/lib/postgresql/15/bin',
      '/usr/lib/postgresql/13/bin',
      '/usr/lib/postgresql/9.6/bin',
      '/usr/local/pgsql/bin',
    ]);
    expect(
      searchDirs(pgsql, { PATH: '/usr/bin', OWNCLOUD_BACKUP_SERVER_DIRS: '/opt/pg/bin' }, list),
    ).toEqual(['/usr/bin', '/opt/pg/bin']);
    expect(searchDirs(pgsql, { PATH: '/usr/bin', OWNCLOUD_BACKUP_SERVER_DIRS: '' }, list)).toEqual([
      '/usr/bin',
    ]);
  });

  it('takes the first name found, initdb beside its postgres, and names what is missing', () => {
    const present = new Set([
      '/usr/lib/postgresql/15/bin/postgres',
      '/usr/lib/postgresql/15/bin/initdb',
      '/usr/lib/postgresql/13/bin/initdb',
      '/usr/bin/psql',
    ]);
    const dirs = ['/usr/bin', '/usr/lib/postgresql/13/bin', '/usr/lib/postgresql/15/bin'];
    expect(findPrograms(pgsql.throwawayPrograms, dirs, (p) => present.has(p))).toEqual({
      programs: {
        server: '/usr/lib/postgresql/15/bin/postgres',
        init: '/usr/lib/postgresql/15/bin/initdb',
        client: '/usr/bin/psql',
      },
    });
    expect(findPrograms(pgsql.throwawayPrograms, ['/usr/bin'], (p) => present.has(p))).toEqual({
      missing: 'postgres',
    });
    expect(findPrograms(mysql.throwawayPrograms, ['/usr/bin'], () => false)).toEqual({
      missing: 'mariadbd/mysqld',
    });
    // mariadbd first; mysqld where only it exists; install-db is optional (MySQL needs none).
    const mysqlOnly = new Set(['/usr/sbin/mysqld', '/usr/bin/mysql']);
    expect(
      findPrograms(mysql.throwawayPrograms, ['/usr/bin', '/usr/sbin'], (p) => mysqlOnly.has(p)),
    ).toEqual({ programs: { server: '/usr/sbin/mysqld', client: '/usr/bin/mysql' } });
  });
});

describe('starting a throwaway MySQL or MariaDB server', () => {
  const database = { user: 'oc', tablePrefix: 'oc_', utf8mb4: true };

  it('initialises MariaDB with its install-db, MySQL with --initialize-insecure, socket only', () => {
    const maria = mysql.throwawaySetup({
      programs: {
        server: '/usr/sbin/mariadbd',
        init: '/usr/bin/mariadb-install-db',
        client: '/usr/bin/mariadb',
      },
      serverVersion: 'mariadbd  Ver 10.11.6-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64',
      dir: '/tmp/t',
      database,
      root: true,
    });
    expect(maria.server).toBe('mariadbd 10.11.6-MariaDB-0+deb12u1');
    expect(maria.init[0]![0]).toBe('/usr/bin/mariadb-install-db');
    expect(maria.serverArgv).toEqual(
      expect.arrayContaining(['--skip-networking', '--socket=/tmp/t/mysqld.sock', '--user=root']),
    );
    expect(maria.serverArgv).not.toContain('--mysqlx=OFF');
    expect(maria.dropLines).toBeUndefined();
    expect(maria.tool.program).toBe('mariadb-dump');

    const oracle = mysql.throwawaySetup({
      programs: { server: '/usr/sbin/mysqld', client: '/usr/bin/mysql' },
      serverVersion: '/usr/sbin/mysqld  Ver 8.0.36-0ubuntu0.22.04.1 for Linux on x86_64 ((Ubuntu))',
      dir: '/tmp/t',
      database,
      root: false,
    });
    expect(oracle.server).toBe('mysqld 8.0.36-0ubuntu0.22.04.1');
    expect(oracle.init).toEqual([
      [
        '/usr/sbin/mysqld',
        '--no-defaults',
        '--initialize-insecure',
        '--datadir=/tmp/t/data',
        '--tmpdir=/tmp/t',
      ],
    ]);
    expect(oracle.serverArgv).toContain('--mysqlx=OFF');
    expect(oracle.serverArgv).not.toContain('--user=root');
    // MariaDB's sandbox line is a command of MariaDB's client that MySQL's refuses.
    expect(oracle.dropLines!.test('/*M!999999\\- enable the sandbox mode */')).toBe(true);
    expect(oracle.dropLines!.test('INSERT INTO `oc_x` VALUES (1);')).toBe(false);
    expect(oracle.tool.program).toBe('mysqldump');
  });

  it('names install-db as missing for a MariaDB server without it', () => {
    const setup = mysql.throwawaySetup({
      programs: { server: '/usr/sbin/mariadbd', client: '/usr/bin/mariadb' },
      serverVersion: 'mariadbd  Ver 11.4.2-MariaDB',
      dir: '/tmp/t',
      database,
      root: false,
    });
    expect(setup.missing).toBe('mariadb-install-db/mysql_install_db');
  });

  it("makes PostgreSQL's superuser the instance's user, so the dump's OWNER TO lines load", () => {
    const setup = pgsql.throwawaySetup({
      programs: { server: '/pg/bin/postgres', init: '/pg/bin/initdb', client: '/pg/bin/psql' },
      serverVersion: 'postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)',
      dir: '/tmp/t',
      database: { user: 'oc_admin', tablePrefix: 'oc_', utf8mb4: false },
      root: false,
    });
    expect(setup.server).toBe('postgres 15.8 (Debian 15.8-0+deb12u1)');
    expect(setup.init[0]).toEqual(expect.arrayContaining(['-U', 'oc_admin', '--auth=trust']));
    expect(setup.serverArgv).toEqual(
      expect.arrayContaining(['listen_addresses=', 'unix_socket_directories=/tmp/t']),
    );
    expect(setup.connection).toMatchObject({ user: 'oc_admin', socket: '/tmp/t' });
  });
});

describe('checking the files archive listing', () => {
  function facts(names: string[]) {
    const collected = new ListingFacts();
    names.forEach((name) => collected.add(name));
    return collected;
  }

  it('finds config.php, the marker and the users with files/', () => {
    const found = facts([
      'owncloud/',
      'owncloud/config/config.php',
      'data/.ocdata',
      'data/alice/files/',
      'data/alice/files/doc.txt',
      'data/bob/cache/',
      'data/carol/files',
    ]);
    expect(found.configPhp).toBe(true);
    expect(found.marker).toBe(true);
    expect([...found.userFiles].sort()).toEqual(['alice', 'carol']);
    expect(archiveProblems(found, ['alice', 'carol'])).toEqual([]);
    expect(archiveProblems(found, ['alice', 'bob', 'dave'])).toEqual([
      'the files archive has no files/ directory for users bob, dave (a home storage in the database)',
    ]);
  });

  it('names what a damaged archive lacks', () => {
    expect(
      archiveProblems(facts(['data/x/files/', 'owncloud/config/config.sample.php']), []),
    ).toEqual([
      'the files archive has no owncloud/config/config.php',
      'the files archive has no data/.ocdata (or .ncdata) marker',
    ]);
  });

  it('reads the home storages as users', () => {
    const ids = parseHexLines(
      `${Buffer.from('home::alice').toString('hex')}\n${Buffer.from('home::b ob').toString('hex')}\n`,
    );
    expect(homeStorageUsers([...ids, 'local::/srv/data/', 'object::user:x'])).toEqual([
      'alice',
      'b ob',
    ]);
    expect(() => parseHexLines('not hex\n')).toThrow(/expected hex digits/);
  });
});

describe('the restore test line', () => {
  it('says skipped in the words a reader greps for', () => {
    expect(
      restoreTestLine({
        result: 'skipped',
        reason: 'no mariadbd/mysqld on the runner',
        tables: 0,
        rows: 0,
        users: 0,
        seconds: 0,
      }),
    ).toBe('restore test skipped: no mariadbd/mysqld on the runner');
    expect(
      restoreTestLine({
        result: 'failed',
        reason: 'the restored database differs: oc_x has 1 rows, the backup counted 2',
        tables: 3,
        rows: 9,
        users: 1,
        seconds: 1.23,
        server: 'postgres 15.8',
      }),
    ).toBe(
      'restore test failed (1.2 s, postgres 15.8): the restored database differs: oc_x has 1 rows, the backup counted 2',
    );
  });
});

describe('a runner server older than the dump', () => {
  it('is a reason to skip for PostgreSQL (a newer pg_dump writes what an older server refuses)', () => {
    const problem = pgsql.throwawayVersionProblem!;
    expect(
      problem('postgres (PostgreSQL) 15.10 (Debian 15.10-0+deb12u1)', 'pg_dump (PostgreSQL) 17.2'),
    ).toBe(
      "the runner's postgres 15 is older than the pg_dump 17 the dump was made with (install PostgreSQL 17 on the runner)",
    );
    expect(problem('postgres (PostgreSQL) 16.4', 'pg_dump (PostgreSQL) 15.10')).toBeUndefined();
    expect(problem('postgres (PostgreSQL) 15.10', 'pg_dump (PostgreSQL) 15.2')).toBeUndefined();
  });
});
