// Backups encrypted at rest with age (`--encrypt-to`): no plaintext byte of the instance in
// any file of the backup directory (an incompressible marker file is searched for in every
// byte, and found in an unencrypted backup of the same instance); verify checks the
// ciphertext without a key and everything with it; the wrong key and damage fail clearly;
// a whole restore and a restore of one path come back with the identity, and nothing
// changes without it; age -d | zstd -d | tar -x works by hand; the identity is in no argv
// and no output.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeScratchDir } from '../harness/scratch.ts';
import { startMariaDb, type MariaDbServer } from '../harness/mariadb.ts';
import type { SampleInstance } from '../sample/instance.ts';
import { runBackupCli, runRestoreCli, runToolCli, type CliRun } from '../support/backup-run.ts';
import { sampleOn } from '../support/instances.ts';
import {
  changeInstance,
  expectSameState,
  finishedBackup,
  instanceState,
} from '../support/restore.ts';

let mariadb: MariaDbServer;
const scratch = makeScratchDir('backup-age');
chmodSync(scratch.path, 0o755);
const keys = join(scratch.path, 'keys');
let counter = 0;

/** An age key pair and an SSH key pair, as an administrator makes them. */
function makeKeys() {
  mkdirSync(keys, { recursive: true });
  execFileSync('age-keygen', ['-o', join(keys, 'age.key')], { stdio: 'ignore' });
  execFileSync('age-keygen', ['-o', join(keys, 'other.key')], { stdio: 'ignore' });
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(keys, 'ssh')]);
  return {
    ageKey: join(keys, 'age.key'),
    ageSecret: readFileSync(join(keys, 'age.key'), 'utf8'),
    ageRecipient: execFileSync('age-keygen', ['-y', join(keys, 'age.key')], {
      encoding: 'utf8',
    }).trim(),
    otherKey: join(keys, 'other.key'),
    sshKey: join(keys, 'ssh'),
    sshRecipient: readFileSync(join(keys, 'ssh.pub'), 'utf8').trim(),
  };
}
let k: ReturnType<typeof makeKeys>;

beforeAll(async () => {
  mariadb = await startMariaDb();
  k = makeKeys();
});
afterAll(async () => {
  await mariadb?.stop();
  scratch.remove();
});

function expectExit(run: CliRun, code: number): void {
  expect(run.exitCode, `${run.stdout}\n${run.stderr}`).toBe(code);
  expect(run.leaks).toEqual([]);
}

/** Every byte of every file in the directory, each file whole. */
function everyFile(dir: string): { name: string; bytes: Buffer }[] {
  return readdirSync(dir).map((name) => ({ name, bytes: readFileSync(join(dir, name)) }));
}

/** A file of random bytes in alice's files: zstd stores it as it is, so a slice of it is a marker. */
function plantMarker(instance: SampleInstance): Buffer {
  const content = randomBytes(256 * 1024);
  writeFileSync(join(instance.dataDir, 'alice', 'files', 'random.bin'), content);
  return content.subarray(100_000, 100_064);
}

async function backUp(instance: SampleInstance, extra: string[], secrets: string[] = []) {
  const backupDir = join(instance.root, `backups-${counter++}`);
  mkdirSync(backupDir);
  const run = await runBackupCli(
    ['--owncloud-dir', instance.installDir, '--backup-dir', backupDir, ...extra],
    { secrets: [instance.dbPassword, ...secrets] },
  );
  expectExit(run, 0);
  return { run, ...finishedBackup(backupDir) };
}

describe('encrypt-to: an encrypted backup', () => {
  let instance: SampleInstance;
  let marker: Buffer;
  let backup: Awaited<ReturnType<typeof backUp>>;

  beforeAll(async () => {
    instance = await sampleOn('mysql', { mariadb, postgres: undefined! }, scratch.path, 1);
    marker = plantMarker(instance);
    backup = await backUp(instance, [
      '--encrypt-to',
      k.ageRecipient,
      '--encrypt-to',
      k.sshRecipient,
    ]);
  });

  it('holds no plaintext byte: the marker found in a plain backup is in none of its files', async () => {
    const plain = await backUp(instance, []);
    const inPlain = everyFile(plain.dir).filter((f) => f.bytes.includes(marker));
    expect(inPlain.map((f) => f.name)).toEqual([
      expect.stringMatching(/^owncloud-files_\d{8}\.tar\.zst$/),
    ]);
    const files = everyFile(backup.dir);
    const names = files.map((f) => f.name).sort();
    expect(names).toHaveLength(5);
    expect(names[0]).toBe('SHA256SUMS');
    expect(names[1]).toBe('manifest.json');
    expect(names[2]).toMatch(/^owncloud-dbbackup_\d{8}\.bak\.zst\.age$/);
    expect(names[3]).toMatch(/^owncloud-files-delta_\d{8}\.tar\.zst\.age$/);
    expect(names[4]).toMatch(/^owncloud-files_\d{8}\.tar\.zst\.age$/);
    for (const file of files) {
      expect(file.bytes.includes(marker), file.name).toBe(false);
      // The database password is in config.php (files archive) and nowhere readable.
      expect(file.bytes.includes(Buffer.from(instance.dbPassword)), file.name).toBe(false);
    }
    for (const file of files.filter((f) => f.name.endsWith('.age')))
      expect(file.bytes.subarray(0, 22).toString()).toBe('age-encryption.org/v1\n');
    // The manifest stays readable and names who can decrypt, without a secret.
    expect(backup.manifest.age).toEqual({
      format: 'age-encryption.org/v1',
      recipients: [
        { type: 'X25519', fingerprint: k.ageRecipient },
        {
          type: 'ssh-ed25519',
          fingerprint: execFileSync('ssh-keygen', ['-l', '-f', `${k.sshKey}.pub`], {
            encoding: 'utf8',
          }).split(' ')[1],
        },
      ],
    });
    expect(backup.manifest.archives.every((a) => a.encryption === 'age')).toBe(true);
    expect(backup.manifest.restoreTest).toBeUndefined();
  });

  it('verify without a key checks the ciphertext only and says so (exit 3)', async () => {
    const run = await runToolCli('verify', [backup.dir], { secrets: [] });
    expectExit(run, 3);
    for (const archive of backup.manifest.archives) {
      expect(run.stdout).toContain(`ok      ${archive.name}: sha256 matches`);
      expect(run.stdout).toContain(
        `NOT RUN  ${archive.name}: content not checked: it is encrypted (age) and no identity was given`,
      );
    }
    expect(run.stdout).toMatch(/their content is unchecked \(3 checks not run\)/);
  });

  it('verify with the age key, or with the SSH key, checks everything; the wrong key fails', async () => {
    for (const key of [k.ageKey, k.sshKey]) {
      const run = await runToolCli('verify', ['--identity-file', key, backup.dir], {
        secrets: [k.ageSecret],
      });
      expectExit(run, 0);
      expect(run.stdout).toMatch(/: intact \(\d+ checks\)\./);
      expect(run.stdout).toMatch(
        /dbbackup_\d{8}\.bak\.zst\.age: decrypts and decompresses completely/,
      );
      expect(run.stdout).toMatch(
        /ends with the mariadb-dump completion line|ends with the mysqldump completion line/,
      );
      expect(run.stdout).not.toContain('NOT RUN');
    }
    const wrong = await runToolCli('verify', ['--identity-file', k.otherKey, backup.dir], {
      secrets: [],
    });
    expectExit(wrong, 1);
    expect(wrong.stdout).toContain(
      'decryption failed: the identity given is not one of the recipients it was encrypted to (wrong key)',
    );
  });

  it('verify finds a flipped bit with the key and without it', async () => {
    const copy = join(scratch.path, `damaged-${counter++}`);
    execFileSync('cp', ['-a', backup.dir, copy]);
    const files = backup.manifest.archives.find((a) => a.role === 'files')!;
    const path = join(copy, files.name);
    const bytes = readFileSync(path);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
    writeFileSync(path, bytes);
    const without = await runToolCli('verify', [copy], { secrets: [] });
    expectExit(without, 1);
    expect(without.stdout).toMatch(
      new RegExp(`FAILED  ${files.name.replaceAll('.', '\\.')}: sha256 is`),
    );
    const withKey = await runToolCli('verify', ['--identity-file', k.ageKey, copy], {
      secrets: [],
    });
    expectExit(withKey, 1);
    expect(withKey.stdout).toContain(
      'decryption failed: the encrypted data is damaged or cut short',
    );
  });

  it('restores by hand: age -d -i KEY | zstd -d | tar -x', () => {
    const out = join(scratch.path, `by-hand-${counter++}`);
    mkdirSync(out);
    for (const role of ['files', 'files-delta'] as const) {
      const name = backup.manifest.archives.find((a) => a.role === role)!.name;
      const result = spawnSync(
        'bash',
        [
          '-c',
          `set -o pipefail; age -d -i "$1" "$2" | zstd -d | tar -x ${role === 'files-delta' ? '--listed-incremental=/dev/null' : ''} -C "$3"`,
          'bash',
          k.ageKey,
          join(backup.dir, name),
          out,
        ],
        { encoding: 'utf8' },
      );
      expect(result.status, result.stderr).toBe(0);
    }
    expect(readFileSync(join(out, 'data', 'alice', 'files', 'random.bin')).includes(marker)).toBe(
      true,
    );
    const dump = backup.manifest.archives.find((a) => a.role === 'database')!.name;
    const sql = execFileSync('bash', [
      '-c',
      'set -o pipefail; age -d -i "$1" "$2" | zstd -d',
      'bash',
      k.ageKey,
      join(backup.dir, dump),
    ]);
    expect(sql.toString()).toContain('CREATE TABLE');
    expect(sql.length).toBe(backup.manifest.database.dumpBytes);
  });

  it('a whole restore needs the identity: without it nothing changes, with it the state comes back', async () => {
    const before = await instanceState(instance, backup.manifest);
    await changeInstance(instance);
    const changed = await instanceState(instance, backup.manifest);
    const refused = await runRestoreCli([backup.dir, '--owncloud-dir', instance.installDir], {
      secrets: [instance.dbPassword],
    });
    expectExit(refused, 2);
    expect(refused.stderr).toMatch(
      /is encrypted \(age\): give the identity that decrypts it \(option --identity-file, environment variable OWNCLOUD_BACKUP_IDENTITY/,
    );
    expect((await instanceState(instance, backup.manifest)).rows).toEqual(changed.rows);

    // The key from the environment: in no argv, in no output.
    const run = await runRestoreCli([backup.dir, '--owncloud-dir', instance.installDir], {
      secrets: [instance.dbPassword, k.ageSecret.trim().split('\n').pop()!],
      env: { OWNCLOUD_BACKUP_IDENTITY: k.ageSecret },
    });
    expectExit(run, 0);
    expect(`${run.stdout}${run.stderr}`).not.toContain('AGE-SECRET-KEY');
    expectSameState(await instanceState(instance, backup.manifest), before);
    expect(
      readFileSync(join(instance.dataDir, 'alice', 'files', 'random.bin')).includes(marker),
    ).toBe(true);
  });

  it('restore --path brings one file back with the SSH key', async () => {
    const file = join(instance.dataDir, 'alice', 'files', 'random.bin');
    const original = readFileSync(file);
    rmSync(file);
    const run = await runRestoreCli(
      [
        backup.dir,
        '--owncloud-dir',
        instance.installDir,
        '--path',
        'alice/files/random.bin',
        '--identity-file',
        k.sshKey,
      ],
      { secrets: [instance.dbPassword] },
    );
    expectExit(run, 0);
    expect(readFileSync(file).equals(original)).toBe(true);
    const listed = await runRestoreCli(
      [backup.dir, '--list', 'alice/files', '--identity-file', k.ageKey],
      { secrets: [] },
    );
    expectExit(listed, 0);
    expect(listed.stdout).toMatch(/262144 .* random\.bin/);
  });

  it('the restore test runs with the identity and is skipped, said why, without it', async () => {
    const tested = await backUp(
      instance,
      ['--encrypt-to', k.ageRecipient, '--restore-test', 'true', '--identity-file', k.ageKey],
      [k.ageSecret.trim().split('\n').pop()!],
    );
    expect(tested.manifest.restoreTest?.result).toBe('passed');
    const untested = await backUp(instance, [
      '--encrypt-to',
      k.ageRecipient,
      '--restore-test',
      'true',
    ]);
    expect(untested.manifest.restoreTest).toMatchObject({
      result: 'skipped',
      reason: expect.stringMatching(/^the backup is encrypted and this run has no identity/),
    });
  });
});

describe('encrypt-to: bad input', () => {
  it('a malformed recipient or a secret key is refused before anything happens', async () => {
    const instance = await sampleOn('sqlite', { mariadb, postgres: undefined! }, scratch.path, 2);
    const backupDir = join(instance.root, 'backups');
    for (const [value, message] of [
      ['age1notakey', /Invalid option --encrypt-to: 'age1notakey' is not an age recipient/],
      [k.ageSecret.trim().split('\n').pop()!, /that is an age secret key \(an identity\)/],
      // Right form, wrong checksum: age itself refuses it.
      [
        `${k.ageRecipient.slice(0, -1)}${k.ageRecipient.endsWith('q') ? 'p' : 'q'}`,
        /Invalid encrypt-to: age refuses the recipients/,
      ],
    ] as const) {
      const run = await runBackupCli(
        ['--owncloud-dir', instance.installDir, '--backup-dir', backupDir, '--encrypt-to', value],
        { secrets: [instance.dbPassword] },
      );
      expect(run.exitCode, run.stderr).toBe(2);
      expect(run.stderr).toMatch(message);
      expect(run.stderr).not.toMatch(/\n\s+at /);
      expect(instance.readConfig().maintenance).toBe(false);
    }
    // Refused before the backup directory was even created.
    expect(existsSync(backupDir)).toBe(false);
  });
});
