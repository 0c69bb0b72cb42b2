// The sample instance builder: faithful to a real ownCloud 10 / Nextcloud install, and its
// database agrees with its files, for each database engine.
import { existsSync, lstatSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMariaDb, writeMariaDbClientConfig, type MariaDbServer } from '../harness/mariadb.ts';
import { pgpassLine, startPostgres, type PostgresServer } from '../harness/postgres.ts';
import { requireTool } from '../harness/tools.ts';
import { buildSampleInstance, HOSTILE_NAMES, type SampleInstance } from '../sample/instance.ts';

let mariadb: MariaDbServer;
let postgres: PostgresServer;

beforeAll(async () => {
  [mariadb, postgres] = await Promise.all([startMariaDb(), startPostgres()]);
});
afterAll(async () => {
  await Promise.all([mariadb?.stop(), postgres?.stop()]);
});

/** Every path below dir, relative to it, directories with a trailing slash. */
function walk(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const rel = prefix + name;
    if (lstatSync(join(dir, name)).isDirectory())
      out.push(`${rel}/`, ...walk(join(dir, name), `${rel}/`));
    else out.push(rel);
  }
  return out;
}

async function expectFilesAndDatabaseAgree(sample: SampleInstance): Promise<number> {
  const prefix = String(sample.config.dbtableprefix);
  const rows = await sample.database.query(
    `SELECT s.id, f.path, f.mimetype, f.size, m.mimetype FROM ${prefix}filecache f ` +
      `JOIN ${prefix}storages s ON s.numeric_id = f.storage JOIN ${prefix}mimetypes m ON m.id = f.mimetype ` +
      `WHERE s.id LIKE 'home::%' AND f.path LIKE 'files/%'`,
  );
  expect(rows.length).toBeGreaterThan(20);
  const inDatabase = new Set<string>();
  for (const [storage, path, , size, mimetype] of rows) {
    const user = storage!.slice('home::'.length);
    const onDisk = join(sample.dataDir, user, path!);
    expect(existsSync(onDisk), `${onDisk} is in oc_filecache but not on disk`).toBe(true);
    const stat = statSync(onDisk);
    expect(stat.isDirectory(), onDisk).toBe(mimetype === 'httpd/unix-directory');
    if (stat.isFile()) expect(stat.size, onDisk).toBe(Number(size));
    inDatabase.add(`${user}/${path}${stat.isDirectory() ? '/' : ''}`);
  }
  // And the other way round: every file a user has is known to ownCloud.
  for (const user of sample.users)
    for (const rel of walk(join(sample.dataDir, user, 'files'), `${user}/files/`))
      expect(inDatabase.has(rel), `${rel} is on disk but not in oc_filecache`).toBe(true);
  return rows.length;
}

async function occ(sample: SampleInstance, ...args: string[]) {
  return execa(
    requireTool('setpriv'),
    [
      `--reuid=${sample.owner.uid}`,
      `--regid=${sample.owner.gid}`,
      '--clear-groups',
      requireTool('php'),
      'occ',
      ...args,
    ],
    { cwd: sample.installDir, reject: false },
  );
}

describe.each(['sqlite', 'mysql', 'pgsql'] as const)('sample ownCloud instance on %s', (type) => {
  let sample: SampleInstance;
  beforeAll(async () => {
    const database =
      type === 'sqlite'
        ? { type }
        : type === 'mysql'
          ? { type, server: mariadb }
          : { type, server: postgres };
    sample = await buildSampleInstance({ database, dbPassword: `pa ss'"$(id)\\:é` });
  });
  afterAll(() => sample?.remove());

  it('writes config.php in ownCloud format with every key a backup reads', () => {
    const text = readFileSync(sample.configPath, 'utf8');
    expect(text).toMatch(/^<\?php\n\$CONFIG = array \(\n {2}'instanceid' => 'oc[0-9a-f]{10}',\n/);
    const config = sample.readConfig();
    expect(config).toEqual(sample.config);
    for (const key of [
      'instanceid',
      'passwordsalt',
      'secret',
      'datadirectory',
      'dbtype',
      'dbhost',
      'dbname',
      'dbuser',
      'dbpassword',
      'dbtableprefix',
      'version',
      'installed',
      'theme',
      'maintenance',
    ])
      expect(config, key).toHaveProperty(key);
    expect(config.dbtype).toBe(type === 'sqlite' ? 'sqlite3' : type);
    expect(config.datadirectory).toBe(sample.dataDir);
    expect(statSync(sample.configPath).uid).toBe(sample.owner.uid);
  });

  it('has the data directory ownCloud expects, with the metadata a backup must keep', async () => {
    expect(readFileSync(join(sample.dataDir, '.ocdata'), 'utf8')).toBe('');
    expect(readFileSync(join(sample.dataDir, '.htaccess'), 'utf8')).toContain('Require all denied');
    expect(existsSync(join(sample.dataDir, 'owncloud.log'))).toBe(true);
    expect(existsSync(join(sample.dataDir, 'files_encryption', 'OC_DEFAULT_MODULE'))).toBe(true);
    expect(
      existsSync(
        join(sample.dataDir, 'alice', 'files_encryption', 'OC_DEFAULT_MODULE', 'alice.privateKey'),
      ),
    ).toBe(true);
    expect(readdirSync(join(sample.dataDir, 'alice', 'files', 'Empty folder'))).toEqual([]);
    expect(readdirSync(join(sample.dataDir, 'alice', 'files', 'Ünïcødé dir')).sort()).toEqual(
      [...HOSTILE_NAMES].sort(),
    );
    expect(
      readFileSync(
        join(sample.installDir, 'themes', 'mytheme', 'core', 'css', 'styles.css'),
        'utf8',
      ),
    ).toContain('#header');

    const acl = await execa(requireTool('getfacl'), [
      '--omit-header',
      join(sample.dataDir, sample.special.acl),
    ]);
    expect(acl.stdout).toContain('user:nobody:r--');
    const xattr = await execa(requireTool('getfattr'), [
      '-n',
      'user.owncloud.checksum',
      '--only-values',
      join(sample.dataDir, sample.special.xattr),
    ]);
    expect(xattr.stdout).toBe('sha1:sample');
    const [a, b] = sample.special.hardLinks.map((p) => statSync(join(sample.dataDir, p)));
    expect(a!.ino).toBe(b!.ino);
    const owned = statSync(join(sample.dataDir, 'alice', 'files', 'Photos', 'binary.jpg'));
    expect([owned.uid, owned.gid, owned.mode & 0o777]).toEqual([33, 33, 0o640]);
    if (type === 'sqlite') expect(statSync(join(sample.dataDir, 'owncloud.db')).uid).toBe(33);
  });

  it("has a database whose oc_filecache agrees with the users' files", async () => {
    await expectFilesAndDatabaseAgree(sample);
    const tables = await sample.database.tables();
    for (const table of [
      'oc_filecache',
      'oc_storages',
      'oc_users',
      'oc_appconfig',
      'oc_preferences',
      'oc_accounts',
      'oc_share',
    ])
      expect(tables).toContain(table);
    expect(await sample.database.tableRows('oc_users')).toHaveLength(3);
  });

  if (type !== 'sqlite')
    it("lets ownCloud's database user in with the password from config.php", async () => {
      const config = sample.readConfig();
      const [host, port] = String(config.dbhost).split(':');
      if (type === 'mysql') {
        const options = join(sample.root, 'client.cnf');
        writeMariaDbClientConfig(options, String(config.dbuser), String(config.dbpassword));
        const result = await execa(requireTool('mariadb'), [
          `--defaults-extra-file=${options}`,
          '-h',
          host!,
          '-P',
          port!,
          '-N',
          '-e',
          'SELECT COUNT(*) FROM oc_users',
          String(config.dbname),
        ]);
        expect(result.stdout).toBe('3');
      } else {
        const pgpass = join(sample.root, 'pgpass');
        writeFileSync(
          pgpass,
          pgpassLine(
            host!,
            Number(port),
            String(config.dbname),
            String(config.dbuser),
            String(config.dbpassword),
          ),
          { mode: 0o600 },
        );
        const result = await execa(
          requireTool('psql'),
          [
            '-w',
            '-X',
            '-A',
            '-t',
            '-h',
            host!,
            '-p',
            port!,
            '-U',
            String(config.dbuser),
            '-c',
            'SELECT COUNT(*) FROM oc_users',
            String(config.dbname),
          ],
          { env: { PGPASSFILE: pgpass } },
        );
        expect(result.stdout).toBe('3');
      }
    });
});

describe('the occ stand-in', () => {
  let sample: SampleInstance;
  beforeAll(async () => {
    sample = await buildSampleInstance({ database: { type: 'sqlite' } });
  });
  afterAll(() => sample?.remove());

  it('switches maintenance mode the way ownCloud does and records each call', async () => {
    expect((await occ(sample, 'maintenance:mode')).stdout).toBe(
      'Maintenance mode is currently disabled',
    );
    expect((await occ(sample, 'maintenance:mode', '--on')).stdout).toBe('Maintenance mode enabled');
    expect(sample.readConfig().maintenance).toBe(true);
    expect(readFileSync(sample.configPath, 'utf8')).toContain("'maintenance' => true,");
    expect(JSON.parse((await occ(sample, 'status', '--output=json')).stdout)).toMatchObject({
      installed: true,
      version: '10.15.0.2',
      versionstring: '10.15.0',
      maintenance: true,
    });
    expect((await occ(sample, 'maintenance:mode', '--off')).stdout).toBe(
      'Maintenance mode disabled',
    );
    expect(sample.readConfig()).toEqual(sample.config);
    expect((await occ(sample, 'config:system:get', 'dbtype')).stdout).toBe('sqlite3');
    expect((await occ(sample, 'config:system:get', 'no-such-key')).exitCode).toBe(1);

    const calls = sample.occCalls();
    expect(
      calls.map((c) => [c.user, c.args.join(' '), c.maintenanceBefore, c.maintenanceAfter]),
    ).toEqual([
      ['www-data', 'maintenance:mode', false, false],
      ['www-data', 'maintenance:mode --on', false, true],
      ['www-data', 'status --output=json', true, true],
      ['www-data', 'maintenance:mode --off', true, false],
      ['www-data', 'config:system:get dbtype', false, false],
      ['www-data', 'config:system:get no-such-key', false, false],
    ]);
    expect(calls[1]!.time).toBeLessThan(calls[3]!.time);
  });

  it('refuses a user who does not own config.php, as the real console does', async () => {
    const result = await execa(requireTool('php'), ['occ', 'maintenance:mode', '--on'], {
      cwd: sample.installDir,
      reject: false,
    });
    expect(result.exitCode).toBe(1);
    expect(result.stdout).toContain(
      'Console has to be executed with the user that owns the file config/config.php',
    );
    expect(result.stdout).toContain('Owner of config.php: www-data');
    expect(sample.readConfig().maintenance).toBe(false);
  });
});

describe('sample Nextcloud instance', () => {
  it('uses the fork’s marker, log and database names with the same layout', async () => {
    const sample = await buildSampleInstance({
      flavour: 'nextcloud',
      database: { type: 'sqlite' },
      dataDirOutside: true,
    });
    try {
      expect(existsSync(join(sample.dataDir, '.ncdata'))).toBe(true);
      expect(existsSync(join(sample.dataDir, '.ocdata'))).toBe(false);
      expect(existsSync(join(sample.dataDir, 'nextcloud.db'))).toBe(true);
      expect(existsSync(join(sample.dataDir, 'nextcloud.log'))).toBe(true);
      expect(sample.dataDir.startsWith(`${sample.installDir}/`)).toBe(false);
      expect(sample.readConfig()).toMatchObject({
        dbname: 'nextcloud',
        dbtype: 'sqlite3',
        datadirectory: sample.dataDir,
      });
      await expectFilesAndDatabaseAgree(sample);
    } finally {
      sample.remove();
    }
  });

  it('grows to a given number of files and bytes for benchmarks', async () => {
    const sample = await buildSampleInstance({
      database: { type: 'sqlite' },
      bulk: { files: 600, bytes: 6_000_000 },
    });
    try {
      const bulk = walk(join(sample.dataDir), '').filter((p) => p.endsWith('.bin'));
      expect(bulk).toHaveLength(600);
      const total = bulk.reduce((sum, p) => sum + statSync(join(sample.dataDir, p)).size, 0);
      expect(total).toBeGreaterThan(5_500_000);
      expect(total).toBeLessThan(6_500_000);
      expect(await expectFilesAndDatabaseAgree(sample)).toBeGreaterThan(600);
    } finally {
      sample.remove();
    }
  });
});

/** Every file cache row with encrypted <> 0, as the database holds it, sorted. */
async function encryptedRows(sample: SampleInstance): Promise<string[]> {
  const prefix = String(sample.config.dbtableprefix);
  const rows = await sample.database.query(
    `SELECT s.id, f.path, f.fileid, f.encrypted, f.size, f.unencrypted_size, m.mimetype FROM ${prefix}filecache f ` +
      `JOIN ${prefix}storages s ON s.numeric_id = f.storage JOIN ${prefix}mimetypes m ON m.id = f.mimetype ` +
      `WHERE f.encrypted <> 0`,
  );
  return rows.map((r) => r.join('|')).sort();
}

describe.each([
  ['sqlite', 'master-key'],
  ['mysql', 'per-user-key'],
  ['pgsql', 'master-key'],
  ['sqlite', 'per-user-key'],
] as const)('sample ownCloud instance on %s with server-side encryption (%s)', (type, mode) => {
  let sample: SampleInstance;
  beforeAll(async () => {
    const database =
      type === 'sqlite'
        ? { type }
        : type === 'mysql'
          ? { type, server: mariadb }
          : { type, server: postgres };
    // A database of its own on the servers the unencrypted samples use too.
    const name = `owncloud_${mode.replaceAll('-', '_')}`;
    sample = await buildSampleInstance({ database, encryption: mode, dbName: name, dbUser: name });
  });
  afterAll(() => sample?.remove());

  it("records encryption in appconfig as ownCloud's encryption app does", async () => {
    const rows = await sample.database.query(
      "SELECT appid, configkey, configvalue FROM oc_appconfig WHERE appid IN ('core', 'encryption') AND configkey <> 'installedat' AND configkey <> 'vendor'",
    );
    const { masterKeyId, publicShareKeyId } = sample.encryption!;
    expect(masterKeyId).toMatch(/^master_[0-9a-f]{8}$/);
    expect(publicShareKeyId).toMatch(/^pubShare_[0-9a-f]{8}$/);
    expect(Object.fromEntries(rows.map(([app, key, value]) => [`${app}/${key}`, value]))).toEqual({
      'core/encryption_enabled': 'yes',
      'core/default_encryption_module': 'OC_DEFAULT_MODULE',
      'encryption/enabled': 'yes',
      'encryption/useMasterKey': mode === 'master-key' ? '1' : '0',
      'encryption/masterKeyId': masterKeyId,
      'encryption/publicShareKeyId': publicShareKeyId,
      'encryption/recoveryKeyId': expect.stringMatching(/^recoveryKey_[0-9a-f]{8}$/),
    });
  });

  it('lays the key pairs out where ownCloud keeps them, for this mode only', () => {
    const { masterKeyId, publicShareKeyId, keyPairs } = sample.encryption!;
    const system = join(sample.dataDir, 'files_encryption', 'OC_DEFAULT_MODULE');
    const expected = [
      ...(mode === 'master-key' ? [`${masterKeyId}.privateKey`, `${masterKeyId}.publicKey`] : []),
      `${publicShareKeyId}.privateKey`,
      `${publicShareKeyId}.publicKey`,
    ].sort();
    expect(readdirSync(system).sort()).toEqual(expected);
    for (const user of sample.users) {
      const userKeys = join(sample.dataDir, user, 'files_encryption', 'OC_DEFAULT_MODULE');
      if (mode === 'per-user-key')
        expect(readdirSync(userKeys).sort()).toEqual([`${user}.privateKey`, `${user}.publicKey`]);
      else expect(existsSync(userKeys)).toBe(false);
    }
    expect(keyPairs.map((p) => p.id).sort()).toEqual(
      (mode === 'master-key'
        ? [masterKeyId, publicShareKeyId]
        : [...sample.users, publicShareKeyId]
      ).sort(),
    );
    for (const pair of keyPairs) {
      expect(readFileSync(join(sample.dataDir, pair.publicKey), 'utf8')).toMatch(
        /^-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=\n]+\n-----END PUBLIC KEY-----\n$/,
      );
      expect(readFileSync(join(sample.dataDir, pair.privateKey), 'latin1')).toMatch(
        /^HBEGIN:cipher:AES-256-CTR:keyFormat:hash:HEND/,
      );
    }
  });

  it('writes encrypted contents and file cache rows as ownCloud 10 keeps them', async () => {
    const { encryptedFiles, masterKeyId } = sample.encryption!;
    // Exactly the rows the sample reports, straight from the database.
    expect(await encryptedRows(sample)).toEqual(
      encryptedFiles
        .map((f) =>
          [f.storage, f.path, f.fileid, f.encrypted, f.size, f.unencrypted_size, f.mimetype].join(
            '|',
          ),
        )
        .sort(),
    );
    for (const user of sample.users) {
      const mine = encryptedFiles.filter((f) => f.storage === `home::${user}`);
      // Every file of the user's files/, versions and trash bin, and nothing else.
      const expected = walk(join(sample.dataDir, user), '')
        .filter((p) => !p.endsWith('/'))
        .filter((p) => /^files(_versions|_trashbin\/files)?\//.test(p))
        // The hard link beside a version is not one of ownCloud's files.
        .filter((p) => `${user}/${p}` !== sample.special.hardLinks[1]);
      expect(mine.map((f) => f.path).sort()).toEqual(expected.sort());
      const versioned = mine.filter((f) => f.encrypted > 1).map((f) => f.path);
      expect(versioned).toEqual(
        expect.arrayContaining([
          'files/Documents/Welcome.txt',
          `files/Ünïcødé dir/${HOSTILE_NAMES[2]}`,
          `files/Ünïcødé dir/${HOSTILE_NAMES[3]}`,
          'files_versions/Documents/Welcome.txt.v1764000000',
        ]),
      );
      for (const file of mine) {
        const onDisk = readFileSync(join(sample.dataDir, user, file.path));
        expect(onDisk.length, file.path).toBe(file.onDiskSize);
        expect(onDisk.length, file.path).toBeGreaterThan(file.size);
        expect(onDisk.subarray(0, 8192).toString('latin1')).toMatch(
          /^HBEGIN:oc_encryption_module:OC_DEFAULT_MODULE:cipher:AES-256-CTR:signed:true:HEND-+$/,
        );
        const keyDir = join(sample.dataDir, file.keyDir);
        const sealedFor =
          mode === 'master-key'
            ? [masterKeyId]
            : file.keyDir.startsWith('admin/files_encryption/keys/files/Documents/Welcome.txt/')
              ? ['admin', 'alice']
              : [user];
        expect(readdirSync(keyDir).sort(), file.path).toEqual(
          ['fileKey', ...sealedFor.map((id) => `${id}.shareKey`)].sort(),
        );
      }
    }
    // A version has no keys of its own: it uses its file's.
    const version = encryptedFiles.find(
      (f) => f.storage === 'home::alice' && f.path.startsWith('files_versions/'),
    )!;
    expect(version.keyDir).toBe(
      'alice/files_encryption/keys/files/Documents/Welcome.txt/OC_DEFAULT_MODULE',
    );
    const trashed = encryptedFiles.find(
      (f) => f.storage === 'home::alice' && f.path.startsWith('files_trashbin/'),
    )!;
    expect(trashed.keyDir).toBe(
      'alice/files_encryption/keys/files_trashbin/files/old.txt.d1764000000/OC_DEFAULT_MODULE',
    );
    // ownCloud 10 leaves unencrypted_size at 0; a row from ownCloud 8.0 has it filled.
    expect(encryptedFiles.filter((f) => f.unencrypted_size !== 0).map((f) => f.path)).toEqual(
      sample.users.map(() => 'files/Photos/.hidden-notes'),
    );
  });

  it('keeps directories and unencrypted files at encrypted = 0, sizes in plain text', async () => {
    const prefix = 'oc_';
    const rows = await sample.database.query(
      `SELECT f.path, f.encrypted, f.size, m.mimetype FROM ${prefix}filecache f JOIN ${prefix}mimetypes m ON m.id = f.mimetype JOIN ${prefix}storages s ON s.numeric_id = f.storage WHERE s.id = 'home::alice'`,
    );
    const byPath = new Map(
      rows.map(([path, encrypted, size, mimetype]) => [
        path!,
        { encrypted: Number(encrypted), size: Number(size), mimetype },
      ]),
    );
    for (const [path, row] of byPath)
      if (row.mimetype === 'httpd/unix-directory') expect(row.encrypted, path).toBe(0);
    expect(byPath.get('thumbnails/12/32-32.png')!.encrypted).toBe(0);
    // A folder's size is the sum of its children's plain-text sizes.
    const documents = [...byPath].filter(
      ([p]) =>
        p.startsWith('files/Documents/') && !p.slice('files/Documents/'.length).includes('/'),
    );
    expect(byPath.get('files/Documents')!.size).toBe(
      documents.reduce((sum, [, r]) => sum + r.size, 0),
    );
    expect(byPath.get('files/Documents/Welcome.txt')!.size).toBe(
      Buffer.byteLength('Welcome to ownCloud, alice!\n'),
    );
  });
});
