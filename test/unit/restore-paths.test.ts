// The pure parts of a restore of single paths: the paths users give, the plan, reading tar's
// listing, choosing the archive members, copy names' dates, and the file cache SQL.
import { describe, expect, it } from 'vitest';
import { mysql as mysqlEngine } from '../../src/database/mysql.ts';
import { pgsql as pgsqlEngine } from '../../src/database/pgsql.ts';
import { sqlite as sqliteEngine } from '../../src/database/sqlite.ts';
import { cacheRowsFor, copySuffix, encryptionOf, selectMembers } from '../../src/restore-paths.ts';
import { planPathRestore, userPath } from '../../src/settings.ts';
import {
  isAtOrBelow,
  parseListingLine,
  unquoteC,
  type ArchiveEntry,
} from '../../src/steps/archive-listing.ts';
import { cacheValuesSql, pathHash } from '../../src/steps/file-cache.ts';

describe('userPath', () => {
  it('reads USER/AREA/PATH, without leading or trailing slashes', () => {
    expect(userPath('alice/files/Documents/a b.txt')).toEqual({
      user: 'alice',
      area: 'files',
      path: 'files/Documents/a b.txt',
    });
    expect(userPath('/bob/files_trashbin/files/x.d1/')).toEqual({
      user: 'bob',
      area: 'files_trashbin',
      path: 'files_trashbin/files/x.d1',
    });
    expect(userPath("o'brien/files")).toEqual({ user: "o'brien", area: 'files', path: 'files' });
  });
  it('refuses what is not a path in a user’s files', () => {
    for (const bad of [
      'alice',
      'alice/cache/x',
      'alice/files/../../etc',
      'alice//files',
      './files/x',
    ])
      expect(typeof userPath(bad), bad).toBe('string');
    expect(userPath('alice/files/a\nb')).toMatch(/line break/);
  });
});

describe('planPathRestore', () => {
  const plan = (raw: Record<string, string>) => planPathRestore(raw, '/backups/b');
  it('takes several paths and a conflict rule', () => {
    const p = plan({ path: 'alice/files/A\nbob/files/B.txt', overwrite: 'true' });
    expect(p.paths.map((x) => `${x.user}:${x.path}`)).toEqual(['alice:files/A', 'bob:files/B.txt']);
    expect(p.conflicts).toBe('overwrite');
    expect(p.owncloudDir).toBe('');
    expect(plan({ path: 'alice/files/A', 'as-copy': 'true' }).conflicts).toBe('as-copy');
    expect(plan({ path: 'alice/files/A' }).conflicts).toBe('keep-newer');
  });
  it('refuses contradictions, nested paths and whole-restore inputs, naming the input', () => {
    expect(() => plan({ path: 'alice/files/A\nalice/files/A/b' })).toThrow(
      /Invalid input 'path': 'alice\/files\/A\/b' is inside 'alice\/files\/A'/,
    );
    expect(() => plan({ path: 'alice/files/A', 'as-copy': 'true', overwrite: 'true' })).toThrow(
      /Invalid input 'overwrite': it contradicts input 'as-copy'/,
    );
    expect(() => plan({ path: 'alice/files', 'as-copy': 'true' })).toThrow(/whole files\//);
    expect(() => plan({ path: 'alice/files/A', 'db-admin-user': 'root' })).toThrow(
      /Invalid input 'db-admin-user': it applies to a restore of the whole instance/,
    );
    expect(() => plan({ path: '' })).toThrow(/Invalid input 'path': no path given/);
  });
});

describe("tar's listing", () => {
  it('undoes C quoting, octal UTF-8 bytes included', () => {
    expect(unquoteC(String.raw`d/\303\234n\303\257 \"q\" \\b\ttab\nline`)).toBe(
      'd/Ünï "q" \\b\ttab\nline',
    );
  });
  it('reads files, directories, symlinks and hard links', () => {
    expect(
      parseListingLine(
        '-rw-r--r-- 33/33              27 2026-12-01 23:13:41 "data/alice/files/a b.txt"',
      ),
    ).toEqual({
      name: 'data/alice/files/a b.txt',
      type: 'file',
      size: 27,
      mtime: '2026-12-01 23:13:41',
      mode: 'rw-r--r--',
      uid: 33,
      gid: 33,
    });
    expect(
      parseListingLine('drwxr-x--- 33/33 0 2026-12-01 23:13:41 "data/alice/files/"')?.name,
    ).toBe('data/alice/files');
    expect(
      parseListingLine(String.raw`lrwxrwxrwx 0/0 0 2026-12-01 23:13:41 "d/sl" -> "t \"x\""`),
    ).toMatchObject({ type: 'symlink', linkTarget: 't "x"' });
    expect(
      parseListingLine(
        String.raw`hrw-r--r-- 0/0 0 2026-12-01 23:13:41 "d/\303\234" link to "d/hl"`,
      ),
    ).toMatchObject({ type: 'hardlink', name: 'd/Ü', linkTarget: 'd/hl', size: 0 });
    expect(parseListingLine('tar: something else')).toBeUndefined();
  });
  it('isAtOrBelow does not take a sibling with a longer name', () => {
    expect(isAtOrBelow('data/a/files/Docs', 'data/a/files/Docs')).toBe(true);
    expect(isAtOrBelow('data/a/files/Docs/x', 'data/a/files/Docs')).toBe(true);
    expect(isAtOrBelow('data/a/files/Docs2', 'data/a/files/Docs')).toBe(false);
  });
});

const entry = (name: string, extra: Partial<ArchiveEntry> = {}): ArchiveEntry => ({
  name,
  type: 'file',
  size: 1,
  mtime: '2026-11-30 00:00:00',
  mode: 'rw-r-----',
  uid: 33,
  gid: 33,
  ...extra,
});

describe('selectMembers', () => {
  const paths = [{ user: 'alice', area: 'files' as const, path: 'files/Docs' }];
  it('takes the path, the first copy of a hard link outside it, and (encrypted) its keys', () => {
    const entries = [
      entry('data/alice/files/Docs', { type: 'directory' }),
      entry('data/alice/files_versions/a.v1'),
      entry('data/alice/files/Docs/a', {
        type: 'hardlink',
        linkTarget: 'data/alice/files_versions/a.v1',
      }),
      entry('data/alice/files/Docs2/b'),
      entry('data/alice/files_encryption/keys/files/Docs', { type: 'directory' }),
      entry('data/alice/files_encryption/OC_DEFAULT_MODULE/alice.publicKey'),
      entry('data/files_encryption/OC_DEFAULT_MODULE/master_1.publicKey'),
    ];
    expect(selectMembers(entries, paths, undefined).members.sort()).toEqual([
      'data/alice/files/Docs',
      'data/alice/files_versions/a.v1',
    ]);
    expect(
      selectMembers(entries, paths, {
        module: 'OC_DEFAULT_MODULE',
        keyPairs: 'user',
      }).members.sort(),
    ).toEqual([
      'data/alice/files/Docs',
      'data/alice/files_encryption/OC_DEFAULT_MODULE/alice.publicKey',
      'data/alice/files_encryption/keys/files/Docs',
      'data/alice/files_versions/a.v1',
    ]);
    expect(
      selectMembers(entries, paths, {
        module: 'OC_DEFAULT_MODULE',
        keyPairs: 'master',
      }).members.sort(),
    ).toContain('data/files_encryption/OC_DEFAULT_MODULE/master_1.publicKey');
  });
  it('refuses a path the backup does not hold', () => {
    expect(() => selectMembers([entry('data/alice/files/Docs2')], paths, undefined)).toThrow(
      /The backup holds no 'alice\/files\/Docs'.*Nothing was changed/,
    );
  });
});

describe('copies and cache values', () => {
  it("a copy's name carries the backup's date", () => {
    expect(copySuffix({ startedAt: '2026-11-30T02:00:00.000Z' })).toBe(' (restored 2026-11-30)');
  });
  it('each placed file gets the values recorded for the file it was, under its new path', () => {
    const index = [
      { storage: 'home::alice', path: 'files/a.txt', encrypted: 3, size: 10, unencryptedSize: 10 },
      { storage: 'home::bob', path: 'files/a.txt', encrypted: 1, size: 5, unencryptedSize: 5 },
    ];
    expect(
      cacheRowsFor(
        [
          {
            user: 'alice',
            from: 'files/a.txt',
            to: 'files/a (restored 2026-11-30).txt',
            keys: true,
          },
          { user: 'alice', from: 'files/not-encrypted', to: 'files/not-encrypted', keys: false },
        ],
        index,
      ),
    ).toEqual([
      {
        storage: 'home::alice',
        path: 'files/a (restored 2026-11-30).txt',
        encrypted: 3,
        size: 10,
        unencryptedSize: 10,
      },
    ]);
  });
  it('the SQL carries names only as hex and md5, in one transaction, per engine', () => {
    const rows = [
      {
        storage: "home::o'brien",
        path: "files/x'; DROP TABLE t; --",
        encrypted: 2,
        size: 9,
        unencryptedSize: 9,
      },
    ];
    for (const engine of [sqliteEngine, mysqlEngine, pgsqlEngine]) {
      const sql = cacheValuesSql(engine, 'oc_', rows);
      expect(sql).not.toContain("o'brien");
      expect(sql).not.toContain('DROP');
      expect(sql).toContain(pathHash(rows[0]!.path));
      expect(sql.startsWith('BEGIN;\n')).toBe(true);
      expect(sql).toContain('COMMIT;');
      expect(sql).toMatch(/SELECT 'r0' FROM/);
    }
    expect(() => cacheValuesSql(sqliteEngine, 'oc_', [{ ...rows[0]!, size: -1 }])).toThrow(
      /invalid size/,
    );
  });
});

describe('encryptionOf', () => {
  const paths = [{ user: 'alice', area: 'files' as const, path: 'files/Docs' }];
  const keys = [entry('data/alice/files_encryption/keys/files/Docs/a/OC_DEFAULT_MODULE/fileKey')];
  it('follows the manifest: the mode decides which key pairs are compared', () => {
    expect(
      encryptionOf({ encryption: { enabled: true, module: 'M', mode: 'master-key' } }, [], paths),
    ).toEqual({ module: 'M', keyPairs: 'master' });
    expect(
      encryptionOf({ encryption: { enabled: true, mode: 'per-user-key' } }, [], paths),
    ).toEqual({ module: 'OC_DEFAULT_MODULE', keyPairs: 'user' });
    expect(encryptionOf({ encryption: { enabled: false } }, keys, paths)).toBeUndefined();
  });
  it('for a backup without the record, brings keys along when the archive holds them', () => {
    expect(encryptionOf({}, keys, paths)).toEqual({ module: 'OC_DEFAULT_MODULE' });
    expect(encryptionOf({}, [entry('data/alice/files/Docs/a')], paths)).toBeUndefined();
  });
});
