// The pure parts of the restic driver: restic 0.14's output (as it prints it) parsed, its
// failures explained in one sentence each, secrets removed from what it says, and the
// wrapper that delivers the secrets on stdin, run by the POSIX shell with a command that
// shows what it was given.
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import {
  displayRepository,
  explainResticFailure,
  isMissingRepository,
  keepOptions,
  parseBackupErrors,
  parseBackupSummary,
  parseForget,
  parseResticVersion,
  parseSnapshots,
  redactResticOutput,
  resticTime,
  type ResticAccess,
} from '../../src/destination/restic.ts';
import { guardedResticCommand, resticSecretLines } from '../../src/host/guarded-restic.ts';
import { NO_RETENTION } from '../../src/retention.ts';

// restic 0.14.0's own words, as it printed them on loopback backends.
const STDERR = {
  wrongPassword: 'Fatal: wrong password or no key found\n',
  missingLocal:
    'Fatal: unable to open config file: stat /srv/repo/config: no such file or directory\nIs there a repository at the following location?\n/srv/repo\n',
  missingRest:
    'Fatal: unable to open config file: <config/> does not exist\nIs there a repository at the following location?\nrest:http://u:***@127.0.0.1:8000/\n',
  missingS3:
    'Fatal: unable to open config file: Stat: The specified key does not exist.\nIs there a repository at the following location?\ns3:https://127.0.0.1:9000/bucket/restic\n',
  locked:
    'unable to create lock in backend: repository is already locked by PID 22430 on vm by root (UID 0, GID 0)\nlock was created at 2026-12-02 10:26:05 (1.943317522s ago)\nstorage ID 26a87261\nthe `unlock` command can be used to remove stale locks\n',
  refused:
    'Fatal: unable to open config file: client.Head: Head "http://127.0.0.1:1/config": dial tcp 127.0.0.1:1: connect: connection refused\nIs there a repository at the following location?\nrest:http://127.0.0.1:1/\n',
  noSuchHost:
    'Fatal: unable to open config file: client.Head: Head "http://nosuchhost.invalid:8000/config": dial tcp: lookup nosuchhost.invalid on 10.255.255.53:53: no such host\nIs there a repository at the following location?\nrest:http://nosuchhost.invalid:8000/\n',
  sftp: 'subprocess ssh: ssh: connect to host 127.0.0.1 port 1: Connection refused\nFatal: unable to open repository at sftp:u@127.0.0.1:/srv/repo: unable to start the sftp session, error: EOF\n',
  rest401:
    'Fatal: unable to open config file: unexpected HTTP response (401): 401 Unauthorized\nIs there a repository at the following location?\nrest:http://u:***@127.0.0.1:8000/\n',
  s3Signature:
    'Fatal: unable to open config file: Stat: The request signature we calculated does not match the signature you provided. Check your key and signing method.\nIs there a repository at the following location?\ns3:https://127.0.0.1:9000/bucket/restic\n',
  s3Key:
    'Fatal: unable to open config file: Stat: The AWS Access Key Id you provided does not exist in our records.\nIs there a repository at the following location?\ns3:https://127.0.0.1:9000/bucket/restic\n',
  empty:
    '{"message_type":"error","error":{"Op":"read","Path":"/x.sql","Err":{}},"during":"archival","item":"/x.sql"}\nFatal: unable to save snapshot: snapshot is empty\n',
};

describe('restic version', () => {
  it('reads the version from restic version', () => {
    expect(parseResticVersion('restic 0.14.0 compiled with go1.19.8 on linux/amd64\n')).toBe(
      '0.14.0',
    );
    expect(parseResticVersion('restic 0.17.3-dev (compiled manually) compiled with go1.23')).toBe(
      '0.17.3',
    );
    expect(parseResticVersion('sh: restic: not found')).toBeUndefined();
  });
});

describe("restic's failures, explained", () => {
  const doing = 'Opening the restic repository';
  it('names a wrong password', () => {
    expect(explainResticFailure(STDERR.wrongPassword, 1, doing)).toBe(
      'Opening the restic repository failed: the restic password is wrong for this repository (restic: wrong password or no key found). Check restic-password.',
    );
  });
  it('tells a missing repository from an unreachable one (restic says "unable to open config file" for both)', () => {
    for (const missing of [STDERR.missingLocal, STDERR.missingRest, STDERR.missingS3]) {
      expect(isMissingRepository(missing)).toBe(true);
      expect(explainResticFailure(missing, 1, doing)).toMatch(
        /there is no restic repository at that location\. Set restic-init to true/,
      );
    }
    for (const other of [STDERR.refused, STDERR.noSuchHost, STDERR.rest401, STDERR.s3Key])
      expect(isMissingRepository(other)).toBe(false);
  });
  it('says who holds a lock and what to do', () => {
    expect(explainResticFailure(STDERR.locked, 1, 'Forgetting snapshots')).toBe(
      'Forgetting snapshots failed: another restic run holds a lock on the repository (PID 22430 on vm, since 2026-12-02 10:26:05). Wait for it to finish; if no run is active, the lock is stale: remove it with restic unlock.',
    );
  });
  it('names an unreachable server, an unknown host name, a failed SFTP session', () => {
    expect(explainResticFailure(STDERR.refused, 1, doing)).toMatch(
      /^Opening the restic repository failed: the repository's server could not be reached \(restic: .*connection refused.*\)\. Check that it runs/,
    );
    expect(explainResticFailure(STDERR.noSuchHost, 1, doing)).toMatch(
      /the repository's server name could not be resolved .*Check the host in restic-repository\.$/,
    );
    expect(explainResticFailure(STDERR.sftp, 1, doing)).toMatch(
      /restic could not start an SFTP session .*Connection refused.*sftp\.command option/,
    );
  });
  it('names refused credentials of a REST server and of an S3 server', () => {
    expect(explainResticFailure(STDERR.rest401, 1, doing)).toMatch(
      /the REST server refused the credentials \(HTTP 401\)\. Check the user and password in restic-repository\.$/,
    );
    expect(explainResticFailure(STDERR.rest401.replaceAll('401', '403'), 1, doing)).toMatch(
      /\(HTTP 403\)/,
    );
    for (const s3 of [STDERR.s3Signature, STDERR.s3Key])
      expect(explainResticFailure(s3, 1, doing)).toMatch(
        /the S3 server refused the credentials .*Check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/,
      );
  });
  it('names an empty stream, and quotes restic for anything else', () => {
    expect(explainResticFailure(STDERR.empty, 1, 'Backing up db.sql')).toBe(
      'Backing up db.sql failed: there was no data (restic 0.14 refuses to store an empty snapshot from stdin).',
    );
    expect(explainResticFailure('Fatal: something new\n', 1, doing)).toBe(
      'Opening the restic repository failed (restic exit 1) (restic: Fatal: something new).',
    );
    expect(explainResticFailure('', 2, doing)).toBe(
      'Opening the restic repository failed (restic exit 2): no message.',
    );
  });
});

describe('secrets in what restic says', () => {
  const access: ResticAccess = {
    repository: 'rest:https://backup:p%40ss%3Aw%2Frd@backup.example.com:8000/oc/',
    password: 'correct horse',
    env: { AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG', SSL_CERT_FILE: '/etc/ca.pem' },
    options: [],
  };
  it('shows a repository URL without its password', () => {
    expect(displayRepository(access.repository)).toBe(
      'rest:https://backup:***@backup.example.com:8000/oc/',
    );
    expect(displayRepository('rest:http://127.0.0.1:8000/')).toBe('rest:http://127.0.0.1:8000/');
    expect(displayRepository('sftp:user@host:/srv/repo')).toBe('sftp:user@host:/srv/repo');
    expect(displayRepository('/srv/repo')).toBe('/srv/repo');
  });
  it('removes the repository string, the URL password (encoded or not), the password and the values', () => {
    const said = [
      `Is there a repository at the following location?\n${access.repository}`,
      'Head "https://backup:p%40ss%3Aw%2Frd@backup.example.com:8000/oc/config"',
      'user p@ss:w/rd said correct horse with wJalrXUtnFEMI/K7MDENG',
    ].join('\n');
    const redacted = redactResticOutput(said, access);
    expect(redacted).toBe(
      [
        'Is there a repository at the following location?\nrest:https://backup:***@backup.example.com:8000/oc/',
        'Head "https://backup:***@backup.example.com:8000/oc/config"',
        'user *** said *** with ***',
      ].join('\n'),
    );
  });
});

describe("restic's JSON output", () => {
  it('takes the summary of backup --json (restic 0.14 gives the short id)', () => {
    const stdout = [
      '{"message_type":"status","percent_done":1,"total_files":2}',
      '{"message_type":"summary","files_new":2,"files_changed":1,"files_unmodified":3,"dirs_new":1,"dirs_changed":0,"dirs_unmodified":0,"data_blobs":2,"tree_blobs":2,"data_added":1042,"total_files_processed":6,"total_bytes_processed":4,"total_duration":0.309085585,"snapshot_id":"e99179c1"}',
      '',
    ].join('\n');
    expect(parseBackupSummary(stdout)).toEqual({
      id: 'e99179c1',
      filesNew: 2,
      filesChanged: 1,
      filesUnmodified: 3,
      dataAdded: 1042,
      totalBytesProcessed: 4,
    });
    expect(parseBackupSummary('Fatal: nothing\n')).toBeUndefined();
  });
  it("lists the files a backup could not read from restic's error messages", () => {
    const stderr = [
      '{"message_type":"error","error":{"Op":"read","Path":"/proc/21531/mem","Err":5},"during":"archival","item":"/proc/21531/mem"}',
      'Warning: at least one source file could not be read',
    ].join('\n');
    expect(parseBackupErrors(stderr)).toEqual(['/proc/21531/mem: read failed during archival']);
  });
  it('reads snapshots --json, tags and parent optional', () => {
    const stdout = JSON.stringify([
      {
        time: '2026-12-02T10:25:36.216560019Z',
        tree: '54b2',
        paths: ['/srv/oc'],
        hostname: 'h',
        username: 'root',
        tags: ['t'],
        id: 'e99179c1e4d6',
        short_id: 'e99179c1',
      },
      {
        time: '2026-12-02T10:26:00Z',
        parent: 'e99179c1e4d6',
        paths: ['/db.sql'],
        hostname: 'h',
        id: 'f0',
      },
    ]);
    expect(parseSnapshots(stdout)).toEqual([
      {
        id: 'e99179c1e4d6',
        time: '2026-12-02T10:25:36.216560019Z',
        host: 'h',
        tags: ['t'],
        paths: ['/srv/oc'],
      },
      {
        id: 'f0',
        time: '2026-12-02T10:26:00Z',
        host: 'h',
        tags: [],
        paths: ['/db.sql'],
        parent: 'e99179c1e4d6',
      },
    ]);
  });
  it('reads forget --json (remove: null when nothing goes), with prune text after it', () => {
    const stdout = [
      JSON.stringify([
        { tags: null, host: 'h', paths: ['/a'], keep: [{ id: 'k1' }], remove: null },
        {
          tags: ['db'],
          host: 'h',
          paths: ['/b'],
          keep: [{ id: 'k2' }],
          remove: [{ id: 'r1' }, { id: 'r2' }],
        },
      ]),
      'loading indexes...',
      'will remove 2 snapshots',
    ].join('\n');
    expect(parseForget(stdout)).toEqual({ kept: ['k1', 'k2'], removed: ['r1', 'r2'] });
  });
  it("turns a retention policy into forget's options, and a time into --time's form", () => {
    expect(keepOptions({ ...NO_RETENTION, last: 3, weekly: 4, yearly: 1 })).toEqual([
      '--keep-last',
      '3',
      '--keep-weekly',
      '4',
      '--keep-yearly',
      '1',
    ]);
    expect(keepOptions(NO_RETENTION)).toEqual([]);
    expect(resticTime(new Date('2026-11-01T02:03:04.567Z'))).toBe('2026-11-01 02:03:04');
  });
});

describe('the restic wrapper', () => {
  const secrets = {
    repository: 'rest:https://u:p%40ss@h/ $HOME `id` \'q\' "d" \\n',
    password: 'pa ss $(id) `id` \'x\' "y" \\ %:/@ *',
    env: { AWS_SECRET_ACCESS_KEY: "s e c $PATH 'z'", B2_ACCOUNT_ID: 'account * id' },
  };
  /**
   * The wrapper run by sh around a command that prints what restic would be given. In
   * watch mode stdin stays open until the command has ended, as the tool keeps it: its end
   * would mean "the client went away" and stop the command, however far it got.
   */
  const show = async (stdin: 'watch' | 'data', input: string) => {
    const child = execa(
      'sh',
      guardedResticCommand(
        [
          'sh',
          '-c',
          'printf "%s|" "$(cat "$RESTIC_PASSWORD_FILE")" "$RESTIC_REPOSITORY" "$AWS_SECRET_ACCESS_KEY" "$B2_ACCOUNT_ID" "$(cat)"',
        ],
        stdin,
        secrets,
      ).slice(1),
      { reject: false, stdin: 'pipe' },
    );
    child.stdin.write(input);
    if (stdin === 'data') child.stdin.end();
    const result = await child;
    child.stdin.destroy();
    return result;
  };

  it('has no secret in its argv', () => {
    const argv = guardedResticCommand(['restic', 'snapshots'], 'watch', secrets).join('\0');
    for (const value of [secrets.repository, secrets.password, ...Object.values(secrets.env)])
      expect(argv.includes(value)).toBe(false);
  });
  it('gives restic the password on fd 3 and the repository and variables in its environment, byte for byte', async () => {
    const lines = resticSecretLines(secrets);
    const watched = await show('watch', lines);
    expect(watched.stdout).toBe(
      `${secrets.password}|${secrets.repository}|${secrets.env.AWS_SECRET_ACCESS_KEY}|account * id||`,
    );
    expect(watched.exitCode).toBe(0);
    // In data mode, the rest of stdin is the command's.
    const data = await show('data', `${lines}the data\nmore`);
    expect(data.stdout).toBe(
      `${secrets.password}|${secrets.repository}|${secrets.env.AWS_SECRET_ACCESS_KEY}|account * id|the data\nmore|`,
    );
  });
  it('refuses what cannot travel as one line, names restic would not take, and padded passwords', () => {
    expect(() => resticSecretLines({ ...secrets, password: 'a\nb' })).toThrow(
      'The restic password contains a line break',
    );
    expect(() => resticSecretLines({ ...secrets, repository: 'a\rb' })).toThrow('line break');
    expect(() => resticSecretLines({ ...secrets, env: { lower: 'x' } })).toThrow(
      "The restic environment variable name 'lower' is not valid",
    );
    expect(() => resticSecretLines({ ...secrets, env: { RESTIC_PASSWORD: 'x' } })).toThrow(
      'cannot be set',
    );
    expect(() => resticSecretLines({ ...secrets, env: { X: 'a\nb' } })).toThrow(
      'The value of the restic environment variable X contains a line break',
    );
    expect(() => resticSecretLines({ ...secrets, password: ' padded' })).toThrow(
      'starts or ends with white space',
    );
    try {
      resticSecretLines({ ...secrets, env: { X: `${secrets.password}\n` } });
    } catch (error) {
      expect(String(error)).not.toContain(secrets.password);
    }
  });
});
