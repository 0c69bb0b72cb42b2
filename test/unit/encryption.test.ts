// Server-side encryption in a backup: how each engine's two queries are built (secret never
// in argv, table names quoted, streamed), how their output is read back exactly, and what
// verify accepts as a line of the index.
import { describe, expect, it } from 'vitest';
import {
  parseEncryptedFileLine,
  parseEncryptionSettings,
  type EncryptedFileEntry,
} from '../../src/database/engine.ts';
import { engineFor } from '../../src/database/index.ts';
import { describeEncryption } from '../../src/manifest.ts';
import { encryptionIndexName } from '../../src/naming.ts';
import { indexLineProblem, manifestProblem } from '../../src/verify.ts';
import type { DatabaseConnection } from '../../src/instance.ts';
import type { DatabaseType } from '../../src/settings.ts';

const PASSWORD = `p'w "x" $(id) \\ é`;
const hex = (text: string) => Buffer.from(text, 'utf8').toString('hex');

function connection(type: DatabaseType, tablePrefix = 'oc_'): DatabaseConnection {
  return {
    type,
    name: 'owncloud',
    user: 'oc',
    password: PASSWORD,
    tablePrefix,
    utf8mb4: true,
    ...(type === 'sqlite' ? { file: '/srv/data/owncloud.db' } : { host: '127.0.0.1' }),
  };
}

const setting = (app: string, key: string, value: string | null) =>
  `${hex(app)}\t${hex(key)}\t${value === null ? '' : hex(value)}\n`;

describe('the encryption settings are read from the app config lines', () => {
  it('master-key mode: enabled, module and the master key id', () => {
    const stdout =
      setting('core', 'encryption_enabled', 'yes') +
      setting('core', 'default_encryption_module', 'OC_DEFAULT_MODULE') +
      setting('encryption', 'useMasterKey', '1') +
      setting('encryption', 'masterKeyId', 'master_1a2b3c4d');
    expect(parseEncryptionSettings(stdout)).toEqual({
      enabled: true,
      module: 'OC_DEFAULT_MODULE',
      mode: 'master-key',
      masterKeyId: 'master_1a2b3c4d',
    });
  });

  it('per-user-key mode when useMasterKey is not 1: no master key id, though one is set', () => {
    for (const useMasterKey of ['0', '', null])
      expect(
        parseEncryptionSettings(
          setting('core', 'encryption_enabled', 'yes') +
            (useMasterKey === null ? '' : setting('encryption', 'useMasterKey', useMasterKey)) +
            setting('encryption', 'masterKeyId', 'master_1a2b3c4d'),
        ),
      ).toEqual({ enabled: true, mode: 'per-user-key' });
  });

  it("off unless core/encryption_enabled is exactly 'yes' (what ownCloud checks)", () => {
    for (const value of ['no', 'YES', '1', '', null])
      expect(
        parseEncryptionSettings(
          (value === null ? '' : setting('core', 'encryption_enabled', value)) +
            setting('encryption', 'useMasterKey', '1'),
        ),
      ).toEqual({ enabled: false });
    expect(parseEncryptionSettings('')).toEqual({ enabled: false });
  });

  it('values with tabs, line breaks and backslashes survive; CRLF and blank lines are fine', () => {
    const odd = 'OC\tMOD\nULE\\x';
    expect(
      parseEncryptionSettings(
        `${setting('core', 'encryption_enabled', 'yes')}\r\n\n${setting('core', 'default_encryption_module', odd).toUpperCase()}`,
      ),
    ).toMatchObject({ module: odd });
  });

  it.each([
    ['a client message', 'ERROR 1146 (42S02): Table does not exist'],
    ['two fields', `${hex('core')}\t${hex('x')}`],
    ['plain text', 'core\tencryption_enabled\tyes'],
  ])('refuses %s', (_, line) => {
    expect(() => parseEncryptionSettings(line)).toThrow(
      /Unexpected line in the encryption settings/,
    );
  });
});

function fileLine(e: {
  storage: string;
  path: string;
  fileid: number | string;
  encrypted: number | string;
  size: number | string;
  unencrypted: number | string;
  mimetype: string;
}): string {
  return [
    hex(e.storage),
    hex(e.path),
    e.fileid,
    e.encrypted,
    e.size,
    e.unencrypted,
    hex(e.mimetype),
  ].join('\t');
}

describe('an encrypted file line is read back exactly', () => {
  const base = {
    storage: 'home::alice',
    path: 'files/Documents/Welcome.txt',
    fileid: 12,
    encrypted: 3,
    size: 31,
    unencrypted: 0,
    mimetype: 'text/plain',
  };

  it('every field, in the index order', () => {
    expect(parseEncryptedFileLine(fileLine(base))).toEqual({
      storage: 'home::alice',
      path: 'files/Documents/Welcome.txt',
      fileid: 12,
      encrypted: 3,
      size: 31,
      unencrypted_size: 0,
      mimetype: 'text/plain',
    } satisfies EncryptedFileEntry);
  });

  it('paths with tabs, line breaks, quotes, backslashes and non-Latin letters', () => {
    for (const path of [
      'files/tab\there.txt',
      'files/line\nbreak.txt',
      `files/quote ' and " both.txt`,
      'files/back\\slash.txt',
      'files/Ünïcødé 日本語.txt',
      'files/$(touch pwned).txt',
    ])
      expect(parseEncryptedFileLine(fileLine({ ...base, path }))!.path).toBe(path);
  });

  it('NULL sizes and mimetype (empty fields), -1 for an unknown size, big numbers', () => {
    expect(
      parseEncryptedFileLine(`${hex('home::a')}\t${hex('files/x')}\t9007199254740991\t1\t\t\t`),
    ).toMatchObject({
      fileid: 9007199254740991,
      size: null,
      unencrypted_size: null,
      mimetype: null,
    });
    expect(parseEncryptedFileLine(fileLine({ ...base, size: -1 }))!.size).toBe(-1);
  });

  it('bytes that are not UTF-8: kept exactly in pathHex/storageHex', () => {
    const line = `${hex('home::a')}\t66696c65732fff2e747874\t1\t1\t1\t0\t`;
    expect(parseEncryptedFileLine(line)).toMatchObject({ pathHex: '66696c65732fff2e747874' });
    expect(parseEncryptedFileLine(line)).not.toHaveProperty('storageHex');
    expect(parseEncryptedFileLine(fileLine(base))).not.toHaveProperty('pathHex');
  });

  it('a blank line (or CR only) is no entry', () => {
    expect(parseEncryptedFileLine('')).toBeUndefined();
    expect(parseEncryptedFileLine('\r')).toBeUndefined();
  });

  it.each([
    ['six fields', fileLine(base).split('\t').slice(0, 6).join('\t')],
    ['eight fields', `${fileLine(base)}\tx`],
    ['a path that is not hex', fileLine(base).replace(hex(base.path), base.path)],
    ['a fileid that is not a number', fileLine({ ...base, fileid: 'x' })],
    ['an encrypted flag that is empty', fileLine({ ...base, encrypted: '' })],
    ['a size with a fraction', fileLine({ ...base, size: '12.0' })],
    ['a number beyond 2^53', fileLine({ ...base, size: '9007199254740993' })],
    ['a client message', 'ERROR:  relation "oc_filecache" does not exist'],
  ])('refuses %s', (_, line) => {
    expect(() => parseEncryptedFileLine(line)).toThrow(/Unexpected line|not a whole number/);
  });
});

describe.each(['sqlite', 'mysql', 'pgsql'] as const)('the %s encryption queries', (type) => {
  const context = (tablePrefix = 'oc_') => ({
    connection: connection(type, tablePrefix),
    tool: {
      program: type === 'sqlite' ? 'sqlite3' : type === 'mysql' ? 'mysqldump' : 'pg_dump',
      version: 'x',
    },
    account: 'root',
    owner: 'www-data',
  });
  const engine = engineFor(type);

  it('keep the password out of argv and pass it the way the dump does', () => {
    for (const command of [
      engine.encryptionStateCommand(context()),
      engine.encryptedFilesCommand(context()),
    ]) {
      expect(command.argv.join(' ')).not.toContain(PASSWORD);
      const dump = engine.dumpCommand(context());
      expect(command.delivery).toBe(dump.delivery);
      expect(command.secret).toBe(dump.secret);
    }
  });

  it('name the prefixed tables, quoted, whatever the prefix holds', () => {
    const prefix = `o"c\`_`;
    const sql = engine.encryptedFilesCommand(context(prefix)).argv.join(' ');
    const quoted = (name: string) =>
      type === 'mysql'
        ? `\`${(prefix + name).replaceAll('`', '``')}\``
        : `"${(prefix + name).replaceAll('"', '""')}"`;
    for (const table of ['filecache', 'storages', 'mimetypes'])
      expect(sql).toContain(quoted(table));
    expect(engine.encryptionStateCommand(context(prefix)).argv.join(' ')).toContain(
      quoted('appconfig'),
    );
    expect(sql).toContain('encrypted <> 0');
  });

  it('stream the rows instead of holding the whole result in the client', () => {
    const argv = engine.encryptedFilesCommand(context()).argv;
    if (type === 'mysql') expect(argv).toContain('--quick');
    if (type === 'pgsql') expect(argv).toContain('--set=FETCH_COUNT=10000');
    if (type === 'sqlite') expect(argv).toContain('-readonly');
  });
});

describe('the index in the manifest, the log and verify', () => {
  it('is named after the day, with the compression suffix', () => {
    const day = new Date('2026-11-26T09:59:00Z');
    expect(encryptionIndexName(day, 'zstd')).toBe('owncloud-encryption-index_20261126.jsonl.zst');
    expect(encryptionIndexName(day, 'gzip')).toBe('owncloud-encryption-index_20261126.jsonl.gz');
  });

  it('is described in one line', () => {
    expect(
      describeEncryption({
        enabled: true,
        module: 'OC_DEFAULT_MODULE',
        mode: 'master-key',
        masterKeyId: 'master_1a2b3c4d',
        index: { name: 'x', files: 123 },
      }),
    ).toBe('on (master key master_1a2b3c4d, OC_DEFAULT_MODULE); index of 123 encrypted files');
    expect(
      describeEncryption({ enabled: true, mode: 'per-user-key', index: { name: 'x', files: 1 } }),
    ).toBe('on (a key pair per user); index of 1 encrypted file');
    expect(describeEncryption({ enabled: false })).toBe('off');
  });

  it('verify accepts an entry and names what is wrong with a line', () => {
    const entry = {
      storage: 'home::a',
      path: 'files/x',
      fileid: 1,
      encrypted: 2,
      size: 3,
      unencrypted_size: null,
      mimetype: 'text/plain',
    };
    expect(indexLineProblem(JSON.stringify(entry))).toBeUndefined();
    expect(indexLineProblem('{"storage":')).toBe('it is not JSON');
    expect(indexLineProblem('[1]')).toBe('it is not a JSON object');
    expect(indexLineProblem(JSON.stringify({ ...entry, path: 3 }))).toBe(
      'its path is not a string',
    );
    expect(indexLineProblem(JSON.stringify({ ...entry, fileid: '1' }))).toBe(
      'its fileid is not a whole number',
    );
    expect(indexLineProblem(JSON.stringify({ ...entry, size: 1.5 }))).toBe(
      'its size is not a whole number or null',
    );
    expect(indexLineProblem(JSON.stringify({ ...entry, encrypted: 0 }))).toBe(
      'its encrypted is 0 (the index lists encrypted files only)',
    );
  });

  it('a manifest must list the index archive exactly when it records an index', () => {
    const archive = (name: string, role: string) => ({
      name,
      role,
      compression: 'zstd',
      size: 1,
      sha256: 'a'.repeat(64),
    });
    const manifest = (encryption: unknown, extra: unknown[]) => ({
      archives: [archive('f', 'files'), archive('d', 'database'), ...extra],
      database: { type: 'sqlite', dumpBytes: 1, dumpTool: 'sqlite3' },
      ...(encryption === undefined ? {} : { encryption }),
    });
    const index = archive('i', 'encryption-index');
    expect(manifestProblem(manifest(undefined, []))).toBeUndefined();
    expect(manifestProblem(manifest({ enabled: false }, []))).toBeUndefined();
    expect(
      manifestProblem(manifest({ enabled: true, index: { name: 'i', files: 2 } }, [index])),
    ).toBeUndefined();
    expect(manifestProblem(manifest({ enabled: true, index: { name: 'i', files: 2 } }, []))).toBe(
      'encryption.index is recorded, but no encryption-index archive is listed',
    );
    expect(manifestProblem(manifest({ enabled: true }, [index]))).toBe(
      'an encryption-index archive is listed, but encryption.index is not recorded',
    );
    expect(
      manifestProblem(manifest({ enabled: true, index: { name: 'i', files: 2 } }, [index, index])),
    ).toBe('it lists 2 encryption-index archives, not one at most');
    expect(manifestProblem(manifest(undefined, [archive('x', 'keys')]))).toBe(
      "archives[2].role is not 'files', 'files-delta', 'database' or 'encryption-index'",
    );
  });
});
