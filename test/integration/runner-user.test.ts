// A runner that is not root, as GitHub's hosted runners are: with passwordless sudo the
// backup still keeps every file's owner; without it, the run says so and records it.
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemUser } from '../harness/accounts.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import { startSshd, type SshServer } from '../harness/sshd.ts';
import { buildSampleInstance, type SampleInstance } from '../sample/instance.ts';
import { runBackupCli } from '../support/backup-run.ts';
import { expectSameFiles, finishedBackup, unpackFiles } from '../support/restore.ts';

const WITH_SUDO = 'ocb-runner';
const WITHOUT_SUDO = 'ocb-plain';
/** SSH users on the ownCloud host: one with passwordless sudo, one without. */
const DEPLOY = 'ocb-deploy';
const NO_SUDO_LOGIN = 'ocb-nosudo';
const SUDOERS = '/etc/sudoers.d/owncloud-backup-test';

let sshd: SshServer;
let instance: SampleInstance;
const scratch = makeScratchDir('runner-user');
chmodSync(scratch.path, 0o755);

function ensureUser(name: string, shell = '/usr/sbin/nologin'): void {
  try {
    systemUser(name);
  } catch {
    execFileSync('useradd', ['--system', '--no-create-home', '--shell', shell, name]);
  }
  // '*': no password, but not locked (sshd refuses locked accounts even for keys).
  if (shell !== '/usr/sbin/nologin') execFileSync('usermod', ['-p', '*', name]);
}

beforeAll(async () => {
  ensureUser(WITH_SUDO);
  ensureUser(WITHOUT_SUDO);
  ensureUser(DEPLOY, '/bin/sh');
  ensureUser(NO_SUDO_LOGIN, '/bin/sh');
  writeFileSync(
    SUDOERS,
    `${WITH_SUDO} ALL=(ALL) NOPASSWD: ALL\n${DEPLOY} ALL=(ALL) NOPASSWD: ALL\n`,
    { mode: 0o440 },
  );
  sshd = await startSshd();
  instance = await buildSampleInstance({
    database: { type: 'sqlite' },
    root: join(scratch.path, 'instance'),
  });
});

afterAll(async () => {
  rmSync(SUDOERS, { force: true });
  await sshd?.stop();
  // --force: an SSH session of a test user may still be closing.
  for (const user of [WITH_SUDO, WITHOUT_SUDO, DEPLOY, NO_SUDO_LOGIN])
    execFileSync('userdel', ['--force', user]);
  instance?.remove();
  scratch.remove();
});

/** What the runner user needs: its own copy of the key, known_hosts and a backup dir. */
function runnerFiles(user: string): { args: string[]; backupDir: string } {
  const { uid, gid } = systemUser(user);
  const home = join(scratch.path, user);
  mkdirSync(join(home, 'backups'), { recursive: true });
  copyFileSync(sshd.privateKeyPath, join(home, 'key'));
  copyFileSync(sshd.knownHostsPath, join(home, 'known_hosts'));
  for (const path of [home, join(home, 'backups'), join(home, 'key'), join(home, 'known_hosts')])
    chownSync(path, uid, gid);
  chmodSync(join(home, 'key'), 0o600);
  return {
    backupDir: join(home, 'backups'),
    args: [
      '--owncloud-dir',
      instance.installDir,
      '--backup-dir',
      join(home, 'backups'),
      '--host',
      sshd.host,
      '--port',
      String(sshd.port),
      '--ssh-key-file',
      join(home, 'key'),
      '--known-hosts-file',
      join(home, 'known_hosts'),
    ],
  };
}

describe('a runner that is not root', () => {
  it('is refused a backup-dir it cannot write, as a usage error, before anything else', async () => {
    const { args } = runnerFiles(WITHOUT_SUDO);
    // Root's, and not writable by the runner user: the nearest existing level is checked.
    const rootOnly = join(scratch.path, 'root-only');
    mkdirSync(rootOnly, { mode: 0o755 });
    const target = join(rootOnly, 'backups', 'nightly');
    const run = await runBackupCli([...args, '--backup-dir', target], {
      secrets: [],
      user: WITHOUT_SUDO,
      env: { HOME: '/nonexistent' },
    });
    expect(run.exitCode, `${run.stdout}\n${run.stderr}`).toBe(2);
    expect(run.stderr).toContain(
      `owncloud-backup: error: backup-dir '${target}': '${rootOnly}' is not writable by this user. Choose a directory it can write.`,
    );
    expect(readdirSync(rootOnly)).toEqual([]);
  });

  it('keeps every owner through passwordless sudo', async () => {
    const { args, backupDir } = runnerFiles(WITH_SUDO);
    const run = await runBackupCli(args, {
      secrets: [],
      user: WITH_SUDO,
      env: { HOME: '/nonexistent' },
    });
    expect(run.exitCode, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.stderr).not.toContain('file owners in the backup will be this user');
    const { dir, manifest } = finishedBackup(backupDir);
    expect(manifest.files.ownersKept).toBe(true);
    const restored = join(scratch.path, 'restored-sudo');
    unpackFiles(join(dir, manifest.archives[0]!.name), restored);
    await expectSameFiles(instance, restored, manifest);
    // Nothing else is left behind in the user's backup dir.
    expect(readdirSync(dir).sort()).toEqual(
      ['SHA256SUMS', 'manifest.json', ...manifest.archives.map((a) => a.name)].sort(),
    );
  });

  it('without sudo, backs up with every owner: tar on the host records them', async () => {
    const { args, backupDir } = runnerFiles(WITHOUT_SUDO);
    const run = await runBackupCli(args, {
      secrets: [],
      user: WITHOUT_SUDO,
      env: { HOME: '/nonexistent' },
    });
    expect(run.exitCode, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.stderr).not.toContain('warning:');
    const { dir, manifest } = finishedBackup(backupDir);
    expect(manifest.files.ownersKept).toBe(true);
    const restored = join(scratch.path, 'restored-plain');
    unpackFiles(join(dir, manifest.archives[0]!.name), restored);
    await expectSameFiles(instance, restored, manifest);
    expect(statSync(join(restored, 'data', 'alice', 'files', 'Documents', 'Welcome.txt')).uid).toBe(
      instance.owner.uid,
    );
    expect(
      readFileSync(join(restored, 'data', 'alice', 'files', 'Documents', 'Welcome.txt'), 'utf8'),
    ).toBe(
      readFileSync(join(instance.dataDir, 'alice', 'files', 'Documents', 'Welcome.txt'), 'utf8'),
    );
  });
});

/** Options for a backup over SSH as the given user on the ownCloud host. */
function loginAs(user: string, backupDir: string): string[] {
  return [
    ...['--owncloud-dir', instance.installDir, '--backup-dir', backupDir],
    ...['--host', sshd.host, '--port', String(sshd.port), '--user', user],
    ...['--ssh-key-file', sshd.privateKeyPath, '--known-hosts-file', sshd.knownHostsPath],
  ];
}

describe('an SSH user that is neither root nor the owner', () => {
  it('reads the files and runs occ through passwordless sudo', async () => {
    const backupDir = join(scratch.path, 'deploy-backups');
    mkdirSync(backupDir);
    const calls = instance.occCalls().length;
    const run = await runBackupCli(loginAs(DEPLOY, backupDir), { secrets: [] });
    expect(run.exitCode, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.stderr).toContain(
      `Connected to root@${sshd.host}:${sshd.port}`.replace('root@', `${DEPLOY}@`),
    );
    const { dir, manifest } = finishedBackup(backupDir);
    const restored = join(scratch.path, 'restored-deploy');
    unpackFiles(join(dir, manifest.archives[0]!.name), restored);
    await expectSameFiles(instance, restored, manifest);
    // occ ran as the owner, through sudo.
    expect(
      instance
        .occCalls()
        .slice(calls)
        .map((c) => `${c.user} ${c.args.join(' ')}`),
    ).toEqual([
      'www-data maintenance:mode',
      'www-data maintenance:mode --on',
      'www-data maintenance:mode',
      'www-data maintenance:mode --off',
      'www-data maintenance:mode',
    ]);
    expect(instance.readConfig().maintenance).toBe(false);
  });

  it('without passwordless sudo, stops in preflight with a clear message, before maintenance mode', async () => {
    const backupDir = join(scratch.path, 'nosudo-backups');
    mkdirSync(backupDir);
    const calls = instance.occCalls().length;
    const run = await runBackupCli(loginAs(NO_SUDO_LOGIN, backupDir), { secrets: [] });
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain(
      `owncloud-backup: error: The SSH user ${NO_SUDO_LOGIN} on ${NO_SUDO_LOGIN}@${sshd.host}:${sshd.port} is neither root nor www-data and cannot use sudo without a password`,
    );
    expect(instance.occCalls().length).toBe(calls);
    expect(readdirSync(backupDir)).toEqual([]);
  });
});
