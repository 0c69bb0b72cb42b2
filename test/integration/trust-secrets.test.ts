// Secrets stay where they belong, and messages and logs say what is safe and useful:
// no process the tool starts (occ as the web server's user, ssh, rsync, tar, the dump, the
// sessions under the test's sshd) inherits a secret-bearing environment variable; a broken
// config.php is reported by file and line, never by PHP's message (which quotes the
// password); a NUL byte in a config.php value is named by its key; the long steps report
// their progress at the pace asked for, with numbers that add up.
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMariaDb, type MariaDbServer } from '../harness/mariadb.ts';
import { makeScratchDir } from '../harness/scratch.ts';
import { startSshd, type SshServer } from '../harness/sshd.ts';
import { renderConfigPhp, type SampleInstance, type SampleOptions } from '../sample/instance.ts';
import { runActionStep } from '../support/action-runner.ts';
import { CLI, holdDumpLock, runBackupCli, type WatchedRun } from '../support/backup-run.ts';
import { watchEnvironments, type EnvironSighting } from '../support/environ-watch.ts';
import { sampleOn, type Engine } from '../support/instances.ts';
import { finishedBackup } from '../support/restore.ts';
import { explain, errorLine } from '../support/cli-checks.ts';

const MAIN_BUNDLE = resolve(import.meta.dirname, '..', '..', 'dist', 'main', 'index.js');

let mariadb: MariaDbServer;
let sshd: SshServer;
const scratch = makeScratchDir('trust-secrets-test');
// occ runs as the instance's owner, who must be able to reach the instance.
chmodSync(scratch.path, 0o755);
let counter = 0;

beforeAll(async () => {
  [mariadb, sshd] = await Promise.all([startMariaDb(), startSshd()]);
});
afterAll(async () => {
  await Promise.all([mariadb?.stop(), sshd?.stop()]);
  scratch.remove();
});

function sample(
  engine: Exclude<Engine, 'pgsql'>,
  options: Partial<SampleOptions> = {},
): Promise<SampleInstance> {
  // No PostgreSQL here: these instances are on MariaDB or SQLite.
  const servers = { mariadb, postgres: undefined as never };
  return sampleOn(engine, servers, scratch.path, counter++, options);
}

function backupDirFor(instance: SampleInstance): string {
  const dir = join(instance.root, 'backups');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * Makes every PHP run as the owner last a moment, so that the watcher reads the environment
 * of each one however busy the machine is: occ through a wrapper that sleeps, then runs the
 * stand-in; the reading of config.php through one more config file (ownCloud merges
 * config/*.config.php) that sleeps.
 */
function slowPhp(instance: SampleInstance): void {
  const occ = join(instance.installDir, 'occ');
  renameSync(occ, join(instance.installDir, 'occ-stand-in.php'));
  writeFileSync(occ, "<?php\nusleep(300000);\nrequire __DIR__ . '/occ-stand-in.php';\n");
  writeFileSync(
    join(instance.installDir, 'config', 'slow.config.php'),
    '<?php\nusleep(300000);\n$CONFIG = [];\n',
  );
}

const program = (s: EnvironSighting) => s.argv[0]?.split('/').pop() ?? '';

describe.each([
  ['the command line', 'local'],
  ['the command line', 'ssh'],
  ['the action', 'local'],
  ['the action', 'ssh'],
] as const)('a MariaDB backup through %s (%s)', (entry, transport) => {
  it('leaves no secret in the environment of any process it starts, occ as www-data among them', async () => {
    // Enough data that rsync and tar run for a while.
    const instance = await sample('mysql', { bulk: { files: 40, bytes: 32 * 1024 * 1024 } });
    slowPhp(instance);
    const backupDir = backupDirFor(instance);
    const password = instance.dbPassword;
    // The runner's own tokens: no child has any business with them either.
    const tokens = {
      ACTIONS_RUNTIME_TOKEN: `runtime-${randomBytes(12).toString('hex')}`,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: `oidc-${randomBytes(12).toString('hex')}`,
      ACTIONS_ID_TOKEN_REQUEST_URL: `https://oidc.invalid/${randomBytes(12).toString('hex')}`,
      GITHUB_TOKEN: `ghs_${randomBytes(12).toString('hex')}`,
    };
    const keyLines = sshd.privateKey
      .split('\n')
      .filter((line) => line.length >= 16 && !line.startsWith('-----'));
    const secrets: Record<string, string> = {
      'the database password': password,
      'part of the database password': /pw ([0-9a-f]{12}) /.exec(password)![1]!,
      ...tokens,
      ...(transport === 'ssh'
        ? {
            'the SSH key': sshd.privateKey.trim(),
            ...Object.fromEntries(
              keyLines.map((line, i) => [`line ${i + 1} of the SSH key`, line]),
            ),
          }
        : {}),
    };

    const lock = await holdDumpLock(instance, { socket: mariadb.socket });
    let released: Promise<void> | undefined;
    const toolEnvironments: string[] = [];
    const isTool = (s: EnvironSighting) => {
      const tool = s.argv[1] === CLI || s.argv[1] === MAIN_BUNDLE;
      if (tool) toolEnvironments.push(readFileSync(`/proc/${s.pid}/environ`, 'utf8'));
      return tool;
    };
    const watch = watchEnvironments({
      secrets,
      isTool: (s) => {
        try {
          return isTool(s);
        } catch {
          return true; // it ended while being looked at
        }
      },
      // The dump waits on the lock until its environment was read.
      onSighting: (s) => {
        if (/^(mysqldump|mariadb-dump)$/.test(program(s))) released ??= lock.release();
      },
    });

    let run: WatchedRun;
    try {
      if (entry === 'the command line') {
        run = await runBackupCli(
          [
            '--owncloud-dir',
            instance.installDir,
            '--backup-dir',
            backupDir,
            ...(transport === 'ssh'
              ? [
                  '--host',
                  sshd.host,
                  '--port',
                  String(sshd.port),
                  '--known-hosts-file',
                  sshd.knownHostsPath,
                ]
              : []),
          ],
          {
            secrets: [password],
            env: {
              ...tokens,
              OWNCLOUD_BACKUP_DB_PASSWORD: password,
              ...(transport === 'ssh' ? { OWNCLOUD_BACKUP_SSH_KEY: sshd.privateKey } : {}),
            },
          },
        );
      } else {
        // Not under the instance's hostile name: ssh cannot take a path with a double quote.
        const workDir = join(scratch.path, `runner ${counter++}`);
        run = await runActionStep('main', {
          inputs: {
            'owncloud-dir': instance.installDir,
            'backup-dir': backupDir,
            'db-password': password,
            upload: 'false',
            ...(transport === 'ssh'
              ? {
                  host: sshd.host,
                  port: String(sshd.port),
                  user: 'root',
                  'ssh-key': sshd.privateKey,
                  'known-hosts': sshd.knownHostsLine,
                }
              : {}),
          },
          workDir,
          env: tokens,
          secrets: [password],
        });
      }
    } finally {
      await (released ?? lock.release());
    }
    const report = await watch.stop();
    expect(run.exitCode, explain(run)).toBe(0);
    finishedBackup(backupDir);

    // The watcher would have seen a leak: the tool's own process holds every secret it was given.
    expect(toolEnvironments.length).toBeGreaterThan(0);
    expect(toolEnvironments.some((env) => env.includes(password))).toBe(true);
    expect(report.leaks).toEqual([]);

    // ...and it looked at the processes that matter, as the users they run as.
    const seen = report.seen;
    const occ = seen.filter(
      (s) => program(s) === 'php' && s.argv.includes(join(instance.installDir, 'occ')),
    );
    expect(occ.length, 'occ processes seen').toBeGreaterThan(0);
    expect(occ.every((s) => s.uid === instance.owner.uid)).toBe(true);
    expect(
      seen.some((s) => program(s) === 'php' && s.argv[1] !== join(instance.installDir, 'occ')),
      'the php reading config.php',
    ).toBe(true);
    expect(seen.some((s) => /^(mysqldump|mariadb-dump)$/.test(program(s)))).toBe(true);
    expect(seen.some((s) => program(s) === 'tar')).toBe(true);
    expect(seen.some((s) => program(s) === 'zstd')).toBe(true);
    if (transport === 'ssh') {
      expect(seen.some((s) => program(s) === 'ssh')).toBe(true);
      expect(seen.some((s) => s.argv[0]?.startsWith('sshd'))).toBe(true);
    }
    expect(report.scans).toBeGreaterThan(20);
    expect(report.environsRead).toBeGreaterThan(100);
    instance.remove();
  });
});

describe('a config.php PHP cannot parse', () => {
  it('is reported by file and line, without any fragment of the password', async () => {
    const instance = await sample('sqlite');
    const words = ['zebra7', 'quokka9', 'wombat3', 'platypus5'];
    // A password with a quote that ends the string early: PHP chokes on the next word.
    const password = `${words[0]} '${words[1]} ${words[2]} ${words[3]}`;
    const lines = readFileSync(instance.configPath, 'utf8').split('\n');
    const at = lines.findIndex((line) => line.startsWith('$CONFIG')) + 1;
    lines.splice(at, 0, `  'dbpassword' => '${password}',`);
    writeFileSync(instance.configPath, lines.join('\n'));

    const run = await runBackupCli(
      ['--owncloud-dir', instance.installDir, '--backup-dir', backupDirFor(instance)],
      { secrets: [password] },
    );
    expect(run.exitCode, explain(run)).toBe(1);
    expect(errorLine(run)).toBe(
      `owncloud-backup: error: ${instance.configPath} has a PHP syntax error on line ${at + 1}: fix it (php -l ${instance.configPath} shows where).`,
    );
    for (const word of words) expect(`${run.stdout}${run.stderr}`).not.toContain(word);
    instance.remove();
  });
});

describe('a NUL byte in a config.php value', () => {
  it.each(['datadirectory', 'dbname', 'dbuser', 'dbhost', 'dbpassword', 'dbtableprefix', 'theme'])(
    "is named by its key ('%s'), with a usage error and no stack trace",
    async (key) => {
      // MariaDB: every one of these values is used (a host, a user, a password to deliver).
      const instance = await sample('mysql');
      const config = { ...instance.config };
      config[key] = `${typeof config[key] === 'string' ? config[key] : 'value'}\u0000evil`;
      writeFileSync(instance.configPath, renderConfigPhp(config));
      expect(readFileSync(instance.configPath, 'utf8')).toContain('"\\0"');

      const run = await runBackupCli(
        ['--owncloud-dir', instance.installDir, '--backup-dir', backupDirFor(instance)],
        { secrets: [] },
      );
      expect(run.exitCode, explain(run)).toBe(2);
      expect(errorLine(run)).toBe(
        `owncloud-backup: error: config.php's '${key}' contains a NUL byte, which no program accepts: fix the value in config.php.`,
      );
      expect(run.stderr).not.toMatch(/TypeError|\n\s+at /);
      instance.remove();
    },
  );
});

const BYTES = /^([\d.]+) (B|KiB|MiB|GiB|TiB)$/;
const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

function bytesOf(text: string): number {
  const match = BYTES.exec(text);
  expect(match, text).not.toBeNull();
  return Number(match![1]) * 1024 ** UNITS.indexOf(match![2]!);
}

interface ProgressLine {
  bytes: number;
  bytesText: string;
  expected: number;
  percent: number;
  files?: number;
}

/** The progress lines of one step in the log, parsed. */
function progressLines(stderr: string, label: string): ProgressLine[] {
  return stderr
    .split('\n')
    .map((line) => line.replace(/^\d\d:\d\d:\d\d /, ''))
    .filter((line) => line.startsWith(`${label}: `) && !line.includes(': done in '))
    .map((line) => {
      const match =
        /^[^:]+: (.+?) of about (.+?) \((\d+) %\)(?:, ([\d,]+) files?)?, (.+?)\/s(?:, about .+ left)?$/.exec(
          line,
        );
      expect(match, line).not.toBeNull();
      const [, done, expected, percent, files] = match!;
      return {
        bytes: bytesOf(done!),
        bytesText: done!,
        expected: bytesOf(expected!),
        percent: Number(percent),
        ...(files ? { files: Number(files.replaceAll(',', '')) } : {}),
      };
    });
}

function expectNonDecreasing(values: number[]): void {
  for (let i = 1; i < values.length; i++) expect(values[i]!).toBeGreaterThanOrEqual(values[i - 1]!);
}

describe('progress of the long steps', () => {
  it('reports the files (read on the host into the archive) at the pace asked for, with numbers that end at the totals', async () => {
    const instance = await sample('sqlite', { bulk: { files: 300, bytes: 24 * 1024 * 1024 } });
    const run = await runBackupCli(
      ['--owncloud-dir', instance.installDir, '--backup-dir', backupDirFor(instance)],
      { secrets: [], env: { OWNCLOUD_BACKUP_PROGRESS_SECONDS: '0' } },
    );
    expect(run.exitCode, explain(run)).toBe(0);

    const copy = progressLines(run.stderr, 'Files');
    expect(copy.length, run.stderr).toBeGreaterThan(2);
    expectNonDecreasing(copy.map((l) => l.bytes));
    expectNonDecreasing(copy.map((l) => l.files ?? -1));
    expect(
      copy.every((l) => l.files !== undefined && l.percent <= 100),
      run.stderr,
    ).toBe(true);
    // Against the preflight's estimate (the files' apparent size on the host).
    const estimate = /About (.+?) of files to copy/.exec(run.stderr)![1]!;
    expect(copy.every((l) => l.expected === bytesOf(estimate))).toBe(true);
    // The last line says what the step's summary says.
    const last = copy.at(-1)!;
    const summary = /^\S+ (\d+) files, (.+?) read; owncloud-files_\d{8}\.tar\.zst: /m.exec(
      run.stderr,
    );
    expect(summary, run.stderr).not.toBeNull();
    expect(last.files).toBe(Number(summary![1]));
    expect(last.bytesText).toBe(summary![2]);
    expect(last.files).toBeGreaterThan(300);
    expect(last.percent).toBeGreaterThan(50);

    // One pass: there is no separate archive step any more.
    expect(progressLines(run.stderr, 'Archive')).toEqual([]);

    // The dump has no estimate: bytes and rate, ending at the dump's raw size.
    const dump = run.stderr
      .split('\n')
      .map((line) => /^\S+ Database dump: (\S+ \S+), \S+ \S+\/s$/.exec(line)?.[1])
      .filter((bytes) => bytes !== undefined);
    expect(dump.length, run.stderr).toBeGreaterThan(0);
    expectNonDecreasing(dump.map(bytesOf));
    expect(dump.at(-1)).toBe(/Database dump: (\S+ \S+) raw/.exec(run.stderr)![1]);
    instance.remove();
  });

  it('refuses an interval that is not a number of seconds, naming the variable', async () => {
    const instance = await sample('sqlite');
    const run = await runBackupCli(
      ['--owncloud-dir', instance.installDir, '--backup-dir', backupDirFor(instance)],
      { secrets: [], env: { OWNCLOUD_BACKUP_PROGRESS_SECONDS: 'soon' } },
    );
    expect(run.exitCode, explain(run)).toBe(2);
    expect(errorLine(run)).toBe(
      "owncloud-backup: error: OWNCLOUD_BACKUP_PROGRESS_SECONDS must be a number of seconds between progress lines (e.g. 10), got 'soon'.",
    );
    instance.remove();
  });
});
