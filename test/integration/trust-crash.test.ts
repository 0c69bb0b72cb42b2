// A run that dies leaves nothing behind, and two runs never overlap. A moment inside a run
// is made deterministic with the occ stand-in, which waits at a chosen call until the test
// releases it; the run is then killed with SIGKILL (which no handler sees), as a runner
// does it, and what a later step or run finds is checked against the real instance.
import { execFileSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statfsSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatBytes } from '../../src/steps/preflight.ts';
import { isProcessRunning, makeScratchDir } from '../harness/scratch.ts';
import { startSshd, type SshServer } from '../harness/sshd.ts';
import type { SampleInstance, SampleOptions } from '../sample/instance.ts';
import { runActionStep } from '../support/action-runner.ts';
import { runBackupCli, type CliRun } from '../support/backup-run.ts';
import { sampleOn, type DatabaseServers } from '../support/instances.ts';
import { holdOccAt, type OccHold } from '../support/occ-hold.ts';
import { explain, errorLine, occSwitches, sshArgs as sshArgsFor } from '../support/cli-checks.ts';
import { ProcessTree } from '../support/processes.ts';

let sshd: SshServer;
const scratch = makeScratchDir('trust-crash');
chmodSync(scratch.path, 0o755);
let counter = 0;

beforeAll(async () => {
  sshd = await startSshd();
});
afterAll(async () => {
  await sshd?.stop();
  scratch.remove();
});

/** SQLite instances only: these tests are about the run's life, not the engine. */
function sample(options: Partial<SampleOptions> = {}): Promise<SampleInstance> {
  return sampleOn('sqlite', {} as DatabaseServers, scratch.path, counter++, options);
}

function sshInputs(): Record<string, string> {
  return {
    host: sshd.host,
    port: String(sshd.port),
    user: 'root',
    'ssh-key': sshd.privateKey,
    'known-hosts': sshd.knownHostsLine,
  };
}

function sshArgs(server: SshServer = sshd): string[] {
  return sshArgsFor(server);
}

function freshDir(label: string): string {
  const dir = join(scratch.path, `${label} ${counter++}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

function incompleteIn(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).filter((n) => n.endsWith('.incomplete')) : [];
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Waits until a process we know by pid has ended (it may be another's child by then). */
async function ended(pid: number): Promise<void> {
  while (isProcessRunning(pid)) await new Promise((r) => setTimeout(r, 10));
}

/** Waits until occ waits at the held call; fails with the run's output if the run ends first. */
async function reachedWhile(hold: OccHold, running: Promise<CliRun>): Promise<void> {
  await Promise.race([
    hold.reached(),
    running.then((run) => {
      throw new Error(`the run ended before occ was reached: ${explain(run)}`);
    }),
  ]);
}

/**
 * Kills the run with SIGKILL once occ waits at the held call, and says when that happened.
 * If the run ends before (a failure), the hold is released so nothing waits forever.
 */
function killWhenHeld(hold: OccHold): {
  onSpawn: (run: ChildProcess) => void;
  killed: () => Promise<number>;
} {
  let killed: Promise<number> = Promise.resolve(-1);
  return {
    onSpawn: (run) => {
      const exited = new Promise<number>((r) => run.once('exit', () => r(-1)));
      killed = Promise.race([hold.reached(), exited]).then((occPid) => {
        if (occPid > 0) run.kill('SIGKILL');
        return occPid;
      });
    },
    killed: () => killed,
  };
}

describe.each(['local', 'ssh'] as const)(
  'the action main step killed while occ switches maintenance mode on (%s)',
  (transport) => {
    it('leaves the intent in its state: the post step finds maintenance mode on and switches it off, and removes the incomplete backup', async () => {
      const instance = await sample();
      const hold = holdOccAt(instance, 'maintenance:mode --on');
      const dir = freshDir('runner');
      const inputs = {
        ...(transport === 'ssh' ? sshInputs() : {}),
        'owncloud-dir': instance.installDir,
      };
      const backupDir = join(dir, 'runner-temp', 'owncloud-backup');
      const killer = killWhenHeld(hold);
      try {
        const main = await runActionStep('main', {
          inputs,
          workDir: dir,
          secrets: [],
          onSpawn: killer.onSpawn,
        });
        const occPid = await killer.killed();
        expect(occPid, explain(main)).toBeGreaterThan(0);
        expect(main.signal).toBe('SIGKILL');
        // occ switched it on; the main step died before it heard back.
        hold.release();
        await ended(occPid);
        expect(instance.readConfig().maintenance).toBe(true);
        expect(incompleteIn(backupDir)).toHaveLength(1);

        const post = await runActionStep('post', {
          inputs,
          workDir: dir,
          state: main.state,
          secrets: [],
        });
        expect(post.exitCode, explain(post)).toBe(0);
        expect(post.stdout).toContain(
          '::warning::The main step was stopped while switching maintenance mode on (cancelled or killed): checking its state.',
        );
        expect(post.stdout).toContain('Maintenance mode switched off again (its prior state).');
        expect(instance.readConfig().maintenance).toBe(false);
        // The occ log: main's --on, then the post step's check and --off, as the owner.
        const calls = instance.occCalls().map((c) => `${c.user} ${c.args.join(' ')}`);
        expect(calls.slice(-3)).toEqual([
          'www-data maintenance:mode',
          'www-data maintenance:mode --off',
          'www-data maintenance:mode',
        ]);
        expect(occSwitches(instance)).toEqual([
          'www-data maintenance:mode --on',
          'www-data maintenance:mode --off',
        ]);
        expect(instance.occCalls().at(-2)).toMatchObject({
          maintenanceBefore: true,
          maintenanceAfter: false,
          exit: 0,
        });
        // The post step removed the incomplete backup (config.php in it) the main step left.
        const incomplete = join(backupDir, readdirSync(backupDir)[0] ?? '');
        expect(post.stdout).toMatch(
          new RegExp(
            `Removed the incomplete backup the main step left: ${escape(main.state['incomplete-dir'] ?? '(none saved)')} \\([\\d.]+ (B|KiB|MiB)\\)\\.`,
          ),
        );
        expect(incompleteIn(backupDir), incomplete).toEqual([]);
      } finally {
        hold.release();
      }
    });
  },
);

describe('the action main step killed after sending maintenance:mode --on, which never took effect', () => {
  it('leaves the intent: the post step finds maintenance mode off, as before, and changes nothing', async () => {
    const instance = await sample();
    const hold = holdOccAt(instance, 'before maintenance:mode --on');
    const dir = freshDir('runner');
    const inputs = { 'owncloud-dir': instance.installDir };
    const killer = killWhenHeld(hold);
    try {
      const main = await runActionStep('main', {
        inputs,
        workDir: dir,
        secrets: [],
        onSpawn: killer.onSpawn,
      });
      const occPid = await killer.killed();
      expect(occPid, explain(main)).toBeGreaterThan(0);
      expect(main.signal).toBe('SIGKILL');
      // occ dies too before it does anything (the server went down, say).
      process.kill(occPid, 'SIGKILL');
      await ended(occPid);
      expect(instance.readConfig().maintenance).toBe(false);

      const post = await runActionStep('post', {
        inputs,
        workDir: dir,
        state: main.state,
        secrets: [],
      });
      expect(post.exitCode, explain(post)).toBe(0);
      expect(post.stdout).toContain(
        '::warning::The main step was stopped while switching maintenance mode on (cancelled or killed): checking its state.',
      );
      expect(post.stdout).toContain(
        'Maintenance mode is off, as it was before the backup: nothing to restore.',
      );
      expect(instance.readConfig().maintenance).toBe(false);
      // The post step only asked; nobody switched anything.
      expect(instance.occCalls().map((c) => c.args.join(' '))).toEqual([
        'maintenance:mode',
        'maintenance:mode',
      ]);
    } finally {
      hold.release();
    }
  });
});

describe('two runs at once', () => {
  it('a second run into the same backup-dir fails at once, naming the first (local)', async () => {
    const [first, second] = [await sample(), await sample()];
    const backupDir = freshDir('shared backups');
    const hold = holdOccAt(first, 'maintenance:mode');
    let firstPid = 0;
    try {
      const running = runBackupCli(
        ['--owncloud-dir', first.installDir, '--backup-dir', backupDir],
        {
          secrets: [],
          onSpawn: (run) => (firstPid = run.pid!),
        },
      );
      await reachedWhile(hold, running);
      // The first run waits inside its backup; the second must not wait for it.
      const other = await runBackupCli(
        ['--owncloud-dir', second.installDir, '--backup-dir', backupDir],
        { secrets: [] },
      );
      expect(other.exitCode, explain(other)).toBe(1);
      expect(errorLine(other)).toMatch(
        new RegExp(
          `^owncloud-backup: error: Another backup is running with backup-dir '${escape(backupDir)}' \\(owncloud-backup pid ${firstPid} on ${escape(hostname())}, started \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\)\\. Wait for it to finish, or choose another backup-dir\\.$`,
        ),
      );
      expect(second.occCalls()).toEqual([]);
      hold.release();
      const done = await running;
      expect(done.exitCode, explain(done)).toBe(0);
      expect(readdirSync(backupDir).filter((n) => n.startsWith('owncloud-backup-'))).toHaveLength(
        1,
      );
    } finally {
      hold.release();
    }
  });

  it('a second run against the same instance fails at once, naming the first (over SSH)', async () => {
    const instance = await sample();
    const hold = holdOccAt(instance, 'maintenance:mode');
    let firstPid = 0;
    try {
      const running = runBackupCli(
        [...sshArgs(), '--owncloud-dir', instance.installDir, '--backup-dir', freshDir('a')],
        { secrets: [], onSpawn: (run) => (firstPid = run.pid!) },
      );
      await reachedWhile(hold, running);
      const other = await runBackupCli(
        [...sshArgs(), '--owncloud-dir', instance.installDir, '--backup-dir', freshDir('b')],
        { secrets: [] },
      );
      expect(other.exitCode, explain(other)).toBe(1);
      expect(errorLine(other)).toMatch(
        new RegExp(
          `^owncloud-backup: error: Another backup of the instance in ${escape(instance.installDir)} on root@${escape(sshd.host)}:${sshd.port} is running \\(owncloud-backup pid ${firstPid} on ${escape(hostname())}, started \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\)\\. Wait for it to finish\\.$`,
        ),
      );
      hold.release();
      const done = await running;
      expect(done.exitCode, explain(done)).toBe(0);
      // Only the first run switched maintenance mode, once on and once off.
      expect(occSwitches(instance)).toEqual([
        'www-data maintenance:mode --on',
        'www-data maintenance:mode --off',
      ]);
    } finally {
      hold.release();
    }
  });
});

describe('a host without flock', () => {
  it('is refused before anything is touched, naming what to install', async () => {
    // Every program the backup uses on the host, but not flock.
    const bin = freshDir('host-bin-without-flock');
    for (const tool of [
      'sh',
      'id',
      'stat',
      'test',
      'php',
      'sqlite3',
      'du',
      'runuser',
      'tar',
      'mktemp',
    ])
      symlinkSync(execFileSync('which', [tool], { encoding: 'utf8' }).trim(), join(bin, tool));
    const limited = await startSshd({ sessionPath: bin });
    try {
      const instance = await sample();
      const backupDir = freshDir('backups');
      const run = await runBackupCli(
        [
          '--host',
          limited.host,
          '--port',
          String(limited.port),
          '--ssh-key-file',
          limited.privateKeyPath,
          '--known-hosts-file',
          limited.knownHostsPath,
          '--owncloud-dir',
          instance.installDir,
          '--backup-dir',
          backupDir,
        ],
        { secrets: [] },
      );
      expect(run.exitCode, explain(run)).toBe(1);
      expect(errorLine(run)).toBe(
        `owncloud-backup: error: root@${limited.host}:${limited.port} lacks flock (util-linux), which keeps two backups from overlapping: install it there.`,
      );
      expect(instance.occCalls()).toEqual([]);
      expect(readdirSync(backupDir)).toEqual([]);
    } finally {
      await limited.stop();
    }
  });
});

describe('after a run killed with SIGKILL', () => {
  it('the next run removes the incomplete backup it left, saying so with its size', async () => {
    const instance = await sample();
    const backupDir = freshDir('backups');
    const hold = holdOccAt(instance, 'maintenance:mode');
    const killer = killWhenHeld(hold);
    try {
      const killed = await runBackupCli(
        ['--owncloud-dir', instance.installDir, '--backup-dir', backupDir],
        { secrets: [], onSpawn: killer.onSpawn },
      );
      const occPid = await killer.killed();
      expect(occPid, explain(killed)).toBeGreaterThan(0);
      expect(killed.signal).toBe('SIGKILL');
      hold.release();
      await ended(occPid);
      const [stale] = incompleteIn(backupDir);
      expect(stale).toBeDefined();
      const stalePath = join(backupDir, stale!);
      // It holds the base archive, written before the window.
      expect(readdirSync(stalePath).some((n) => /^owncloud-files_\d{8}\.tar\.zst$/.test(n))).toBe(
        true,
      );
      const bytes = Number(
        execFileSync('du', ['-s', '-x', '--bytes', '--', stalePath], { encoding: 'utf8' }).split(
          '\t',
        )[0],
      );

      const next = await runBackupCli(
        ['--owncloud-dir', instance.installDir, '--backup-dir', backupDir],
        { secrets: [] },
      );
      expect(next.exitCode, explain(next)).toBe(0);
      expect(next.stderr).toContain(
        `warning: Removed an incomplete backup an interrupted run left behind: ${stalePath} (${formatBytes(bytes)}).`,
      );
      expect(incompleteIn(backupDir)).toEqual([]);
      expect(readdirSync(backupDir)).toHaveLength(1);
    } finally {
      hold.release();
    }
  });

  it('no tar it started keeps running', async () => {
    // Enough data that the base pass is under way when the test looks.
    const instance = await sample({ bulk: { files: 300, bytes: 150 * 1024 * 1024 } });
    const backupDir = freshDir('backups');
    const stopped: { pid: number; argv: string }[] = [];
    try {
      const run = await runBackupCli(
        ['--owncloud-dir', instance.installDir, '--backup-dir', backupDir],
        {
          secrets: [],
          onSpawn: (cli) => {
            const tree = new ProcessTree(cli.pid);
            void (async () => {
              // The run's own tar processes, reading the instance's files.
              for (;;) {
                const copying = tree
                  .list()
                  .filter((p) => isReadingTar(p.argv))
                  .map((p) => p.pid);
                if (copying.length > 0 || cli.exitCode !== null) {
                  // Frozen, so that none can finish its copy and end by itself.
                  for (const pid of copying) {
                    process.kill(pid, 'SIGSTOP');
                    stopped.push({ pid, argv: argvOf(pid).join(' ') });
                  }
                  cli.kill('SIGKILL');
                  return;
                }
                await new Promise((r) => setTimeout(r, 2));
              }
            })();
          },
        },
      );
      expect(run.signal, explain(run)).toBe('SIGKILL');
      expect(stopped.length, explain(run)).toBeGreaterThan(0);
      // They end with the run, not whenever their copy would have.
      const deadline = Date.now() + 20_000;
      while (stopped.some((p) => alive(p)) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      expect(stopped.filter((p) => alive(p)).map((p) => p.argv)).toEqual([]);
    } finally {
      for (const p of stopped) if (alive(p)) process.kill(p.pid, 'SIGKILL');
    }
  });
});

/** The process and its descendants, from /proc/PID/task/TID/children (this test's tree only). */

function argvOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0$/, '').split('\0');
  } catch {
    return [];
  }
}

function isReadingTar(argv: string[]): boolean {
  return (
    argv[0]?.split('/').pop() === 'tar' &&
    argv.includes('--create') &&
    argv.some(
      (a) => a.startsWith('--listed-incremental=') && a.includes('owncloud-backup-snapshot.'),
    )
  );
}

/** Still running, and still the same program (pids are reused). */
function alive(process: { pid: number; argv: string }): boolean {
  return isProcessRunning(process.pid) && argvOf(process.pid).join(' ') === process.argv;
}

describe('a full disk on the runner', () => {
  it.each([
    // Inside the window the dump and the delta archive are written side by side: either
    // may be the one that finds the disk full (the base archive is written by the same code).
    [
      'the dump or the delta archive',
      'maintenance:mode --on',
      '(owncloud-dbbackup_\\d{8}\\.bak\\.zst|owncloud-files-delta_\\d{8}\\.tar\\.zst)',
    ],
  ])(
    'while writing %s is reported as such, with the path and the free space, and maintenance mode is restored',
    async (_what, fillAt, written) => {
      const instance = await sample();
      const small = join(instance.root, 'small disk');
      mkdirSync(small);
      // Room for the preflight's estimate (the archives, a margin for the dump).
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=80m', 'tmpfs', small]);
      const hold = holdOccAt(instance, fillAt);
      try {
        const running = runBackupCli(
          ['--owncloud-dir', instance.installDir, '--backup-dir', small],
          {
            secrets: [],
          },
        );
        await reachedWhile(hold, running);
        // The base archive is written; now the disk fills up (another job on the runner, say).
        const stats = statfsSync(small);
        execFileSync('fallocate', [
          '-l',
          String(stats.bavail * stats.bsize),
          join(small, 'filler'),
        ]);
        hold.release();
        const run = await running;
        expect(run.exitCode, explain(run)).toBe(1);
        expect(errorLine(run)).toMatch(
          new RegExp(
            `^owncloud-backup: error: No space left on device writing ${escape(small)}/owncloud-backup-\\d{8}-\\d{6}\\.incomplete/${written} \\(\\d+ bytes free\\)\\.$`,
          ),
        );
        expect(run.stderr).not.toMatch(/exit 141/);
        expect(instance.readConfig().maintenance).toBe(false);
        expect(occSwitches(instance)).toEqual([
          'www-data maintenance:mode --on',
          'www-data maintenance:mode --off',
        ]);
        expect(readdirSync(small)).toEqual(['filler']);
      } finally {
        hold.release();
        execFileSync('umount', [small]);
      }
    },
  );
});

describe('the backup directory', () => {
  it('under /proc, where mkdir answers ENOENT, is refused as a usage error', async () => {
    const target = `/proc/ocb-not-here-${process.pid}/backups`;
    let guard: NodeJS.Timeout | undefined;
    const run = await runBackupCli(['--owncloud-dir', '/nonexistent', '--backup-dir', target], {
      secrets: [],
      // The unfixed tool loops forever: end it so that the test fails instead of hanging.
      onSpawn: (cli) => (guard = setTimeout(() => cli.kill('SIGKILL'), 60_000)),
    });
    clearTimeout(guard);
    expect(run.exitCode, explain(run)).toBe(2);
    expect(errorLine(run)).toBe(
      `owncloud-backup: error: backup-dir '${target}': '/proc' is on a pseudo file system (proc), where no backup can be written. Choose a directory on a normal file system.`,
    );
  });

  it('that is a file is refused as a usage error naming it', async () => {
    const file = join(freshDir('file'), 'not a dir');
    writeFileSync(file, 'x');
    const instance = await sample();
    const run = await runBackupCli(['--owncloud-dir', instance.installDir, '--backup-dir', file], {
      secrets: [],
    });
    expect(run.exitCode, explain(run)).toBe(2);
    expect(errorLine(run)).toBe(
      `owncloud-backup: error: backup-dir '${file}' is a file, not a directory. Choose a directory.`,
    );
    expect(instance.occCalls()).toEqual([]);
  });

  it.each(['.', 'relative/backups'])(
    "'%s' is taken relative to the working directory",
    async (given) => {
      const cwd = freshDir('cwd');
      const instance = await sample();
      const run = await runBackupCli(
        ['--owncloud-dir', instance.installDir, '--backup-dir', given],
        {
          secrets: [],
          cwd,
        },
      );
      expect(run.exitCode, explain(run)).toBe(0);
      const where = join(cwd, given);
      const [made] = readdirSync(where);
      expect(made).toMatch(/^owncloud-backup-\d{8}-\d{6}$/);
      expect(run.stdout).toContain(`Backup complete: ${join(where, made!)}\n`);
    },
  );
});
