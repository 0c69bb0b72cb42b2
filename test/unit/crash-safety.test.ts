import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { maintenanceState, readMaintenanceState, type StateStore } from '../../src/action/state.ts';
import { cliInputs } from '../../src/cli/main.ts';
import { InputError } from '../../src/errors.ts';
import {
  HOLDER_MARK,
  holderFromArgv,
  holderName,
  lockCommand,
  whoHoldsCommand,
} from '../../src/host/lock.ts';
import { isNoSpace, noSpaceError } from '../../src/host/runner.ts';
import { checkBackupDir, createBackupDir, isIncompleteName } from '../../src/steps/backup-dir.ts';
import type { MaintenanceRecord } from '../../src/steps/maintenance.ts';

function store(values: Record<string, string>): StateStore {
  return { save: (name, value) => (values[name] = value), get: (name) => values[name] ?? '' };
}

describe('the maintenance record the post step reads', () => {
  const record: MaintenanceRecord = {
    phase: 'switching-on',
    switchedByUs: true,
    priorState: false,
    installDir: '/var/www/owncloud',
    occUser: 'www-data',
  };

  it.each(['switching-on', 'on', 'restored'] as const)(
    'keeps phase %s and the prior state',
    (phase) => {
      const values: Record<string, string> = {};
      const state = store(values);
      state.save('maintenance', JSON.stringify(maintenanceState({ ...record, phase })));
      expect(readMaintenanceState(state)).toEqual({ ...record, phase });
      expect(JSON.parse(values.maintenance!)).toMatchObject({ restored: phase === 'restored' });
    },
  );

  it('reads a record without a phase as "on" unless restored', () => {
    const legacy = { switchedByUs: true, restored: false, installDir: '/oc', occUser: 'www-data' };
    expect(readMaintenanceState(store({ maintenance: JSON.stringify(legacy) }))).toMatchObject({
      phase: 'on',
      priorState: false,
    });
    expect(
      readMaintenanceState(store({ maintenance: JSON.stringify({ ...legacy, restored: true }) })),
    ).toMatchObject({ phase: 'restored' });
  });

  it('has nothing when main saved nothing', () => {
    expect(readMaintenanceState(store({}))).toBeUndefined();
  });
});

describe('locks', () => {
  it('hold the lock with flock -n on the path, the holder named after a marker', () => {
    const holder = holderName(4242, 'runner-1', new Date('2026-12-01T17:40:00Z'));
    expect(holder).toBe('owncloud-backup pid 4242 on runner-1, started 2026-12-01T17:40:00.000Z');
    const argv = lockCommand('/var/www/owncloud', holder);
    expect(argv.slice(0, 3)).toEqual(['flock', '-n', '/var/www/owncloud']);
    expect(argv.slice(-2)).toEqual([HOLDER_MARK, holder]);
    expect(whoHoldsCommand('/var/www/owncloud').at(-1)).toBe('/var/www/owncloud');
  });

  it('find the holder in its argv, and nothing in a lock that is not ours', () => {
    const holder = 'owncloud-backup pid 7 on h, started 2026-12-01T00:00:00.000Z';
    const argv = lockCommand('/d', holder).join('\n');
    expect(holderFromArgv(`${argv}\n`)).toBe(holder);
    expect(holderFromArgv('flock\n-n\n/d\nsleep\n100\n')).toBeUndefined();
    expect(holderFromArgv(`flock\n${HOLDER_MARK}`)).toBeUndefined();
  });
});

describe('incomplete backups', () => {
  it.each([
    ['owncloud-backup-20261201-174000.incomplete', true],
    ['owncloud-backup-20261201-174000', false],
    ['owncloud-backup-2026121-174000.incomplete', false],
    ['photos.incomplete', false],
    ['owncloud-backup-20261201-174000.incomplete.bak', false],
  ])('%s is one: %s', (name, expected) => {
    expect(isIncompleteName(name)).toBe(expected);
  });
});

describe('createBackupDir', () => {
  const root = mkdtempSync(join(tmpdir(), 'ocb-unit-backup-dir-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('creates the missing levels, and accepts an existing directory', () => {
    const dir = join(root, 'a', 'b', 'c');
    createBackupDir(dir);
    expect(statSync(dir).isDirectory()).toBe(true);
    createBackupDir(dir);
  });

  it('refuses a file, and a path below a file, naming both', () => {
    const file = join(root, 'file');
    writeFileSync(file, 'x');
    expect(() => createBackupDir(file)).toThrow(
      new InputError(`backup-dir '${file}' is a file, not a directory. Choose a directory.`),
    );
    expect(() => createBackupDir(join(file, 'below'))).toThrow(
      new InputError(
        `backup-dir '${file}/below': '${file}' is a file, not a directory. Choose a directory.`,
      ),
    );
  });

  it('refuses a pseudo file system such as /proc (where mkdir answers ENOENT), at once, creating nothing', () => {
    for (const check of [checkBackupDir, createBackupDir])
      expect(() => check('/proc/ocb-unit-nothing/backups')).toThrow(
        new InputError(
          "backup-dir '/proc/ocb-unit-nothing/backups': '/proc' is on a pseudo file system (proc), where no backup can be written. Choose a directory on a normal file system.",
        ),
      );
  });
});

describe('a relative --backup-dir', () => {
  it.each([
    ['.', '/home/admin'],
    ['backups', '/home/admin/backups'],
    ['../elsewhere/', '/home/elsewhere'],
    ['/srv/backups', '/srv/backups'],
  ])('%s from /home/admin is %s', (given, expected) => {
    expect(cliInputs(['backup', '--backup-dir', given], {}, '/home/admin').raw['backup-dir']).toBe(
      expected,
    );
  });

  it('defaults to the working directory', () => {
    expect(cliInputs(['backup'], {}, '/home/admin').raw['backup-dir']).toBe('/home/admin');
  });
});

describe('a full disk', () => {
  it('is recognised from Node errors and tool messages', () => {
    expect(isNoSpace(Object.assign(new Error('x'), { code: 'ENOSPC' }))).toBe(true);
    expect(isNoSpace(Object.assign(new Error('x'), { code: 'EDQUOT' }))).toBe(true);
    expect(isNoSpace(Object.assign(new Error('x'), { code: 'EPIPE' }))).toBe(false);
    expect(
      isNoSpace('rsync: [receiver] write failed on "/b/x": No space left on device (28)'),
    ).toBe(true);
    expect(isNoSpace('rsync: connection unexpectedly closed')).toBe(false);
  });

  it('names the path and the bytes still free there', () => {
    const path = join(tmpdir(), 'dump.zst');
    expect(noSpaceError(path).message).toMatch(
      new RegExp(`^No space left on device writing ${path} \\(\\d+ bytes free\\)\\.$`),
    );
  });
});
