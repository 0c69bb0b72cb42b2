import { describe, expect, it } from 'vitest';
import { parseDbHost, productOf, resolveDatabase } from '../../src/instance.ts';

describe('parseDbHost reads every form ownCloud accepts', () => {
  it.each([
    ['', {}],
    ['localhost', { host: 'localhost' }],
    ['db.example.com', { host: 'db.example.com' }],
    ['127.0.0.1:3307', { host: '127.0.0.1', port: 3307 }],
    ['localhost:/run/mysqld/mysqld.sock', { host: 'localhost', socket: '/run/mysqld/mysqld.sock' }],
    ['/var/run/postgresql', { socket: '/var/run/postgresql' }],
    ['[::1]:5432', { host: '::1', port: 5432 }],
    ['[fd00::5]', { host: 'fd00::5' }],
  ])('%j', (dbhost, expected) => {
    expect(parseDbHost(dbhost)).toEqual(expected);
  });
});

describe('resolveDatabase', () => {
  const config = {
    dbtype: 'mysql',
    dbhost: 'localhost:/run/mysqld/mysqld.sock',
    dbname: 'owncloud',
    dbuser: 'oc',
    dbpassword: 'pw',
    dbtableprefix: 'oc_',
    'mysql.utf8mb4': true,
  };

  it("takes config.php's values", () => {
    expect(resolveDatabase(config, {}, '/data')).toEqual({
      type: 'mysql',
      socket: '/run/mysqld/mysqld.sock',
      name: 'owncloud',
      user: 'oc',
      password: 'pw',
      tablePrefix: 'oc_',
      utf8mb4: true,
    });
  });

  it('lets each explicit value win', () => {
    expect(
      resolveDatabase(
        config,
        { host: '10.0.0.5', port: 3306, name: 'x', user: 'y', password: 'z' },
        '/data',
      ),
    ).toMatchObject({ host: '10.0.0.5', port: 3306, name: 'x', user: 'y', password: 'z' });
  });

  it('puts the SQLite file at <datadirectory>/<dbname>.db', () => {
    expect(resolveDatabase({ dbtype: 'sqlite3', dbname: 'nextcloud' }, {}, '/srv/data').file).toBe(
      '/srv/data/nextcloud.db',
    );
  });

  it('refuses Oracle and unknown engines with a message naming config.php', () => {
    expect(() => resolveDatabase({ dbtype: 'oci' }, {}, '/d')).toThrow(
      "config.php says dbtype 'oci' (Oracle), which is not supported",
    );
    expect(() => resolveDatabase({ dbtype: 'mssql' }, {}, '/d')).toThrow(
      "config.php has dbtype 'mssql', which is not supported. Expected mysql, pgsql or sqlite3.",
    );
  });

  it('needs a user for a server database', () => {
    expect(() => resolveDatabase({ dbtype: 'pgsql' }, {}, '/d')).toThrow('No database user');
  });
});

describe('productOf', () => {
  it('tells ownCloud from Nextcloud by the data directory marker and version', () => {
    expect(productOf({ ocdata: true, ncdata: false }, '10.15.0.2')).toBe('owncloud');
    expect(productOf({ ocdata: false, ncdata: true }, '28.0.4.1')).toBe('nextcloud');
    expect(productOf({ ocdata: true, ncdata: false }, '18.0.1.3')).toBe('nextcloud');
  });
});
