// Retention with the real command: after a successful backup, the complete dated backups in
// backup-dir that no keep-* rule keeps are removed (days in UTC, whatever the machine's time
// zone), and nothing else there is touched; a failed backup removes nothing; a backup that
// cannot be removed is a warning naming what remains, not a failed backup.
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeScratchDir } from '../harness/scratch.ts';
import { requireTool } from '../harness/tools.ts';
import type { SampleInstance } from '../sample/instance.ts';
import { runBackupCli } from '../support/backup-run.ts';
import { explain, errorLine } from '../support/cli-checks.ts';
import { sampleOn, type DatabaseServers } from '../support/instances.ts';
import { completeBackups } from '../../src/steps/backup-dir.ts';

const scratch = makeScratchDir('retention');
// occ runs as the instance's owner, who must be able to reach the instance.
chmodSync(scratch.path, 0o755);
let counter = 0;

afterAll(() => scratch.remove());

/** A SQLite instance on this machine: no database server needed. */
function sample(): Promise<SampleInstance> {
  return sampleOn('sqlite', {} as DatabaseServers, scratch.path, counter++);
}

/** A complete backup as a run leaves it: a dated directory holding manifest.json. */
function fakeBackup(backupDir: string, name: string): void {
  mkdirSync(join(backupDir, name));
  writeFileSync(join(backupDir, name, 'manifest.json'), `{"name":"${name}"}\n`);
  writeFileSync(join(backupDir, name, 'owncloud-dbbackup.bak.zst'), 'not a real dump');
}

// Old complete backups (UTC). In Los Angeles, 20200311-010000 falls on 10 March and
// 20200310-010000 on 9 March: a policy read in local time keeps other ones.
const OLD = [
  'owncloud-backup-20200311-130000',
  'owncloud-backup-20200311-010000',
  'owncloud-backup-20200310-010000',
  'owncloud-backup-20200205-010000',
  'owncloud-backup-20200120-010000',
  'owncloud-backup-20191231-235959',
];
const POLICY = ['--keep-last', '1', '--keep-daily', '3', '--keep-monthly', '3'];

/** What is in backup-dir that is not a complete dated backup: retention leaves all of it. */
function unrelatedEntries(backupDir: string, outside: string): string[] {
  writeFileSync(join(backupDir, 'notes.txt'), 'keep me');
  mkdirSync(join(backupDir, 'other-dir'));
  writeFileSync(join(backupDir, 'other-dir', 'manifest.json'), '{}');
  // Dated, but not complete (no manifest.json).
  mkdirSync(join(backupDir, 'owncloud-backup-20190101-000000'));
  writeFileSync(join(backupDir, 'owncloud-backup-20190101-000000', 'half.tar.zst'), '');
  // Dated names that are not directories.
  writeFileSync(join(backupDir, 'owncloud-backup-20190102-000000'), 'a file');
  mkdirSync(join(outside, 'owncloud-backup-20190103-000000'), { recursive: true });
  writeFileSync(join(outside, 'owncloud-backup-20190103-000000', 'manifest.json'), '{}');
  symlinkSync(
    join(outside, 'owncloud-backup-20190103-000000'),
    join(backupDir, 'owncloud-backup-20190103-000000'),
  );
  // A name isBackupName accepts, holding no real date.
  fakeBackup(backupDir, 'owncloud-backup-20191340-000000');
  // Not a name of ours, with a manifest.
  fakeBackup(backupDir, 'owncloud-backup-old');
  fakeBackup(backupDir, 'owncloud-backup-old.incomplete');
  return readdirSync(backupDir).filter((name) => !OLD.includes(name));
}

function chattr(flag: '+i' | '-i', path: string): void {
  const argv = [requireTool('chattr'), flag, path];
  execFileSync(
    process.getuid?.() === 0 ? argv[0]! : 'sudo',
    process.getuid?.() === 0 ? argv.slice(1) : ['-n', ...argv],
  );
}

describe('retention after a backup', () => {
  it('removes exactly the complete backups the policy does not keep, reading days in UTC, and nothing else', async () => {
    const instance = await sample();
    const backupDir = join(instance.root, 'backups');
    const outside = join(instance.root, 'elsewhere');
    mkdirSync(backupDir);
    for (const name of OLD) fakeBackup(backupDir, name);
    const unrelated = unrelatedEntries(backupDir, outside);
    // An incomplete backup a killed run left: the lock-time cleanup removes it, as before.
    mkdirSync(join(backupDir, 'owncloud-backup-20200312-000000.incomplete'));
    // Too old to keep, and cannot be removed: an immutable dump, an immutable manifest.
    fakeBackup(backupDir, 'owncloud-backup-20190601-010000');
    fakeBackup(backupDir, 'owncloud-backup-20190501-010000');
    const stuck = [
      join(backupDir, 'owncloud-backup-20190601-010000', 'owncloud-dbbackup.bak.zst'),
      join(backupDir, 'owncloud-backup-20190501-010000', 'manifest.json'),
    ];
    for (const path of stuck) chattr('+i', path);
    const before = readdirSync(backupDir);
    try {
      const run = await runBackupCli(
        ['--owncloud-dir', instance.installDir, '--backup-dir', backupDir, ...POLICY],
        // Local time far from UTC: the days must still be UTC days.
        { secrets: [], env: { TZ: 'America/Los_Angeles' } },
      );
      expect(run.exitCode, explain(run)).toBe(0);
      const written = readdirSync(backupDir).filter(
        (name) => !before.includes(name) && /^owncloud-backup-\d{8}-\d{6}$/.test(name),
      );
      const [newest] = written as [string];
      expect(readdirSync(backupDir).sort()).toEqual(
        [
          newest,
          'owncloud-backup-20200311-130000', // newest of its UTC day (and month)
          'owncloud-backup-20200310-010000', // newest of 10 March UTC
          'owncloud-backup-20200205-010000', // newest of February
          'owncloud-backup-20190601-010000', // could not be removed (its manifest could)
          'owncloud-backup-20190501-010000', // could not be removed at all
          ...unrelated,
        ].sort(),
      );
      // Unrelated entries are as they were.
      expect(readFileSync(join(backupDir, 'notes.txt'), 'utf8')).toBe('keep me');
      expect(readdirSync(join(backupDir, 'owncloud-backup-20190101-000000'))).toEqual([
        'half.tar.zst',
      ]);
      expect(existsSync(join(outside, 'owncloud-backup-20190103-000000', 'manifest.json'))).toBe(
        true,
      );
      expect(existsSync(join(backupDir, 'owncloud-backup-20191340-000000', 'manifest.json'))).toBe(
        true,
      );

      // Each removal is reported with why it was not kept, then the summary.
      expect(run.stderr).toContain(
        `Removed ${join(backupDir, 'owncloud-backup-20200311-010000')}: not kept (keep-last 1: not one of the 1 newest; keep-daily 3: not the newest of day 2020-03-11 (owncloud-backup-20200311-130000 is); keep-monthly 3: not the newest of month 2020-03 (owncloud-backup-20200311-130000 is)).`,
      );
      for (const name of ['owncloud-backup-20200120-010000', 'owncloud-backup-20191231-235959'])
        expect(run.stderr).toContain(`Removed ${join(backupDir, name)}: not kept (`);
      expect(run.stderr).toMatch(
        /Removed .*owncloud-backup-20200120-010000: not kept \(keep-last 1: not one of the 1 newest; keep-daily 3: day 2020-01-20 is not one of the 3 newest days with backups; keep-monthly 3: month 2020-01 is not one of the 3 newest months with backups\)\./,
      );
      // What stays of a backup that could not be removed is no longer taken for a backup…
      expect(readdirSync(join(backupDir, 'owncloud-backup-20190601-010000'))).toEqual([
        'owncloud-dbbackup.bak.zst',
      ]);
      expect(run.stderr).toContain(
        `warning: Could not remove ${join(backupDir, 'owncloud-backup-20190601-010000')}, which the retention policy does not keep: EPERM. What remains: ${join(backupDir, 'owncloud-backup-20190601-010000')} (without its manifest.json: no longer taken for a backup); remove it by hand.`,
      );
      // … or it is left complete, as it was.
      expect(readdirSync(join(backupDir, 'owncloud-backup-20190501-010000')).sort()).toEqual([
        'manifest.json',
        'owncloud-dbbackup.bak.zst',
      ]);
      expect(run.stderr).toContain(
        `warning: Could not remove ${join(backupDir, 'owncloud-backup-20190501-010000')}, which the retention policy does not keep: EPERM. What remains: ${join(backupDir, 'owncloud-backup-20190501-010000')} (complete, untouched); remove it by hand.`,
      );
      expect(run.stderr).toContain(
        'Retention: kept 4, removed 3; 2 not kept could not be removed.',
      );
      expect(run.stderr).toContain(
        `Removed an incomplete backup an interrupted run left behind: ${join(backupDir, 'owncloud-backup-20200312-000000.incomplete')}`,
      );
      expect(run.stdout).toContain(
        '  retention (keep-last 1, keep-daily 3, keep-monthly 3; UTC): kept 4, removed 3, 2 not kept could not be removed\n' +
          '    removed owncloud-backup-20200311-010000\n' +
          '    removed owncloud-backup-20200120-010000\n' +
          '    removed owncloud-backup-20191231-235959\n' +
          `    not removed (EPERM): ${join(backupDir, 'owncloud-backup-20190601-010000')} (without its manifest.json: no longer taken for a backup)\n` +
          `    not removed (EPERM): ${join(backupDir, 'owncloud-backup-20190501-010000')} (complete, untouched)\n`,
      );
    } finally {
      for (const path of stuck) if (existsSync(path)) chattr('-i', path);
    }
    instance.remove();
  });

  it('removes nothing when the backup fails', async () => {
    const instance = await sample();
    const backupDir = join(instance.root, 'backups');
    mkdirSync(backupDir);
    for (const name of OLD) fakeBackup(backupDir, name);
    unrelatedEntries(backupDir, join(instance.root, 'elsewhere'));
    const before = readdirSync(backupDir).sort();
    // Without config.php the backup fails after its work directory was made.
    const run = await runBackupCli(
      [
        '--owncloud-dir',
        instance.installDir,
        '--backup-dir',
        backupDir,
        '--exclude',
        'config.php',
        '--keep-last',
        '1',
      ],
      { secrets: [] },
    );
    expect(run.exitCode, explain(run)).toBe(1);
    expect(errorLine(run)).toContain('config.php did not arrive in the backup');
    expect(readdirSync(backupDir).sort()).toEqual(before);
    for (const name of OLD) expect(existsSync(join(backupDir, name, 'manifest.json'))).toBe(true);
    expect(run.stderr).not.toContain('Retention');
    expect(run.stderr).not.toContain('Removed');
    instance.remove();
  });

  it('keeps everything without a keep-* option', async () => {
    const instance = await sample();
    const backupDir = join(instance.root, 'backups');
    mkdirSync(backupDir);
    for (const name of OLD) fakeBackup(backupDir, name);
    const run = await runBackupCli(
      ['--owncloud-dir', instance.installDir, '--backup-dir', backupDir],
      { secrets: [] },
    );
    expect(run.exitCode, explain(run)).toBe(0);
    expect(readdirSync(backupDir)).toHaveLength(OLD.length + 1);
    expect(run.stderr).not.toContain('Retention');
    expect(run.stdout).not.toContain('  retention (');
    instance.remove();
  });
});

describe('completeBackups', () => {
  it('lists only dated directories holding manifest.json, never incomplete ones or other entries', () => {
    const backupDir = join(scratch.path, `listing ${counter++}`);
    mkdirSync(backupDir);
    fakeBackup(backupDir, 'owncloud-backup-20200311-130000');
    fakeBackup(backupDir, 'owncloud-backup-20200312-000000.incomplete');
    unrelatedEntries(backupDir, join(scratch.path, `outside ${counter++}`));
    expect(completeBackups(backupDir)).toEqual([
      { name: 'owncloud-backup-20200311-130000', time: new Date('2020-03-11T13:00:00Z') },
    ]);
  });
});
