// The pure pieces behind "secrets stay put, messages stay safe, long steps say how far they
// got": which environment a child gets, how config.php failures and values are worded, how
// rsync's and tar's progress is read, and how often a progress line goes out.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { childEnvironment, isSecretVariable } from '../../src/host/environment.ts';
import { runProcess } from '../../src/host/process.ts';
import { invalidConfigValue } from '../../src/instance.ts';
import {
  DEFAULT_PROGRESS_SECONDS,
  formatProgress,
  progressSecondsFrom,
  ProgressThrottle,
  StepProgress,
} from '../../src/progress.ts';
import { configReadFailure } from '../../src/steps/discover.ts';
import { streamFiles, type FileSet } from '../../src/steps/files.ts';
import { LocalHost } from '../../src/host/local.ts';

/** A clock the test moves by hand (milliseconds). */
function manualClock(start = 1000) {
  let now = start;
  return { now: () => now, advance: (seconds: number) => (now += seconds * 1000) };
}

describe('the environment of every child process', () => {
  const runner = {
    PATH: '/usr/local/bin:/usr/bin:/bin',
    HOME: '/home/runner',
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    TZ: 'UTC',
    USER: 'runner',
    RUNNER_TEMP: '/home/runner/work/_temp',
    GITHUB_WORKSPACE: '/home/runner/work/repo',
    GITHUB_ACTIONS: 'true',
    'INPUT_DB-PASSWORD': 'secret-1',
    'INPUT_SSH-KEY': 'secret-2',
    INPUT_HOST: 'cloud.example.com',
    OWNCLOUD_BACKUP_DB_PASSWORD: 'secret-3',
    OWNCLOUD_BACKUP_SSH_KEY: 'secret-4',
    ACTIONS_RUNTIME_TOKEN: 'secret-5',
    ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'secret-6',
    ACTIONS_ID_TOKEN_REQUEST_URL: 'secret-7',
    ACTIONS_RESULTS_URL: 'secret-8',
    GITHUB_TOKEN: 'secret-9',
    GH_TOKEN: 'secret-10',
    NPM_TOKEN: 'secret-11',
    AWS_SECRET_ACCESS_KEY: 'secret-12',
    MYSQL_PWD: 'secret-13',
    PGPASSWORD: 'secret-14',
    SSH_AUTH_SOCK: '/tmp/agent.sock',
    STATE_maintenance: 'secret-15',
  };

  it("keeps what programs need and drops the tool's inputs, the runner's tokens and any password variable", () => {
    expect(childEnvironment(runner)).toEqual({
      PATH: runner.PATH,
      HOME: runner.HOME,
      LANG: runner.LANG,
      LC_ALL: runner.LC_ALL,
      TZ: runner.TZ,
      USER: runner.USER,
      RUNNER_TEMP: runner.RUNNER_TEMP,
      GITHUB_WORKSPACE: runner.GITHUB_WORKSPACE,
      GITHUB_ACTIONS: 'true',
    });
  });

  it('sets what a command asks for on top', () => {
    expect(childEnvironment(runner, { LC_ALL: 'C' })).toMatchObject({
      LC_ALL: 'C',
      PATH: runner.PATH,
    });
  });

  it('names a secret variable whatever its case', () => {
    for (const name of ['input_db-password', 'Owncloud_Backup_Ssh_Key', 'my_api_key', 'Db_Passwd'])
      expect(isSecretVariable(name), name).toBe(true);
    for (const name of ['PATH', 'PWD', 'OLDPWD', 'HOSTNAME', 'LC_CTYPE', 'TMPDIR'])
      expect(isSecretVariable(name), name).toBe(false);
  });

  describe('as a real command sees it', () => {
    const added = ['INPUT_DB-PASSWORD', 'OWNCLOUD_BACKUP_DB_PASSWORD', 'GITHUB_TOKEN'];
    afterEach(() => {
      for (const name of added) delete process.env[name];
    });

    it('holds none of the secrets this process was given', async () => {
      for (const name of added) process.env[name] = `value of ${name}`;
      const result = await runProcess(['env'], { env: { LC_ALL: 'C' } });
      expect(result.exitCode).toBe(0);
      const names = result.stdout.split('\n').map((line) => line.split('=')[0]);
      for (const name of added) expect(names).not.toContain(name);
      expect(result.stdout).not.toContain('value of');
      expect(names).toContain('PATH');
      expect(result.stdout).toContain('\nLC_ALL=C\n');
    });
  });
});

describe("config.php's values", () => {
  it('names the key that holds a NUL byte', () => {
    expect(invalidConfigValue({ dbname: 'own\0cloud' })).toBe(
      "config.php's 'dbname' contains a NUL byte, which no program accepts: fix the value in config.php.",
    );
    for (const key of [
      'datadirectory',
      'dbhost',
      'dbuser',
      'dbpassword',
      'dbtableprefix',
      'theme',
    ] as const)
      expect(invalidConfigValue({ dbname: 'owncloud', [key]: 'a\0b' })).toContain(`'${key}'`);
  });

  it('accepts ordinary values, and values it does not use', () => {
    expect(
      invalidConfigValue({
        datadirectory: '/var/www/owncloud/data',
        dbhost: 'localhost:/run/mysqld/mysqld.sock',
        dbname: 'owncloud',
        dbuser: 'oc',
        dbpassword: `p'a"s$s \\ é`,
        dbtableprefix: 'oc_',
        theme: '',
        installed: true,
        maintenance: false,
      }),
    ).toBeUndefined();
  });
});

describe("reading config.php: the script's own failure report", () => {
  const file = '/var/www/owncloud/config/config.php';
  const report = (failure: Record<string, unknown>) => JSON.stringify({ failure });

  it('says file and line of a syntax error, and nothing of what PHP read there', () => {
    expect(
      configReadFailure(report({ kind: 'syntax', file, line: 7, class: '' }), 'www-data'),
    ).toBe(`${file} has a PHP syntax error on line 7: fix it (php -l ${file} shows where).`);
  });

  it('words the other failures by kind', () => {
    expect(configReadFailure(report({ kind: 'unreadable', file }), 'www-data')).toBe(
      `${file} cannot be read by www-data (who runs occ): check its owner and mode.`,
    );
    expect(configReadFailure(report({ kind: 'no-config', file }), 'www-data')).toBe(
      `${file} does not define a $CONFIG array: is it an ownCloud config file?`,
    );
    expect(configReadFailure(report({ kind: 'fatal', file, line: 2 }), 'www-data')).toBe(
      `${file} stops PHP with a fatal error on line 2 when loaded.`,
    );
    expect(
      configReadFailure(report({ kind: 'error', file, line: 3, class: 'TypeError' }), 'www-data'),
    ).toBe(`${file} stops with a PHP TypeError on line 3 when loaded.`);
    // A class name is a PHP identifier; anything else is not repeated.
    expect(
      configReadFailure(report({ kind: 'error', file, line: 3, class: 'x "pw"' }), 'www-data'),
    ).toBe(`${file} stops with a PHP error on line 3 when loaded.`);
  });

  it('is not taken for one when stdout is something else', () => {
    expect(configReadFailure('PHP Parse error: unexpected identifier "word"', 'w')).toBeUndefined();
    expect(configReadFailure('{"dbname":"x"}', 'w')).toBeUndefined();
    expect(configReadFailure(report({ kind: 'other', file }), 'w')).toBeUndefined();
  });
});

// What rsync 3.2 prints with --stats --info=progress2 (LC_ALL=C) for four files.
describe('a failing tar on the host', () => {
  it("is explained in tar's own words, and leaves no partial archive", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'archive-unit-'));
    try {
      const path = join(dir, 'files.tar.gz');
      const fileSet = {
        parts: [{ source: join(dir, 'missing'), member: 'data', part: 'data', patternRoot: '' }],
        skip: [],
        readAs: [],
        exclude: [],
      } as unknown as FileSet;
      await expect(
        streamFiles(new LocalHost(), fileSet, {
          phase: 'base',
          snapshot: join(dir, 'snapshot'),
          path,
          compression: 'gzip',
          signal: new AbortController().signal,
        }),
      ).rejects.toThrow(
        /^Reading the files on this machine \(.*\) failed \(tar exit 2\): tar: .*missing: Cannot stat: No such file or directory/,
      );
      expect(existsSync(path)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the pace of progress lines', () => {
  it('lets one line through per interval, however often the tool reports', () => {
    const clock = manualClock();
    const throttle = new ProgressThrottle(10, clock.now);
    const due: number[] = [];
    for (let tenth = 1; tenth <= 350; tenth++) {
      clock.advance(0.1);
      if (throttle.due()) due.push(tenth / 10);
    }
    expect(due).toEqual([10, 20, 30]);
  });

  it('lets every update through with an interval of 0', () => {
    const clock = manualClock();
    const throttle = new ProgressThrottle(0, clock.now);
    expect([throttle.due(), throttle.due(), throttle.due()]).toEqual([true, true, true]);
  });

  it('reads the interval from OWNCLOUD_BACKUP_PROGRESS_SECONDS', () => {
    expect(progressSecondsFrom({})).toBe(DEFAULT_PROGRESS_SECONDS);
    expect(progressSecondsFrom({ OWNCLOUD_BACKUP_PROGRESS_SECONDS: '' })).toBe(10);
    expect(progressSecondsFrom({ OWNCLOUD_BACKUP_PROGRESS_SECONDS: '30' })).toBe(30);
    expect(progressSecondsFrom({ OWNCLOUD_BACKUP_PROGRESS_SECONDS: '0.5' })).toBe(0.5);
    for (const bad of ['-1', 'soon', '1e3', '10s'])
      expect(() => progressSecondsFrom({ OWNCLOUD_BACKUP_PROGRESS_SECONDS: bad })).toThrow(
        `OWNCLOUD_BACKUP_PROGRESS_SECONDS must be a number of seconds between progress lines (e.g. 10), got '${bad}'.`,
      );
  });
});

describe('a progress line', () => {
  it('says bytes against the estimate, files, rate and time left', () => {
    expect(formatProgress('Bulk copy', { bytes: 1024 ** 3, files: 12345 }, 10, 3 * 1024 ** 3)).toBe(
      'Bulk copy: 1.0 GiB of about 3.0 GiB (33 %), 12,345 files, 102.4 MiB/s, about 20.0 s left',
    );
  });

  it('caps the percentage at 100 and leaves out the time once the estimate is reached', () => {
    expect(formatProgress('Archive', { bytes: 2048 }, 1, 1024)).toBe(
      'Archive: 2.0 KiB of about 1.0 KiB (100 %), 2.0 KiB/s',
    );
  });

  it('has no estimate when none is known', () => {
    expect(formatProgress('Copy', { bytes: 0 }, 0)).toBe('Copy: 0 B, 0 B/s');
  });
});

describe('the progress of a step of several runs', () => {
  function step(intervalSeconds: number, expectedBytes = 1000) {
    const clock = manualClock();
    const lines: string[] = [];
    const progress = new StepProgress('Copy', {
      intervalSeconds,
      now: clock.now,
      emit: (line) => lines.push(line),
      expectedBytes,
    });
    return { clock, lines, progress };
  }

  it('adds the runs up, never goes down, and ends at the totals', () => {
    const { clock, lines, progress } = step(10);
    clock.advance(10);
    progress.update({ bytes: 100, files: 1 });
    clock.advance(10);
    progress.update({ bytes: 90, files: 1 }); // a run's counts never go back
    progress.endRun({ bytes: 200, files: 2 });
    clock.advance(10);
    progress.update({ bytes: 300, files: 5 });
    progress.endRun({ bytes: 400, files: 6 });
    progress.finish();
    expect(lines).toEqual([
      'Copy: 100 B of about 1000 B (10 %), 1 file, 10 B/s, about 1 min 30 s left',
      'Copy: 100 B of about 1000 B (10 %), 1 file, 5 B/s, about 3 min 00 s left',
      'Copy: 500 B of about 1000 B (50 %), 7 files, 17 B/s, about 30.0 s left',
      'Copy: 600 B of about 1000 B (60 %), 8 files, 20 B/s, about 20.0 s left',
    ]);
    expect(progress.total()).toEqual({ bytes: 600, files: 8 });
  });

  it('says nothing for a step shorter than the interval', () => {
    const { clock, lines, progress } = step(10);
    clock.advance(3);
    progress.update({ bytes: 500, files: 3 });
    progress.endRun({ bytes: 1000, files: 4 });
    progress.finish();
    expect(lines).toEqual([]);
  });

  it('does not repeat the last line when it showed the totals already', () => {
    const { clock, lines, progress } = step(0);
    clock.advance(1);
    progress.update({ bytes: 1000 });
    progress.finish();
    expect(lines).toEqual(['Copy: 1000 B of about 1000 B (100 %), 1000 B/s']);
  });
});
