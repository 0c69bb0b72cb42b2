import { spawnSync } from 'node:child_process';
import { createReadStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { cliInputs, summary } from '../../src/cli/main.ts';
import { guardedCommand, mysqlOptionValue, secretLine } from '../../src/host/guarded.ts';
import { asUser } from '../../src/host/host.ts';
import { explainSshFailure } from '../../src/host/ssh.ts';
import { checksumsText, type Manifest } from '../../src/manifest.ts';
import { backupName, dumpFileName, filesArchiveName } from '../../src/naming.ts';
import { formatSeconds } from '../../src/report.ts';
import { Secrets } from '../../src/secrets.ts';
import { FileTally } from '../../src/steps/files.ts';
import { mergeListings, type ArchiveEntry } from '../../src/steps/archive-listing.ts';
import { TarScan, type TarMember } from '../../src/steps/tar-scan.ts';
import { parseMaintenanceState } from '../../src/steps/maintenance.ts';
import { formatBytes, requiredBytes } from '../../src/steps/preflight.ts';

const date = new Date('2026-11-26T09:05:07.123Z');

describe('names', () => {
  it('dates backups in UTC the way the documentation names dumps', () => {
    expect(backupName(date)).toBe('owncloud-backup-20261126-090507');
    expect(dumpFileName(date, 'zstd')).toBe('owncloud-dbbackup_20261126.bak.zst');
    expect(dumpFileName(date, 'gzip')).toBe('owncloud-dbbackup_20261126.bak.gz');
    expect(filesArchiveName(date, 'zstd')).toBe('owncloud-files_20261126.tar.zst');
  });
});

describe('Secrets', () => {
  it('masks each secret when it is added and redacts it (and the lines of a key) from text', () => {
    const masked: string[] = [];
    const secrets = new Secrets((v) => masked.push(v));
    secrets.add('s3cret pass');
    secrets.add('-----BEGIN KEY-----\nAAAABBBBCCCCDDDD\n-----END KEY-----\n');
    secrets.add('');
    secrets.add(undefined);
    expect(masked).toContain('s3cret pass');
    expect(masked).toContain('AAAABBBBCCCCDDDD');
    expect(secrets.redact('pw=s3cret pass; key line AAAABBBBCCCCDDDD')).toBe(
      'pw=***; key line ***',
    );
  });
});

describe('the guarded command wrapper', () => {
  it('takes the secret from stdin, not argv', () => {
    const argv = guardedCommand(['pg_dump', 'db'], 'pgpassword');
    expect(argv.slice(0, 2)).toEqual(['sh', '-c']);
    expect(argv.slice(3)).toEqual(['owncloud-backup', 'pgpassword', 'pg_dump', 'db']);
    expect(secretLine('pw')).toBe('pw\n');
    expect(() => secretLine('a\nb')).toThrow('line break');
    expect(mysqlOptionValue('a"b\\c')).toBe('"a\\"b\\\\c"');
  });
});

describe('asUser', () => {
  it('runs directly, through runuser (as root) or through sudo -n', () => {
    expect(asUser('www-data', 'www-data', ['php', 'occ'])).toEqual(['php', 'occ']);
    expect(asUser('root', 'www-data', ['php', 'occ'])).toEqual([
      'runuser',
      '-u',
      'www-data',
      '--',
      'php',
      'occ',
    ]);
    expect(asUser('deploy', 'www-data', ['php', 'occ'])).toEqual([
      'sudo',
      '-n',
      '-u',
      'www-data',
      '--',
      'php',
      'occ',
    ]);
  });
});

describe('the files of a base and a delta archive together', () => {
  const entry = (name: string, type: ArchiveEntry['type'] = 'file'): ArchiveEntry => ({
    name,
    type,
    size: 1,
    mtime: '2026-01-01 00:00:00',
    mode: 'rw-r--r--',
    uid: 33,
    gid: 33,
  });

  it('are the base, changed entries replaced, deleted ones (and what is below them) gone', () => {
    const base = [
      entry('data/alice/files', 'directory'),
      entry('data/alice/files/a.txt'),
      entry('data/alice/files/b.txt'),
      entry('data/alice/files/old', 'directory'),
      entry('data/alice/files/old/c.txt'),
    ];
    const changed = { ...entry('data/alice/files/a.txt'), size: 9 };
    const merged = mergeListings(
      base,
      [entry('data/alice/files', 'directory'), changed, entry('data/alice/files/new.txt')],
      new Map([['data/alice/files', new Set(['a.txt', 'new.txt'])]]),
    );
    expect(merged.map((e) => e.name)).toEqual([
      'data/alice/files',
      'data/alice/files/a.txt',
      'data/alice/files/new.txt',
    ]);
    expect(merged[1]!.size).toBe(9);
  });

  it('are counted from the headers of real tar passes: unchanged, changed, new and deleted files', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tally-unit-'));
    try {
      mkdirSync(join(dir, 'data', 'sub'), { recursive: true });
      writeFileSync(join(dir, 'data', 'keep'), 'k'.repeat(10));
      writeFileSync(join(dir, 'data', 'sub', 'change'), 'c'.repeat(20));
      writeFileSync(join(dir, 'data', 'sub', 'gone'), 'g'.repeat(40));
      const pass = async (name: string, onMember: (m: TarMember) => void) => {
        const tar = spawnSync('tar', [
          '--create',
          '--format=posix',
          `--listed-incremental=${join(dir, 'snap')}`,
          '-C',
          dir,
          '-f',
          join(dir, name),
          'data',
        ]);
        expect(tar.status, String(tar.stderr)).toBe(0);
        await pipeline(
          createReadStream(join(dir, name)),
          new TarScan(onMember),
          new Writable({ write: (_c, _e, done) => done() }),
        );
      };
      const tally = new FileTally([]);
      await pass('base.tar', (m) => tally.base(m));
      expect(tally.total(false)).toEqual({ files: 3, bytes: 70 });
      writeFileSync(join(dir, 'data', 'sub', 'change'), 'C'.repeat(25));
      writeFileSync(join(dir, 'data', 'new'), 'n'.repeat(5));
      rmSync(join(dir, 'data', 'sub', 'gone'));
      const deltaMembers: TarMember[] = [];
      await pass('delta.tar', (m) => {
        deltaMembers.push(m);
        tally.delta(m);
      });
      expect(
        deltaMembers
          .filter((m) => m.type === 'file')
          .map((m) => m.name)
          .sort(),
      ).toEqual(['data/new', 'data/sub/change']);
      expect(deltaMembers.find((m) => m.name === 'data/sub')?.dumpdir).toEqual([
        { flag: 'Y', name: 'change' },
      ]);
      // keep (10, unchanged) + change (25) + new (5); gone is gone.
      expect(tally.total(true)).toEqual({ files: 3, bytes: 40 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('two tar streams joined into one archive', () => {
  it("drop the first one's end marker and padding, however the stream is cut into chunks", () => {
    const dir = mkdtempSync(join(tmpdir(), 'join-unit-'));
    try {
      mkdirSync(join(dir, 'a'));
      mkdirSync(join(dir, 'b'));
      writeFileSync(join(dir, 'a', 'one'), 'x'.repeat(700));
      writeFileSync(join(dir, 'b', 'two'), 'y'.repeat(1500));
      const archive = (name: string) =>
        spawnSync('tar', ['--create', '--format=posix', '-C', dir, '-f', '-', name]).stdout;
      const first = archive('a');
      const second = archive('b');
      for (const size of [1, 7, 511, 512, 513, 1000, 10240, first.length]) {
        const out: Buffer[] = [];
        const feed = (scan: TarScan, bytes: Buffer) => {
          scan.on('data', (c: Buffer) => out.push(c));
          for (let at = 0; at < bytes.length; at += size) scan.write(bytes.subarray(at, at + size));
          scan.end();
        };
        const names: string[] = [];
        feed(new TarScan((m) => names.push(m.name), undefined, { keepEnd: false }), first);
        feed(new TarScan((m) => names.push(m.name)), second);
        expect(names).toEqual(['a', 'a/one', 'b', 'b/two']);
        const listed = spawnSync('tar', ['--list', '-f', '-'], { input: Buffer.concat(out) });
        expect(listed.status, String(listed.stderr)).toBe(0);
        expect(String(listed.stdout).trim().split('\n')).toEqual(['a/', 'a/one', 'b/', 'b/two']);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('small parsers and formats', () => {
  it('reads occ maintenance:mode', () => {
    expect(parseMaintenanceState('Maintenance mode is currently enabled\n')).toBe(true);
    expect(parseMaintenanceState('Maintenance mode is currently disabled\n')).toBe(false);
    expect(
      parseMaintenanceState(
        'Console has to be executed with the user that owns the file config/config.php',
      ),
    ).toBeUndefined();
  });

  it('explains ssh failures an administrator can act on', () => {
    expect(
      explainSshFailure('@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@', 'root@h:22'),
    ).toMatch(/does not match known-hosts/);
    expect(explainSshFailure('Host key verification failed.', 'root@h:22')).toMatch(
      /not in known-hosts/,
    );
    expect(explainSshFailure('root@h: Permission denied (publickey).', 'root@h:22')).toMatch(
      /refused the SSH key/,
    );
    expect(explainSshFailure('Timeout, server h not responding.', 'root@h:22')).toMatch(
      /timed out/,
    );
    expect(explainSshFailure('something else', 'root@h:22')).toBeUndefined();
  });

  it('writes sha256sum-compatible checksums', () => {
    expect(
      checksumsText([
        { name: 'a.tar.zst', role: 'files', compression: 'zstd', size: 1, sha256: 'ab' },
      ]),
    ).toBe('ab  a.tar.zst\n');
  });

  it('formats sizes, durations and the space a backup needs', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(1024 ** 3)).toBe('1.0 GiB');
    expect(formatSeconds(2.34)).toBe('2.3 s');
    expect(formatSeconds(245)).toBe('4 min 05 s');
    expect(requiredBytes(1000)).toBeGreaterThan(1000);
  });
});

describe('the command line', () => {
  it('maps options to the action input names, secrets from the environment', () => {
    const { raw } = cliInputs(
      [
        'backup',
        '--host',
        'h',
        '--exclude',
        'a',
        '--exclude',
        'b',
        '--known-hosts',
        'x',
        '--backup-dir',
        '/b',
      ],
      { OWNCLOUD_BACKUP_DB_PASSWORD: 'pw', OWNCLOUD_BACKUP_SSH_KEY: 'key' },
    );
    expect(raw).toEqual({
      host: 'h',
      exclude: 'a\nb',
      'known-hosts': 'x',
      'backup-dir': '/b',
      'db-password': 'pw',
      'ssh-key': 'key',
    });
  });

  it.each([
    [['backup', '--db-password', 'x'], 'Refusing --db-password'],
    [['backup', '--ssh-key', 'x'], 'Refusing --ssh-key'],
    [['frobnicate'], "Expected the command 'backup', 'restore', 'list' or 'verify'"],
    [['restore'], 'Expected: owncloud-backup restore BACKUP-DIR'],
    [['backup', '--no-such-option'], "Unknown option '--no-such-option'"],
    [['backup', '--ssh-keepalive', '0'], 'Invalid option --ssh-keepalive'],
    [
      ['backup', '--db-password-file', '/nonexistent'],
      "Cannot read --db-password-file '/nonexistent': ENOENT.",
    ],
  ])('refuses %j', (args, message) => {
    expect(() => cliInputs(args, {})).toThrow(message);
  });

  it('summarises a finished backup in readable lines', () => {
    const manifest = {
      instance: { product: 'owncloud', version: '10.15.0.2', instanceId: 'oc1', theme: '' },
      source: { host: 'root@h:22' },
      database: {
        type: 'mysql',
        name: 'owncloud',
        dumpTool: 'mysqldump',
        dumpToolVersion: 'Ver 10.19',
      },
      archives: [{ name: 'owncloud-files_20261126.tar.zst', size: 2048, sha256: 'f'.repeat(64) }],
      files: {
        fileCount: 3,
        bytes: 10,
        layout: { owncloud: '/var/www/owncloud', data: '/srv/data' },
      },
      maintenance: { managed: true, switchedByUs: true, seconds: 1.5 },
      durationSeconds: 9,
    } as unknown as Manifest;
    const text = summary({
      directory: '/b/x',
      manifest,
      manifestPath: '',
      dumpPath: '',
      filesArchivePath: '',
      sizeBytes: 0,
    });
    expect(text).toContain('Backup complete: /b/x');
    expect(text).toContain('owncloud-files_20261126.tar.zst     2.0 KiB  sha256 ffff');
    expect(text).toContain('maintenance mode: on for 1.5 s, then off again');
  });
});
