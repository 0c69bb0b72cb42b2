import { describe, expect, it } from 'vitest';
import { cliInputs, summary } from '../../src/cli/main.ts';
import { guardedCommand, mysqlOptionValue, secretLine } from '../../src/host/guarded.ts';
import { asUser } from '../../src/host/host.ts';
import { explainSshFailure } from '../../src/host/ssh.ts';
import { checksumsText, type Manifest } from '../../src/manifest.ts';
import { backupName, dumpFileName, filesArchiveName } from '../../src/naming.ts';
import { formatSeconds } from '../../src/report.ts';
import { Secrets } from '../../src/secrets.ts';
import { parseRsyncStats, rsyncCommands, type FileSet } from '../../src/steps/files.ts';
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

describe('rsync', () => {
  const fileSet: FileSet = {
    installDir: '/var/www/owncloud',
    installPaths: ['config', 'themes/mytheme'],
    dataDir: '/srv/data',
    absolutePaths: ['/etc/apache2/sites-available/owncloud.conf'],
    exclude: ['*/thumbnails/'],
    dataExclude: ['owncloud.db', 'owncloud.db-journal'],
    install: { type: 'package', reason: 'install-type: package' },
    appDirs: [],
    included: [],
  };
  const remote = (path: string) => ({ args: ['-e', 'ssh -p 22'], source: `h:${path}` });

  it('copies config and theme with their place kept, the data dir as data/, extra paths under extra/', () => {
    expect(
      rsyncCommands(fileSet, '/stage', remote, {
        delete: false,
        parts: ['install', 'data', 'absolute'],
      }),
    ).toEqual([
      [
        'rsync',
        '-aHAXx',
        '--numeric-ids',
        '-s',
        '--stats',
        '--info=progress2',
        '--exclude=*/thumbnails/',
        '--relative',
        '-e',
        'ssh -p 22',
        '--',
        'h:/var/www/owncloud/./config',
        'h:/var/www/owncloud/./themes/mytheme',
        '/stage/owncloud/',
      ],
      [
        'rsync',
        '-aHAXx',
        '--numeric-ids',
        '-s',
        '--stats',
        '--info=progress2',
        '--exclude=*/thumbnails/',
        '--exclude=/owncloud.db',
        '--exclude=/owncloud.db-journal',
        '-e',
        'ssh -p 22',
        '--',
        'h:/srv/data/',
        '/stage/data/',
      ],
      [
        'rsync',
        '-aHAXx',
        '--numeric-ids',
        '-s',
        '--stats',
        '--info=progress2',
        '--exclude=*/thumbnails/',
        '--relative',
        '-e',
        'ssh -p 22',
        '--',
        'h:/./etc/apache2/sites-available/owncloud.conf',
        '/stage/extra/',
      ],
    ]);
  });

  it('copies the whole installation for a tarball install, without the data dir inside it, deleting in the delta pass', () => {
    const commands = rsyncCommands(
      { ...fileSet, installPaths: ['.'], dataDirInsideInstall: 'data', absolutePaths: [] },
      '/stage',
      (p) => ({ args: [], source: p }),
      { delete: true, parts: ['install'] },
    );
    expect(commands).toEqual([
      [
        'rsync',
        '-aHAXx',
        '--numeric-ids',
        '-s',
        '--stats',
        '--info=progress2',
        '--delete',
        '--exclude=*/thumbnails/',
        '--exclude=/data/',
        '--',
        '/var/www/owncloud/',
        '/stage/owncloud/',
      ],
    ]);
  });

  it('reads its --stats', () => {
    const stats = parseRsyncStats(
      'Number of files: 20,537 (reg: 20,100, dir: 437)\nNumber of created files: 3\nTotal file size: 1,073,741,824 bytes\nTotal transferred file size: 5,000 bytes\n',
    );
    expect(stats).toEqual({ files: 20100, bytes: 1073741824, transferredBytes: 5000 });
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
    expect(requiredBytes(1000)).toBeGreaterThan(2000);
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
    [['frobnicate'], "Expected the command 'backup', 'restore' or 'verify'"],
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
