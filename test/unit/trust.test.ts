// The pure pieces behind a check that can be trusted and inputs that say what is wrong:
// where tar's stream ends, which manifest names may be opened, which SSH settings need a
// host, how an input is named where the user typed it, an SSH failure without a reason.
import { describe, expect, it } from 'vitest';
import { actionSettings } from '../../src/action/inputs.ts';
import { cliInputs } from '../../src/cli/main.ts';
import { sshFailureDetail } from '../../src/host/ssh.ts';
import { planBackup, type RawInputs } from '../../src/settings.ts';
import {
  archiveNameProblem,
  manifestProblem,
  tarEndBlock,
  tarEndProblem,
  ZeroTail,
} from '../../src/verify.ts';

describe('ZeroTail', () => {
  it('finds the last non-zero byte across chunks, also after all-zero chunks', () => {
    const tail = new ZeroTail();
    tail.add(Buffer.from([1, 2, 0]));
    expect([tail.bytes, tail.lastNonZero]).toEqual([3, 1]);
    tail.add(Buffer.alloc(100_000));
    expect([tail.bytes, tail.lastNonZero]).toEqual([100_003, 1]);
    tail.add(Buffer.from([0, 0, 7, 0]));
    expect([tail.bytes, tail.lastNonZero]).toEqual([100_007, 100_005]);
    tail.add(Buffer.alloc(0));
    expect([tail.bytes, tail.lastNonZero]).toEqual([100_007, 100_005]);
  });

  it('stays at -1 for a stream of zeros', () => {
    const tail = new ZeroTail();
    tail.add(Buffer.alloc(10));
    tail.add(Buffer.alloc(3));
    expect([tail.bytes, tail.lastNonZero]).toEqual([13, -1]);
  });
});

describe('the end of a tar stream', () => {
  it("reads the block number from tar's last --block-number line", () => {
    expect(tarEndBlock('block 50: ** Block of NULs **')).toBe(50);
    expect(tarEndBlock('block 7: ** End of File **')).toBe(7);
    expect(tarEndBlock('block 5: data/** Block of NULs **')).toBeUndefined();
    expect(tarEndBlock('block 5: data/.ocdata')).toBeUndefined();
    expect(tarEndBlock('')).toBeUndefined();
  });

  it('accepts the end-of-archive marker followed by zero padding', () => {
    // 50 blocks of members, the two-block marker at block 50, padding to 20-block records.
    expect(tarEndProblem({ endBlock: 50, bytes: 60 * 512, lastNonZero: 50 * 512 - 1 })).toBe(
      undefined,
    );
    expect(tarEndProblem({ endBlock: 50, bytes: 52 * 512, lastNonZero: 100 })).toBe(undefined);
  });

  it('refuses data after the marker, a missing or half marker, a partial block', () => {
    expect(tarEndProblem({ endBlock: 50, bytes: 60 * 512, lastNonZero: 55 * 512 })).toBe(
      "5120 bytes after tar's end-of-archive marker (at byte 25600) are not the zero padding tar writes",
    );
    expect(tarEndProblem({ endBlock: 50, bytes: 50 * 512, lastNonZero: 50 * 512 - 1 })).toBe(
      'it has no end-of-archive marker: the archive was cut short after 25600 bytes',
    );
    expect(tarEndProblem({ endBlock: 50, bytes: 51 * 512, lastNonZero: 10 })).toBe(
      'it has no end-of-archive marker: the archive was cut short after 26112 bytes',
    );
    expect(tarEndProblem({ endBlock: 50, bytes: 52 * 512 + 3, lastNonZero: 10 })).toBe(
      'it ends in a partial 512-byte block (26627 bytes)',
    );
    expect(tarEndProblem({ endBlock: undefined, bytes: 52 * 512, lastNonZero: 10 })).toBe(
      'tar did not report where the archive ends',
    );
  });
});

describe('names in a manifest', () => {
  it('accepts plain file names', () => {
    for (const name of ['owncloud-files_20261126.tar.zst', 'a..b', '...', 'x y', 'ünï'])
      expect(archiveNameProblem(name), name).toBeUndefined();
  });

  it.each(['../../../../../etc/shadow', '/etc/shadow', '.', '..', 'a/b', '', 'a\0b', 'x/'])(
    'refuses %j as outside the backup',
    (name) => {
      expect(archiveNameProblem(name)).toBe(
        `damaged: manifest names a file outside the backup: ${JSON.stringify(name)} (not read)`,
      );
    },
  );

  it('refuses control characters, which could forge lines of the report', () => {
    expect(archiveNameProblem('a\nok      b')).toBe(
      'damaged: manifest names a file with a control character in its name: "a\\nok      b" (not read)',
    );
  });
});

describe('the shape of a manifest', () => {
  const archive = (role: string, extra: object = {}) => ({
    name: `${role}.zst`,
    role,
    compression: 'zstd',
    size: 10,
    sha256: 'a'.repeat(64),
    ...extra,
  });
  const manifest = (archives: unknown[], database: object = {}) => ({
    format: 'owncloud-backup/1',
    database: { type: 'sqlite', dumpBytes: 5, dumpTool: 'sqlite3', ...database },
    archives,
  });

  it('accepts what a backup writes', () => {
    expect(manifestProblem(manifest([archive('files'), archive('database')]))).toBeUndefined();
  });

  it.each<[unknown, string]>([
    [null, 'it is not a JSON object'],
    [{ format: 'owncloud-backup/1' }, "it has no 'archives' list"],
    [manifest([]), 'it lists 0 files archives, not one'],
    [manifest([archive('files')]), 'it lists 0 database archives, not one'],
    [
      manifest([archive('files'), archive('files'), archive('database')]),
      'it lists 2 files archives, not one',
    ],
    [
      manifest([archive('files'), archive('database', { name: 7 })]),
      'archives[1].name is not a string',
    ],
    [
      manifest([archive('files', { compression: 'xz' }), archive('database')]),
      "archives[0].compression is not 'zstd' or 'gzip'",
    ],
    [
      manifest([archive('files', { size: -1 }), archive('database')]),
      'archives[0].size is not a byte count',
    ],
    [
      manifest([archive('files', { sha256: 'abc' }), archive('database')]),
      'archives[0].sha256 is not a SHA-256',
    ],
    [
      manifest([archive('files'), archive('database')], { type: 'oci' }),
      'database.type "oci" is not mysql, pgsql or sqlite',
    ],
    [
      manifest([archive('files'), archive('database')], { dumpTool: 'x\nok      forged' }),
      'database.dumpTool is not a program name',
    ],
  ])('refuses %j: %s', (value, expected) => {
    expect(manifestProblem(value)).toBe(expected);
  });
});

describe('SSH settings without a host', () => {
  const defaults = { backupDir: '/tmp/backups' };
  const message = (raw: RawInputs, label?: Parameters<typeof planBackup>[2]) => {
    try {
      planBackup(raw, defaults, label);
    } catch (error) {
      return (error as Error).message;
    }
    return 'no error';
  };

  it.each(['port', 'user', 'ssh-key', 'known-hosts'] as const)(
    "the action's input '%s' without input 'host' is an error naming both",
    (name) => {
      expect(message({ [name]: 'x' })).toBe(
        `Invalid input '${name}': it only applies with input 'host' (without a host, the server is this machine and there is no SSH connection).`,
      );
    },
  );

  it('reaches the action: actionSettings refuses a port without a host', () => {
    expect(() => actionSettings({ port: '2222' }, {}, '/tmp/runner', new Date())).toThrow(
      "Invalid input 'port': it only applies with input 'host' (without a host, the server is this machine and there is no SSH connection).",
    );
  });

  it('empty values (the action.yml defaults) are not given', () => {
    expect(message({ port: '', user: ' ', 'ssh-key': '', 'known-hosts': '' })).toBe('no error');
  });
});

describe('inputs are named as the user gave them', () => {
  const NOT_A_KEY = 'ssh-ed25519 AAAA a public key';
  const KNOWN = 'cloud.example.com ssh-ed25519 AAAA';
  const plan = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const { raw, label } = cliInputs(['backup', ...args], env);
    try {
      planBackup(raw, { backupDir: '/tmp/b' }, label);
    } catch (error) {
      return (error as Error).message;
    }
    return 'no error';
  };

  it('a key from the environment is named as that variable', () => {
    expect(
      plan(['--host', 'h', '--known-hosts', KNOWN], { OWNCLOUD_BACKUP_SSH_KEY: NOT_A_KEY }),
    ).toBe(
      'Invalid environment variable OWNCLOUD_BACKUP_SSH_KEY: expected a private key in PEM/OpenSSH format (-----BEGIN ... PRIVATE KEY-----).',
    );
  });

  it('a missing key names both ways to give it', () => {
    expect(plan(['--host', 'h', '--known-hosts', KNOWN])).toBe(
      'Invalid option --ssh-key-file (or environment variable OWNCLOUD_BACKUP_SSH_KEY): a private key is required when option --host is set.',
    );
  });

  it('the action names its input ssh-key', () => {
    expect(() =>
      actionSettings(
        { host: 'h', 'ssh-key': NOT_A_KEY, 'known-hosts': KNOWN },
        {},
        '/tmp/runner',
        new Date(),
      ),
    ).toThrow(
      "Invalid input 'ssh-key': expected a private key in PEM/OpenSSH format (-----BEGIN ... PRIVATE KEY-----).",
    );
  });

  it('a password from the environment is named as that variable', () => {
    expect(plan([], { OWNCLOUD_BACKUP_DB_PASSWORD: 'a\nb' })).toBe(
      'Invalid environment variable OWNCLOUD_BACKUP_DB_PASSWORD: the password contains a line break or NUL byte, which no database client accepts.',
    );
  });
});

describe('sshFailureDetail', () => {
  it("is ssh's own words when it said something", () => {
    expect(sshFailureDetail(255, 'kex_exchange_identification: read: Connection reset\n')).toBe(
      'kex_exchange_identification: read: Connection reset',
    );
  });

  it('says the exit status and that no reason was given when stderr is empty', () => {
    expect(sshFailureDetail(255, '')).toBe(
      'ssh exited with status 255 and gave no reason (no error output)',
    );
    expect(sshFailureDetail(1, ' \n')).toBe(
      'ssh exited with status 1 and gave no reason (no error output)',
    );
    expect(sshFailureDetail(null, '')).toBe(
      'ssh ended without an exit status and gave no reason (no error output)',
    );
  });
});
