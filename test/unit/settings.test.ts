import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  cliLabel,
  knownHostsLineProblem,
  openSshKeyCipher,
  planBackup,
  type RawInputs,
} from '../../src/settings.ts';

const KEY =
  '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----';
// A real ed25519 public key blob (type name inside matches).
const HOST_KEY = 'AAAAC3NzaC1lZDI1NTE5AAAAIC3MRaHtm0x1cjBEbSH4NRj2lV8mFhcRCfK7lxC7e3sE';
const SSH: RawInputs = {
  host: 'cloud.example.com',
  'ssh-key': KEY,
  'known-hosts': `cloud.example.com ssh-ed25519 ${HOST_KEY}`,
};
const defaults = { backupDir: '/tmp/backups' };

function problem(raw: RawInputs): string {
  try {
    planBackup(raw, defaults);
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('expected an error');
}

describe('planBackup', () => {
  it('plans a local backup of /var/www/owncloud with safe defaults', () => {
    expect(planBackup({}, defaults)).toEqual({
      target: { kind: 'local' },
      owncloudDir: '/var/www/owncloud',
      extraPaths: [],
      exclude: [],
      installType: 'auto',
      database: {},
      maintenanceMode: true,
      compression: 'zstd',
      backupDir: '/tmp/backups',
      dumpTimeoutSeconds: 600,
      restoreTest: false,
      retention: { last: 0, daily: 0, weekly: 0, monthly: 0, yearly: 0 },
    });
  });

  it('plans an SSH backup with the key newline-terminated and the known_hosts lines kept', () => {
    const plan = planBackup(
      {
        ...SSH,
        port: '2222',
        user: 'deploy',
        'ssh-key': `${KEY.replaceAll('\n', '\r\n')}\r\n\r\n`,
      },
      defaults,
    );
    expect(plan.target).toEqual({
      kind: 'ssh',
      host: 'cloud.example.com',
      port: 2222,
      user: 'deploy',
      privateKey: `${KEY}\n`,
      knownHosts: [`cloud.example.com ssh-ed25519 ${HOST_KEY}`],
    });
  });

  it('takes database overrides, keeping a password exactly as given', () => {
    const plan = planBackup(
      {
        'db-type': 'MariaDB',
        'db-host': 'db.internal',
        'db-port': '3307',
        'db-name': 'oc',
        'db-user': 'u',
        'db-password': ' spaced $(x) ',
      },
      defaults,
    );
    expect(plan.database).toEqual({
      type: 'mysql',
      host: 'db.internal',
      port: 3307,
      name: 'oc',
      user: 'u',
      password: ' spaced $(x) ',
    });
  });

  it('normalises paths and splits newline lists, skipping blanks and comments', () => {
    const plan = planBackup(
      {
        'owncloud-dir': '/srv/own cloud//',
        'extra-paths':
          'apps-external\n\n# comment\n/etc/apache2/sites-available/owncloud.conf\nthemes/x/',
        exclude: '*/thumbnails/\nappdata_*/preview/',
      },
      defaults,
    );
    expect(plan.owncloudDir).toBe('/srv/own cloud');
    expect(plan.extraPaths).toEqual([
      'apps-external',
      '/etc/apache2/sites-available/owncloud.conf',
      'themes/x',
    ]);
    expect(plan.exclude).toEqual(['*/thumbnails/', 'appdata_*/preview/']);
  });

  it.each([
    [
      { 'db-type': 'oci' },
      "Invalid input 'db-type': Oracle (oci) is not supported. Expected one of: auto, mysql, pgsql, sqlite.",
    ],
    [
      { 'db-type': 'mssql' },
      "Invalid input 'db-type': 'mssql' is not supported. Expected one of: auto, mysql, pgsql, sqlite.",
    ],
    [{ host: 'h' }, "Invalid input 'ssh-key': a private key is required when input 'host' is set."],
    [
      { host: 'h', 'ssh-key': 'not a key' },
      "Invalid input 'ssh-key': expected a private key in PEM/OpenSSH format (-----BEGIN ... PRIVATE KEY-----).",
    ],
    [
      { host: 'h', 'ssh-key': KEY },
      "Invalid input 'known-hosts': known_hosts lines for the host are required when input 'host' is set (get them with: ssh-keyscan -p PORT HOST).",
    ],
    [
      { ...SSH, 'known-hosts': 'cloud.example.com ssh-ed25519' },
      "Invalid input 'known-hosts': line 1 is not a known_hosts line. Expected 'HOST KEYTYPE BASE64KEY', e.g. '[cloud.example.com]:2222 ssh-ed25519 AAAA...'.",
    ],
    [
      { ...SSH, 'known-hosts': 'h ssh-ed25519 not*base64' },
      "Invalid input 'known-hosts': line 1 has a key that is not base64.",
    ],
    [
      { ...SSH, 'known-hosts': `h ssh-rsa ${HOST_KEY}` },
      "Invalid input 'known-hosts': line 1 has a key that is not a ssh-rsa key.",
    ],
    [
      { ...SSH, 'known-hosts': `h ssh-foo ${HOST_KEY}` },
      "Invalid input 'known-hosts': line 1 has an unknown key type 'ssh-foo'.",
    ],
    [
      { ...SSH, host: '-oProxyCommand=x' },
      "Invalid input 'host': '-oProxyCommand=x' is not a host name or IP address.",
    ],
    [
      { ...SSH, port: '70000' },
      "Invalid input 'port': '70000' is not a whole number from 1 to 65535.",
    ],
    [{ ...SSH, user: 'root; rm' }, "Invalid input 'user': 'root; rm' is not a user name."],
    [
      { 'owncloud-dir': 'var/www/owncloud' },
      "Invalid input 'owncloud-dir': 'var/www/owncloud' is not an absolute path.",
    ],
    [
      { 'data-dir': '--delete' },
      "Invalid input 'data-dir': '--delete' starts with '-'. Expected an absolute path.",
    ],
    [
      { 'extra-paths': '../etc' },
      "Invalid input 'extra-paths': '../etc' is not a path inside input 'owncloud-dir'.",
    ],
    [
      { 'extra-paths': '-rf' },
      "Invalid input 'extra-paths': '-rf' starts with '-'. Expected a path.",
    ],
    [
      { exclude: '--delete' },
      "Invalid input 'exclude': '--delete' starts with '-'. Expected an rsync pattern such as '*/thumbnails/'.",
    ],
    [
      { 'install-type': 'docker' },
      "Invalid input 'install-type': 'docker' is not supported. Expected one of: auto, package, tarball.",
    ],
    [
      { compression: 'xz' },
      "Invalid input 'compression': 'xz' is not supported. Expected one of: zstd, gzip.",
    ],
    [
      { 'maintenance-mode': 'maybe' },
      "Invalid input 'maintenance-mode': 'maybe' is not a boolean. Expected true or false.",
    ],
    [
      { 'restore-test': 'yes please' },
      "Invalid input 'restore-test': 'yes please' is not a boolean. Expected true or false.",
    ],
    [
      { 'db-password': 'a\nb' },
      "Invalid input 'db-password': the password contains a line break or NUL byte, which no database client accepts.",
    ],
    [
      { 'dump-timeout': '0' },
      "Invalid input 'dump-timeout': '0' is not a whole number from 1 to 604800.",
    ],
  ] as [RawInputs, string][])('rejects %j with one clear message', (raw, message) => {
    expect(problem(raw)).toBe(message);
  });

  it('names command-line options the way they are typed', () => {
    expect(() => planBackup({ 'db-type': 'oci' }, defaults, cliLabel)).toThrow(
      'Invalid option --db-type: Oracle (oci) is not supported.',
    );
  });
});

describe('a passphrase-protected key', () => {
  it('is refused up front, since nothing could type the passphrase', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ocb-key-'));
    try {
      execFileSync('ssh-keygen', [
        '-q',
        '-t',
        'ed25519',
        '-N',
        'a passphrase',
        '-C',
        'test',
        '-f',
        join(dir, 'key'),
      ]);
      const key = readFileSync(join(dir, 'key'), 'utf8');
      expect(openSshKeyCipher(key)).toBe('aes256-ctr');
      expect(problem({ ...SSH, 'ssh-key': key })).toBe(
        "Invalid input 'ssh-key': the private key is protected by a passphrase; use a key without one.",
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('knownHostsLineProblem', () => {
  it('accepts hashed hosts, ports and markers', () => {
    expect(knownHostsLineProblem(`|1|abc=|def= ssh-ed25519 ${HOST_KEY}`)).toBeUndefined();
    expect(
      knownHostsLineProblem(`[h]:2222,[10.0.0.1]:2222 ssh-ed25519 ${HOST_KEY} comment`),
    ).toBeUndefined();
    expect(
      knownHostsLineProblem(`@cert-authority *.example.com ssh-ed25519 ${HOST_KEY}`),
    ).toBeUndefined();
  });
});
