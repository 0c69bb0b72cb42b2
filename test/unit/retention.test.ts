// Which backups a retention policy keeps: restic's `forget` rules, in UTC. Each case is
// checked against the rule as restic's documentation words it ("for the last n days which
// have one or more snapshots, keep only the most recent one for each day"; a snapshot kept
// by any rule is kept; the oldest one kept too while a rule has periods left), and the
// options that set the policy are validated up front.
import { afterEach, describe, expect, it } from 'vitest';
import { readRawInputs } from '../../src/action/inputs.ts';
import { cliInputs } from '../../src/cli/main.ts';
import { backupName, backupTime } from '../../src/naming.ts';
import {
  describePolicy,
  isoWeek,
  NO_RETENTION,
  selectKept,
  type DatedBackup,
  type RetentionPolicy,
} from '../../src/retention.ts';
import { Secrets } from '../../src/secrets.ts';
import { cliLabel, planBackup } from '../../src/settings.ts';

const DAY = 86_400_000;

function at(iso: string): DatedBackup {
  const time = new Date(iso);
  return { name: backupName(time), time };
}

function policy(rules: Partial<RetentionPolicy>): RetentionPolicy {
  return { ...NO_RETENTION, ...rules };
}

/** The names kept, oldest first (as a listing reads). */
function kept(backups: DatedBackup[], rules: Partial<RetentionPolicy>, protect?: string) {
  return selectKept(backups, policy(rules), protect)
    .keep.map((b) => b.name)
    .sort();
}

/** One backup a night at 02:30 UTC, `nights` nights ending on `last` (YYYY-MM-DD). */
function nightly(last: string, nights: number): DatedBackup[] {
  const end = new Date(`${last}T02:30:00Z`).getTime();
  return Array.from({ length: nights }, (_, i) => {
    const time = new Date(end - (nights - 1 - i) * DAY);
    return { name: backupName(time), time };
  });
}

const day = (t: Date) => t.toISOString().slice(0, 10);
const month = (t: Date) => t.toISOString().slice(0, 7);
const year = (t: Date) => t.toISOString().slice(0, 4);

/**
 * The policy as restic's documentation states it, computed another way than selectKept
 * does: group the backups by period, take the n newest periods, the newest backup of each;
 * keep-last takes the n newest backups; while a rule has fewer periods than n, it keeps
 * the oldest backup too. The union is kept.
 */
function asDocumented(backups: DatedBackup[], rules: RetentionPolicy): string[] {
  const newest = [...backups].sort((a, b) => b.time.getTime() - a.time.getTime());
  const keep = new Set(newest.slice(0, rules.last).map((b) => b.name));
  const periodRules: [number, (t: Date) => string][] = [
    [rules.daily, day],
    [rules.weekly, isoWeek],
    [rules.monthly, month],
    [rules.yearly, year],
  ];
  for (const [n, period] of periodRules) {
    if (n === 0) continue;
    const groups = new Map<string, DatedBackup[]>();
    for (const b of newest) groups.set(period(b.time), [...(groups.get(period(b.time)) ?? []), b]);
    const periods = [...groups.keys()].sort().reverse();
    for (const p of periods.slice(0, n)) keep.add(groups.get(p)![0]!.name);
    if (periods.length < n && newest.length > 0) keep.add(newest.at(-1)!.name);
  }
  return [...keep].sort();
}

describe('isoWeek (as Go’s Time.ISOWeek, which restic uses)', () => {
  it.each([
    ['2020-12-31T12:00:00Z', '2020-W53'],
    ['2021-01-03T23:59:59Z', '2020-W53'],
    ['2021-01-04T00:00:00Z', '2021-W01'],
    ['2024-12-30T00:00:00Z', '2025-W01'],
    ['2026-11-26T09:59:00Z', '2026-W48'],
    ['2026-11-29T23:59:59Z', '2026-W48'],
    ['2027-01-01T00:00:00Z', '2026-W53'],
    ['2008-12-29T00:00:00Z', '2009-W01'],
    ['2010-01-03T12:00:00Z', '2009-W53'],
  ])('%s is in %s', (iso, week) => {
    expect(isoWeek(new Date(iso))).toBe(week);
  });
});

describe('selectKept', () => {
  it('keeps everything when no rule is on (the default)', () => {
    const backups = nightly('2026-11-29', 10);
    const decision = selectKept(backups, NO_RETENTION);
    expect(decision.remove).toEqual([]);
    expect(decision.keep).toHaveLength(10);
  });

  it('keep-last keeps the n newest, whatever their days', () => {
    const backups = [
      at('2026-11-01T10:00:00Z'),
      at('2026-11-03T10:00:00Z'),
      at('2026-11-03T11:00:00Z'),
      at('2026-11-03T12:00:00Z'),
    ];
    expect(kept(backups, { last: 2 })).toEqual([
      'owncloud-backup-20261103-110000',
      'owncloud-backup-20261103-120000',
    ]);
  });

  it('keep-daily keeps the newest backup of each of the n newest days with backups', () => {
    const backups = [
      at('2026-11-01T01:00:00Z'),
      at('2026-11-01T23:00:00Z'),
      at('2026-11-02T01:00:00Z'),
      at('2026-11-02T13:00:00Z'),
      at('2026-11-02T23:59:59Z'),
      at('2026-11-03T00:00:00Z'),
      at('2026-11-03T06:00:00Z'),
    ];
    expect(kept(backups, { daily: 2 })).toEqual([
      'owncloud-backup-20261102-235959',
      'owncloud-backup-20261103-060000',
    ]);
    expect(kept(backups, { daily: 2 })).toEqual(asDocumented(backups, policy({ daily: 2 })));
  });

  it('counts only days that have backups: a gap does not use up the rule', () => {
    const backups = [
      at('2026-10-01T02:30:00Z'),
      at('2026-10-10T02:30:00Z'),
      at('2026-10-11T02:30:00Z'),
      at('2026-11-20T02:30:00Z'),
    ];
    expect(kept(backups, { daily: 3 })).toEqual([
      'owncloud-backup-20261010-023000',
      'owncloud-backup-20261011-023000',
      'owncloud-backup-20261120-023000',
    ]);
  });

  it('takes the days in UTC, as the names are, whatever the local time zone', () => {
    const backups = [
      at('2026-03-10T01:00:00Z'), // 9 March in Los Angeles
      at('2026-03-11T01:00:00Z'), // 10 March in Los Angeles
      at('2026-03-11T13:00:00Z'),
    ];
    const expected = ['owncloud-backup-20260310-010000', 'owncloud-backup-20260311-130000'];
    const zone = process.env.TZ;
    try {
      for (const tz of ['UTC', 'America/Los_Angeles', 'Pacific/Kiritimati']) {
        process.env.TZ = tz;
        expect(kept(backups, { daily: 2 }), tz).toEqual(expected);
      }
    } finally {
      if (zone === undefined) delete process.env.TZ;
      else process.env.TZ = zone;
    }
  });

  it('keep-weekly groups by ISO week: Sunday ends a week, Monday starts the next', () => {
    const backups = [
      at('2026-11-16T02:30:00Z'), // Monday, week 47
      at('2026-11-22T02:30:00Z'), // Sunday, week 47
      at('2026-11-23T02:30:00Z'), // Monday, week 48
      at('2026-11-25T02:30:00Z'), // Wednesday, week 48
    ];
    expect(kept(backups, { weekly: 2 })).toEqual([
      'owncloud-backup-20261122-023000',
      'owncloud-backup-20261125-023000',
    ]);
  });

  it('keep-weekly follows the ISO year at the turn of the year', () => {
    const backups = [
      at('2020-12-28T02:30:00Z'), // 2020-W53
      at('2021-01-03T02:30:00Z'), // 2020-W53
      at('2021-01-04T02:30:00Z'), // 2021-W01
    ];
    expect(kept(backups, { weekly: 1 })).toEqual(['owncloud-backup-20210104-023000']);
    const decision = selectKept(backups, policy({ weekly: 1 }));
    expect(decision.remove.map((b) => b.name)).toEqual([
      'owncloud-backup-20210103-023000',
      'owncloud-backup-20201228-023000',
    ]);
    expect(decision.reasons.get('owncloud-backup-20210103-023000')).toEqual([
      'keep-weekly 1: week 2020-W53 is not one of the 1 newest weeks with backups',
    ]);
  });

  it('keeps a backup that any rule keeps (the rules are ORed)', () => {
    const backups = [
      at('2026-09-15T02:30:00Z'),
      at('2026-10-20T02:30:00Z'),
      at('2026-11-27T02:30:00Z'),
      at('2026-11-28T02:30:00Z'),
      at('2026-11-29T02:30:00Z'),
    ];
    const decision = selectKept(backups, policy({ last: 1, monthly: 2 }));
    expect(decision.keep.map((b) => b.name)).toEqual([
      'owncloud-backup-20261129-023000',
      'owncloud-backup-20261020-023000',
    ]);
    expect(decision.reasons.get('owncloud-backup-20261129-023000')).toEqual([
      'keep-last 1: one of the 1 newest',
      'keep-monthly 2: the newest of month 2026-11',
    ]);
    expect(decision.reasons.get('owncloud-backup-20261128-023000')).toEqual([
      'keep-last 1: not one of the 1 newest',
      'keep-monthly 2: not the newest of month 2026-11 (owncloud-backup-20261129-023000 is)',
    ]);
    expect(decision.reasons.get('owncloud-backup-20260915-023000')).toEqual([
      'keep-last 1: not one of the 1 newest',
      'keep-monthly 2: month 2026-09 is not one of the 2 newest months with backups',
    ]);
  });

  it('keeps the oldest backup too while a rule has periods left (restic since 0.16)', () => {
    const backups = [
      at('2026-11-01T02:30:00Z'),
      at('2026-11-02T02:30:00Z'),
      at('2026-11-03T02:30:00Z'),
    ];
    const decision = selectKept(backups, policy({ yearly: 3 }));
    expect(decision.keep.map((b) => b.name)).toEqual([
      'owncloud-backup-20261103-023000',
      'owncloud-backup-20261101-023000',
    ]);
    expect(decision.reasons.get('owncloud-backup-20261101-023000')).toEqual([
      'keep-yearly 3: the oldest backup, kept as fewer than 3 years hold backups',
    ]);
    // With as many periods as the rule keeps, the oldest goes like any other.
    expect(kept(backups, { yearly: 1 })).toEqual(['owncloud-backup-20261103-023000']);
    // keep-last has no periods: it never keeps the oldest for that reason.
    expect(kept(backups, { last: 2 })).toEqual([
      'owncloud-backup-20261102-023000',
      'owncloud-backup-20261103-023000',
    ]);
  });

  it('orders backups of the same time by name, so that a tie is decided the same way each run', () => {
    const time = new Date('2026-11-29T02:30:00Z');
    const backups = [
      { name: 'b', time },
      { name: 'c', time },
      { name: 'a', time },
    ];
    for (const order of [backups, [...backups].reverse()]) {
      const decision = selectKept(order, policy({ daily: 1 }));
      expect(decision.keep.map((b) => b.name)).toEqual(['c']);
      expect(decision.remove.map((b) => b.name)).toEqual(['b', 'a']);
    }
  });

  it('does not depend on the order the backups are listed in', () => {
    const backups = nightly('2026-11-29', 30);
    const shuffled = [...backups].sort(
      (a, b) => (a.name.charCodeAt(20) % 7) - (b.name.charCodeAt(20) % 7),
    );
    expect(kept(shuffled, { daily: 3, weekly: 2 })).toEqual(kept(backups, { daily: 3, weekly: 2 }));
  });

  it('keeps the protected backup (the one just written) whatever the policy says', () => {
    // A backup dated ahead (a clock that was wrong) is the newest by name.
    const ahead = at('2027-06-01T00:00:00Z');
    const justWritten = at('2026-11-29T02:30:00Z');
    const backups = [at('2026-11-28T02:30:00Z'), justWritten, ahead];
    const decision = selectKept(backups, policy({ last: 1 }), justWritten.name);
    expect(decision.keep.map((b) => b.name)).toEqual([ahead.name, justWritten.name]);
    expect(decision.reasons.get(justWritten.name)).toEqual(['the backup just written']);
    expect(decision.remove.map((b) => b.name)).toEqual(['owncloud-backup-20261128-023000']);
  });

  it('over 60 nightly backups keeps 7 days, 4 weeks and 3 months (the oldest night for the third month)', () => {
    // 2026-10-01 … 2026-11-29, a backup at 02:30 UTC each night.
    const backups = nightly('2026-11-29', 60);
    const rules = policy({ daily: 7, weekly: 4, monthly: 3 });
    const decision = selectKept(backups, rules);
    expect(decision.keep.map((b) => b.name).sort()).toEqual(
      [
        '20261001', // oldest: only 2 months hold backups, keep-monthly 3 has one left
        '20261031', // newest of October
        '20261108', // newest of week 45 (Sunday)
        '20261115', // week 46
        '20261122', // week 47
        '20261123', // the 7 newest days (week 48, whose newest is 29 November)
        '20261124',
        '20261125',
        '20261126',
        '20261127',
        '20261128',
        '20261129',
      ].map((d) => `owncloud-backup-${d}-023000`),
    );
    expect(decision.remove).toHaveLength(48);
    expect(decision.keep.map((b) => b.name).sort()).toEqual(asDocumented(backups, rules));
    expect(decision.reasons.get('owncloud-backup-20261031-023000')).toEqual([
      'keep-monthly 3: the newest of month 2026-10',
    ]);
    expect(decision.reasons.get('owncloud-backup-20261030-023000')).toEqual([
      'keep-daily 7: day 2026-10-30 is not one of the 7 newest days with backups',
      'keep-weekly 4: week 2026-W44 is not one of the 4 newest weeks with backups',
      'keep-monthly 3: not the newest of month 2026-10 (owncloud-backup-20261031-023000 is)',
    ]);
  });

  it('agrees with the documented rules for every policy over 60 nights with gaps and extra runs', () => {
    // Nightly, with a week missing, a second run on some days and one late at 23:59:59.
    const backups = nightly('2026-12-31', 75)
      .filter((_, i) => i < 20 || i > 26)
      .flatMap((b, i) =>
        i % 5 === 0
          ? [b, { name: `${b.name}-extra`, time: new Date(b.time.getTime() + 77_399_000) }]
          : [b],
      );
    expect(backups.length).toBeGreaterThanOrEqual(60);
    for (const last of [0, 1, 3])
      for (const daily of [0, 1, 7, 100])
        for (const weekly of [0, 2, 5])
          for (const monthly of [0, 1, 3, 12])
            for (const yearly of [0, 1, 2]) {
              const rules = { last, daily, weekly, monthly, yearly };
              if (Object.values(rules).every((n) => n === 0)) continue;
              const decision = selectKept(backups, rules);
              expect(decision.keep.map((b) => b.name).sort(), describePolicy(rules)).toEqual(
                asDocumented(backups, rules),
              );
              expect(decision.keep.length + decision.remove.length).toBe(backups.length);
            }
  });
});

describe('backupTime', () => {
  it('reads the UTC time back from a backup name', () => {
    const time = new Date('2026-11-26T09:59:07Z');
    expect(backupTime(backupName(time))).toEqual(time);
  });

  it.each([
    'owncloud-backup-20261301-000000',
    'owncloud-backup-20260230-000000',
    'owncloud-backup-20261126-246000',
    'owncloud-backup-20261126-000000.incomplete',
    'owncloud-backup-2026112-000000',
    'backup-20261126-000000',
  ])('is undefined for %s, which names no real time', (name) => {
    expect(backupTime(name)).toBeUndefined();
  });
});

describe('the keep-* options', () => {
  const plan = (args: string[]) => {
    const { raw, label } = cliInputs(['backup', ...args], {}, '/srv');
    return planBackup(raw, { backupDir: '/srv' }, label);
  };

  it('make the plan’s policy; absent ones are off', () => {
    expect(plan(['--keep-daily', '7', '--keep-monthly', '12']).retention).toEqual({
      last: 0,
      daily: 7,
      weekly: 0,
      monthly: 12,
      yearly: 0,
    });
    expect(plan([]).retention).toEqual(NO_RETENTION);
    expect(
      plan([
        '--keep-last=1',
        '--keep-daily=2',
        '--keep-weekly=3',
        '--keep-monthly=4',
        '--keep-yearly=0',
      ]).retention,
    ).toEqual({ last: 1, daily: 2, weekly: 3, monthly: 4, yearly: 0 });
  });

  it.each([
    ['--keep-daily=-1', 'keep-daily', '-1'],
    ['--keep-weekly=2.5', 'keep-weekly', '2.5'],
    ['--keep-last=ten', 'keep-last', 'ten'],
    ['--keep-yearly=unlimited', 'keep-yearly', 'unlimited'],
    ['--keep-monthly=99999999999999999999', 'keep-monthly', '99999999999999999999'],
  ])('refuse %s, naming the option and the form expected', (arg, option, given) => {
    expect(() => plan([arg])).toThrow(
      `Invalid option --${option}: '${given}' is not a whole number. Expected how many backups the rule keeps, 0 or more (0: the rule is off).`,
    );
  });

  it('apply to backup only', () => {
    expect(() => cliInputs(['restore', '/b', '--keep-last', '3'], {})).toThrow(
      'Option --keep-last only applies to backup (see owncloud-backup --help).',
    );
  });

  it('say what they keep in the label of the plan’s messages', () => {
    expect(cliLabel('keep-daily')).toBe('option --keep-daily');
    expect(describePolicy(policy({ last: 2, weekly: 4 }))).toBe('keep-last 2, keep-weekly 4');
  });
});

describe('the action', () => {
  afterEach(() => {
    delete process.env['INPUT_KEEP-DAILY'];
    delete process.env['INPUT_KEEP-LAST'];
  });

  it('refuses keep-* for an artifact (it expires by retention-days) and applies them to a restic repository', () => {
    process.env['INPUT_KEEP-DAILY'] = '1';
    process.env['INPUT_KEEP-LAST'] = '1';
    const { raw } = readRawInputs(new Secrets());
    expect(raw['keep-daily']).toBe('1');
    expect(() => planBackup(raw, { backupDir: '/b', destination: 'artifact' })).toThrow(
      "Invalid input 'keep-last': artifacts expire by retention-days; the keep-* inputs apply with input 'destination' restic.",
    );
    const restic = planBackup(
      { ...raw, destination: 'restic', 'restic-repository': '/r', 'restic-password': 'p' },
      { backupDir: '/b', destination: 'artifact' },
    );
    expect(restic.retention).toEqual({ ...NO_RETENTION, last: 1, daily: 1 });
  });
});
