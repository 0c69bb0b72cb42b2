// `owncloud-backup verify` can be trusted: it reads every byte of every archive (to the end
// of the compressed stream and past tar's end-of-archive marker), so the same intact backup
// is intact on every run and damage anywhere is found; it opens nothing outside the backup.
// And the command's papercuts: a closed stdout, a missing backup, SSH-only options without
// a host, a key file named as the option the user typed, an SSH failure without a reason.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/manifest.ts';
import type { Compression } from '../../src/settings.ts';
import { verifyBackup } from '../../src/verify.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import { startSshd, type SshServer } from '../harness/sshd.ts';
import { buildSampleInstance, type SampleInstance } from '../sample/instance.ts';
import { CLI, cliForAnyUser } from '../support/backup-run.ts';

const scratch = makeScratchDir('trust-verify');
chmodSync(scratch.path, 0o755);
const COMPRESSIONS = ['zstd', 'gzip'] as const;
const pristine: Record<Compression, string> = { zstd: '', gzip: '' };
let instance: SampleInstance;
let copies = 0;

// A verify that hangs (waiting on a FIFO or on a decompressor that never gets its end of
// input) must fail the test, not block it: these runs take well under a second.
const HANG = { timeout: 120_000, killSignal: 'SIGKILL' } as const;

function cli(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    cwd: scratch.path,
    env: { ...process.env, ...env },
    ...HANG,
  });
}

function decompressor(compression: Compression): string[] {
  return compression === 'zstd' ? ['zstd', '-dc', '-q'] : ['gzip', '-dc'];
}

function compress(compression: Compression, data: Buffer): Buffer {
  return execFileSync(compression, ['-q', '-c'], { input: data, maxBuffer: 1 << 30 });
}

/** What the real decompressor makes of a file: its output, exit status and last stderr line. */
function decompressed(compression: Compression, path: string) {
  const [program, ...args] = decompressor(compression);
  const run = spawnSync(program!, args, { input: readFileSync(path), maxBuffer: 1 << 30 });
  const said = run.stderr.toString().trim().split('\n').filter(Boolean).pop() ?? '';
  return { output: run.stdout, status: run.status!, said: said.replace(/\s+/g, ' ').trim() };
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A copy of a pristine backup, its manifest, and the path of its archive of a role. */
function copyOfBackup(compression: Compression, role: 'files' | 'database') {
  const dir = join(scratch.path, `copy-${copies++}`);
  execFileSync('cp', ['-a', pristine[compression], dir]);
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;
  const record = manifest.archives.find((a) => a.role === role)!;
  return { dir, manifest, record, path: join(dir, record.name) };
}

/** Writes new archive bytes and records them in the manifest, as a faithful writer would. */
function replaceRecorded(copy: ReturnType<typeof copyOfBackup>, bytes: Buffer): void {
  writeFileSync(copy.path, bytes);
  copy.record.size = bytes.length;
  copy.record.sha256 = sha256(bytes);
  writeFileSync(join(copy.dir, 'manifest.json'), JSON.stringify(copy.manifest));
}

function failedLines(stdout: string): string[] {
  return stdout.split('\n').filter((line) => line.startsWith('FAILED'));
}

beforeAll(async () => {
  instance = await buildSampleInstance({
    database: { type: 'sqlite' },
    root: join(scratch.path, 'instance'),
  });
  for (const compression of COMPRESSIONS) {
    const backups = join(scratch.path, `backups-${compression}`);
    mkdirSync(backups);
    const run = cli([
      'backup',
      '--owncloud-dir',
      instance.installDir,
      '--backup-dir',
      backups,
      '--compression',
      compression,
    ]);
    expect(run.status, run.stderr).toBe(0);
    pristine[compression] = join(backups, readdirSync(backups)[0]!);
  }
});
afterAll(() => scratch.remove());

describe('verify of an intact backup', () => {
  it.each(COMPRESSIONS)(
    '%s: 200 runs give 200 "intact"',
    async (compression) => {
      const verdicts: Record<string, number> = {};
      for (let run = 0; run < 200; run++) {
        const failed = (await verifyBackup(pristine[compression])).filter((c) => !c.ok);
        const verdict = failed.length === 0 ? 'intact' : failed.map((c) => c.what).join('; ');
        verdicts[verdict] = (verdicts[verdict] ?? 0) + 1;
      }
      expect(verdicts).toEqual({ intact: 200 });
    },
    900_000,
  );

  it('reads the files archive to its end: tar lists every entry, then only zero padding', () => {
    const run = cli(['verify', pristine.zstd]);
    expect(run.status, run.stdout + run.stderr).toBe(0);
    const { record } = copyOfBackup('zstd', 'files');
    const entries = execFileSync('tar', [
      '--list',
      '--zstd',
      `--file=${join(pristine.zstd, record.name)}`,
    ])
      .toString()
      .split('\n')
      .filter(Boolean).length;
    expect(run.stdout).toContain(
      `ok      ${record.name}: tar lists ${entries} entries, then its end-of-archive marker and zero padding\n`,
    );
    expect(run.stdout).toMatch(/: intact \(14 checks\)\.\n$/);
  });
});

describe.each(COMPRESSIONS)('verify finds damage (%s)', (compression) => {
  it('a files archive cut in half', () => {
    const copy = copyOfBackup(compression, 'files');
    const whole = readFileSync(copy.path);
    writeFileSync(copy.path, whole.subarray(0, Math.floor(whole.length / 2)));
    const real = decompressed(compression, copy.path);
    expect(real.status).not.toBe(0);
    const run = cli(['verify', copy.dir]);
    expect(run.status).toBe(1);
    expect(failedLines(run.stdout).slice(0, 3)).toEqual([
      `FAILED  ${copy.record.name}: size ${Math.floor(whole.length / 2)} (manifest: ${whole.length})`,
      `FAILED  ${copy.record.name}: sha256 is ${sha256(whole.subarray(0, Math.floor(whole.length / 2)))}, manifest says ${copy.record.sha256}`,
      `FAILED  ${copy.record.name}: decompresses with errors: the compressed data is cut short (exit ${real.status}: ${real.said})`,
    ]);
    expect(run.stdout).toMatch(/: DAMAGED \(\d+ of \d+ checks failed\)\.\n$/);
  });

  it('a flipped byte in the middle, recorded faithfully in the manifest', () => {
    const copy = copyOfBackup(compression, 'files');
    const bytes = readFileSync(copy.path);
    const middle = Math.floor(bytes.length / 2);
    bytes[middle] = bytes[middle]! ^ 0xff;
    replaceRecorded(copy, bytes);
    const real = decompressed(compression, copy.path);
    expect(real.status).not.toBe(0);
    const run = cli(['verify', copy.dir]);
    expect(run.status).toBe(1);
    expect(failedLines(run.stdout)[0]).toBe(
      `FAILED  ${copy.record.name}: decompresses with errors: the compressed data is damaged (exit ${real.status}: ${real.said})`,
    );
    expect(run.stdout).toMatch(/: DAMAGED \(\d+ of \d+ checks failed\)\.\n$/);
  });

  it('garbage after the compressed stream, recorded faithfully in the manifest', () => {
    const copy = copyOfBackup(compression, 'files');
    replaceRecorded(copy, Buffer.concat([readFileSync(copy.path), Buffer.from('garbage\n')]));
    const real = decompressed(compression, copy.path);
    expect(real.status).not.toBe(0);
    const run = cli(['verify', copy.dir]);
    expect(run.status).toBe(1);
    expect(failedLines(run.stdout)).toEqual([
      `FAILED  ${copy.record.name}: decompresses with errors: the compressed data is damaged (exit ${real.status}: ${real.said})`,
      `FAILED  ${copy.record.name}: tar lists ${tarEntries(copy.path, compression)} entries, but decompression failed, so its end is unproven`,
    ]);
  });

  it('a tar stream without its end-of-archive marker, compressed whole', () => {
    const copy = copyOfBackup(compression, 'files');
    const tar = decompressed(compression, copy.path).output;
    const end = tarEndOffset(tar);
    replaceRecorded(copy, compress(compression, tar.subarray(0, end)));
    const run = cli(['verify', copy.dir]);
    expect(run.status).toBe(1);
    expect(failedLines(run.stdout)).toEqual([
      `FAILED  ${copy.record.name}: tar lists ${tarEntries(copy.path, compression)} entries, but it has no end-of-archive marker: the archive was cut short after ${end} bytes`,
    ]);
  });

  it('data after tar’s end-of-archive marker and padding, compressed whole', () => {
    const copy = copyOfBackup(compression, 'files');
    const tar = decompressed(compression, copy.path).output;
    const end = tarEndOffset(tar);
    const extra = Buffer.alloc(512, 'x');
    replaceRecorded(copy, compress(compression, Buffer.concat([tar, extra])));
    const run = cli(['verify', copy.dir]);
    expect(run.status).toBe(1);
    expect(failedLines(run.stdout)).toEqual([
      `FAILED  ${copy.record.name}: tar lists ${tarEntries(copy.path, compression)} entries, but ${tar.length + extra.length - end} bytes after tar's end-of-archive marker (at byte ${end}) are not the zero padding tar writes`,
    ]);
  });

  it('a dump cut short says how far it decompressed', () => {
    const copy = copyOfBackup(compression, 'database');
    const whole = readFileSync(copy.path);
    const half = whole.subarray(0, Math.floor(whole.length / 2));
    writeFileSync(copy.path, half);
    const real = decompressed(compression, copy.path);
    const run = cli(['verify', copy.dir]);
    expect(run.status).toBe(1);
    expect(failedLines(run.stdout)).toEqual([
      `FAILED  ${copy.record.name}: size ${half.length} (manifest: ${whole.length})`,
      `FAILED  ${copy.record.name}: sha256 is ${sha256(half)}, manifest says ${copy.record.sha256}`,
      `FAILED  ${copy.record.name}: decompresses with errors: the compressed data is cut short (exit ${real.status}: ${real.said})`,
      `FAILED  ${copy.record.name}: the dump is cut short: decompression stopped after ${real.output.length} bytes of SQL (manifest: ${copy.manifest.database.dumpBytes})`,
    ]);
  });
});

/** Entries tar lists in a compressed archive (tar itself, reading what it can). */
function tarEntries(path: string, compression: Compression): number {
  const run = spawnSync('tar', ['--list', `--${compression}`, `--file=${path}`], {
    encoding: 'utf8',
  });
  return run.stdout.split('\n').filter(Boolean).length;
}

/** Where tar's end-of-archive marker starts in a tar stream, as tar itself reports it. */
function tarEndOffset(tar: Buffer): number {
  const listing = execFileSync('tar', ['--list', '--block-number', '--file=-'], {
    input: tar,
    maxBuffer: 1 << 30,
  })
    .toString()
    .trim()
    .split('\n');
  const block = /^block (\d+): \*\* Block of NULs \*\*$/.exec(listing.at(-1)!);
  expect(block, listing.at(-1)).not.toBeNull();
  return Number(block![1]) * 512;
}

describe('verify opens only files inside the backup', () => {
  it.each([['../../../../../etc/shadow'], ['/etc/shadow'], ['..'], ['sub/../../x']])(
    'a manifest naming %j is damaged, and that file is not read',
    (name) => {
      const copy = copyOfBackup('zstd', 'database');
      copy.record.name = name;
      writeFileSync(join(copy.dir, 'manifest.json'), JSON.stringify(copy.manifest));
      const shadow = readFileSync('/etc/shadow');
      const run = cli(['verify', copy.dir]);
      expect(run.status).toBe(1);
      expect(failedLines(run.stdout)).toEqual([
        `FAILED  damaged: manifest names a file outside the backup: ${JSON.stringify(name)} (not read)`,
      ]);
      expect(run.stdout).toMatch(/: DAMAGED \(1 of 10 checks failed\)\.\n$/);
      expect(run.stdout).not.toContain(sha256(shadow));
      expect(run.stdout).not.toContain(`size ${statSync('/etc/shadow').size}`);
    },
  );
});

describe('a manifest that cannot be trusted is damage, never "intact"', () => {
  it('a manifest listing no archives', () => {
    const copy = copyOfBackup('zstd', 'files');
    copy.manifest.archives = [];
    writeFileSync(join(copy.dir, 'manifest.json'), JSON.stringify(copy.manifest));
    const run = cli(['verify', copy.dir]);
    expect([run.status, run.stdout]).toEqual([
      1,
      `FAILED  manifest.json: damaged: it lists 0 files archives, not one\n${copy.dir}: DAMAGED (1 of 1 checks failed).\n`,
    ]);
  });

  it('a manifest that is not JSON', () => {
    const copy = copyOfBackup('zstd', 'files');
    writeFileSync(join(copy.dir, 'manifest.json'), '{"format": "owncloud-backup/1", ');
    const run = cli(['verify', copy.dir]);
    expect([run.status, run.stdout]).toEqual([
      1,
      `FAILED  manifest.json: damaged: it is not valid JSON\n${copy.dir}: DAMAGED (1 of 1 checks failed).\n`,
    ]);
  });
});

describe('verify opens only regular files, without following links', () => {
  it('a symbolic link in place of an archive is damaged, its target not read', () => {
    const copy = copyOfBackup('zstd', 'database');
    rmSync(copy.path);
    symlinkSync('/etc/shadow', copy.path);
    const run = cli(['verify', copy.dir]);
    expect(run.status).toBe(1);
    expect(failedLines(run.stdout)).toEqual([
      `FAILED  ${copy.record.name} is a symbolic link (not read)`,
    ]);
    expect(run.stdout).not.toContain(sha256(readFileSync('/etc/shadow')));
  });

  it('a FIFO in place of an archive is damaged, and verify does not wait on it', () => {
    const copy = copyOfBackup('zstd', 'database');
    rmSync(copy.path);
    execFileSync('mkfifo', [copy.path]);
    const run = cli(['verify', copy.dir]);
    expect(run.status).toBe(1);
    expect(failedLines(run.stdout)).toEqual([
      `FAILED  ${copy.record.name} is not a regular file (not read)`,
    ]);
  });
});

/** The CLI bundle run as nobody, from a copy any user can reach. */
function cliForNobody(): string[] {
  const { node, cli } = cliForAnyUser();
  return ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', node, cli];
}

describe('verify by a user who may not read the backup', () => {
  let asNobody: string[];
  beforeAll(() => {
    asNobody = cliForNobody();
  });
  const run = (dir: string) => {
    const [program, ...args] = asNobody;
    return spawnSync(program!, [...args, 'verify', dir], { encoding: 'utf8', cwd: '/', ...HANG });
  };

  it('an unreadable manifest is a failed check (exit 1), said in one line', () => {
    const copy = copyOfBackup('zstd', 'files');
    chmodSync(copy.dir, 0o755);
    chmodSync(join(copy.dir, 'manifest.json'), 0o600);
    expect(run(copy.dir)).toMatchObject({
      status: 1,
      stdout: '',
      stderr: `owncloud-backup: error: Cannot read ${join(copy.dir, 'manifest.json')}: permission denied (EACCES).\n`,
    });
  });

  it('an unreadable archive is a failed check naming it', () => {
    const copy = copyOfBackup('zstd', 'database');
    chmodSync(copy.dir, 0o755);
    chmodSync(join(copy.dir, 'manifest.json'), 0o644);
    // Every archive readable but the dump.
    for (const archive of copy.manifest.archives)
      if (archive.role !== 'database') chmodSync(join(copy.dir, archive.name), 0o644);
    chmodSync(copy.path, 0o600);
    const result = run(copy.dir);
    expect(result.status, result.stderr).toBe(1);
    expect(failedLines(result.stdout)).toEqual([
      `FAILED  ${copy.record.name} cannot be read: permission denied (EACCES)`,
    ]);
  });
});

describe('verify exit status', () => {
  it('a missing backup directory is a failed check (exit 1), said in one line', () => {
    const missing = join(scratch.path, 'no-such-backup');
    const run = cli(['verify', missing]);
    expect([run.status, run.stdout, run.stderr]).toEqual([
      1,
      '',
      `owncloud-backup: error: Cannot verify ${missing}: no such directory.\n`,
    ]);
  });

  it('a file instead of a backup directory is a failed check (exit 1)', () => {
    const file = join(pristine.zstd, 'manifest.json');
    const run = cli(['verify', file]);
    expect([run.status, run.stdout, run.stderr]).toEqual([
      1,
      '',
      `owncloud-backup: error: Cannot verify ${file}: it is not a directory.\n`,
    ]);
  });

  it('bad usage is exit 2', () => {
    for (const args of [
      ['verify'],
      ['verify', 'a', 'b'],
      ['verify', '--restore-test'],
      ['verify', '--restore-test', 'a', 'b'],
    ]) {
      const run = cli(args);
      expect([run.status, run.stderr]).toEqual([
        2,
        'owncloud-backup: error: Expected: owncloud-backup verify [--restore-test] [--identity-file FILE] BACKUP-DIR\n',
      ]);
    }
  });

  it('--help shows --version and documents 0/1/2/3 for verify as the README does', () => {
    const run = cli(['--help']);
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('\n  --version                show the version\n');
    expect(run.stdout).toContain(
      "\nExit status of verify: 0 intact (and, with --restore-test, the restore test passed),\n1 damaged, missing or unreadable (not a backup that checks out) or the restore test failed,\n2 bad usage, 3 intact as far as it could be checked: the restore test was skipped (no server\nprograms on this machine), or the backup is encrypted and no identity was given (only the\nfiles' sizes and SHA-256 were checked), 130 interrupted.",
    );
    const readme = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
    expect(readme.replace(/\s+/g, ' ')).toContain(
      'Exit status: 0 intact; 1 damaged, or nothing to check (DIR missing or unreadable, no `manifest.json`); 2 bad usage; 3 an encrypted backup checked without its key',
    );
    expect(cli(['--version']).stdout).toMatch(/^owncloud-backup \d+\.\d+\.\d+\n$/);
  });
});

/** Runs the CLI with a stdout nobody reads (closed before the command writes anything). */
function withClosedStdout(args: string[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: scratch.path,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (status) => resolve({ status, stderr }));
  });
}

describe('a reader that goes away (| head -1)', () => {
  it('verify, --help and --version end quietly with their own exit status', async () => {
    const damaged = copyOfBackup('zstd', 'database');
    writeFileSync(damaged.path, 'x');
    expect(await withClosedStdout(['verify', pristine.zstd])).toEqual({ status: 0, stderr: '' });
    expect(await withClosedStdout(['verify', damaged.dir])).toEqual({ status: 1, stderr: '' });
    expect(await withClosedStdout(['--help'])).toEqual({ status: 0, stderr: '' });
    expect(await withClosedStdout(['--version'])).toEqual({ status: 0, stderr: '' });
  });

  it('a backup still finishes and exits 0', async () => {
    const backups = join(scratch.path, 'backups-closed-stdout');
    mkdirSync(backups);
    const run = await withClosedStdout([
      'backup',
      '--owncloud-dir',
      instance.installDir,
      '--backup-dir',
      backups,
    ]);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stderr).not.toMatch(/EPIPE|Error|\n\s+at /);
    const [dir] = readdirSync(backups);
    expect(cli(['verify', join(backups, dir!)]).status).toBe(0);
  });
});

describe('SSH-only options without --host', () => {
  const NOT_WITHOUT_HOST =
    'it only applies with option --host (without a host, the server is this machine and there is no SSH connection).';
  const KEY = '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n';
  const KNOWN = 'cloud.example.com ssh-ed25519 AAAA';
  const file = (name: string, text: string) => {
    const path = join(scratch.path, name);
    writeFileSync(path, text, { mode: 0o600 });
    return path;
  };
  it.each<[string, () => { args: string[]; env?: Record<string, string> }]>([
    ['option --port', () => ({ args: ['--port', '2222'] })],
    ['option --user', () => ({ args: ['--user', 'backup'] })],
    ['option --ssh-key-file', () => ({ args: ['--ssh-key-file', file('key', KEY)] })],
    [
      'environment variable OWNCLOUD_BACKUP_SSH_KEY',
      () => ({ args: [], env: { OWNCLOUD_BACKUP_SSH_KEY: KEY } }),
    ],
    ['option --known-hosts', () => ({ args: ['--known-hosts', KNOWN] })],
    ['option --known-hosts-file', () => ({ args: ['--known-hosts-file', file('known', KNOWN)] })],
    ['option --ssh-keepalive', () => ({ args: ['--ssh-keepalive', '3'] })],
  ])('%s is an input error naming it and --host', (label, given) => {
    const { args, env } = given();
    const backups = join(scratch.path, `untouched-${copies++}`);
    mkdirSync(backups);
    const run = cli(
      ['backup', '--owncloud-dir', instance.installDir, '--backup-dir', backups, ...args],
      env,
    );
    expect([run.status, run.stdout, run.stderr]).toEqual([
      2,
      '',
      `owncloud-backup: error: Invalid ${label}: ${NOT_WITHOUT_HOST}\n`,
    ]);
    expect(readdirSync(backups)).toEqual([]);
  });
});

describe('SSH failures', () => {
  let sshd: SshServer;
  beforeAll(async () => {
    sshd = await startSshd();
  });
  afterAll(async () => {
    await sshd?.stop();
  });

  function sshBackup(keyArgs: string[], env: Record<string, string> = {}) {
    return cli(
      [
        'backup',
        '--host',
        sshd.host,
        '--port',
        String(sshd.port),
        ...keyArgs,
        '--known-hosts-file',
        sshd.knownHostsPath,
        '--owncloud-dir',
        instance.installDir,
        '--backup-dir',
        scratch.path,
      ],
      env,
    );
  }

  it('a key file that holds no key is reported as --ssh-key-file', () => {
    const notAKey = join(scratch.path, 'not-a-key');
    writeFileSync(notAKey, 'ssh-ed25519 AAAA this is a public key\n');
    const expected =
      'expected a private key in PEM/OpenSSH format (-----BEGIN ... PRIVATE KEY-----).';
    const fromFile = sshBackup(['--ssh-key-file', notAKey]);
    expect([fromFile.status, fromFile.stderr]).toEqual([
      2,
      `owncloud-backup: error: Invalid option --ssh-key-file: ${expected}\n`,
    ]);
    const fromEnv = sshBackup([], { OWNCLOUD_BACKUP_SSH_KEY: readFileSync(notAKey, 'utf8') });
    expect([fromEnv.status, fromEnv.stderr]).toEqual([
      2,
      `owncloud-backup: error: Invalid environment variable OWNCLOUD_BACKUP_SSH_KEY: ${expected}\n`,
    ]);
  });

  it('a failure ssh gives no reason for names the host and the exit status', () => {
    // A restricted key whose forced command fails silently: every command exits 255.
    const authorized = join(sshd.dir, 'authorized_keys');
    const original = readFileSync(authorized, 'utf8');
    writeFileSync(authorized, `command="exit 255" ${original}`);
    try {
      const run = sshBackup(['--ssh-key-file', sshd.privateKeyPath]);
      expect(run.status, run.stderr).toBe(1);
      expect(run.stderr.split('\n').filter((l) => l.startsWith('owncloud-backup: error:'))).toEqual(
        [
          `owncloud-backup: error: Could not run commands on root@${sshd.host}:${sshd.port}: ssh exited with status 255 and gave no reason (no error output)`,
        ],
      );
    } finally {
      writeFileSync(authorized, original);
    }
  });
});
