// Which dated backups a retention policy keeps: restic's `forget` rules (its ApplyPolicy,
// as of restic 0.16), so that one policy means the same for a backup directory and for a
// restic repository. Pure: backups and their times in, the decision out. Periods are UTC
// calendar days, ISO weeks (Monday to Sunday, the year the week belongs to), months and
// years, and they count only periods that hold a backup.

/** How many backups each rule keeps; 0 turns the rule off. All 0: nothing is removed. */
export interface RetentionPolicy {
  /** The n newest backups. */
  last: number;
  /** For the n newest days with backups, the newest backup of each. */
  daily: number;
  /** Likewise per ISO week. */
  weekly: number;
  /** Likewise per month. */
  monthly: number;
  /** Likewise per year. */
  yearly: number;
}

export const NO_RETENTION: RetentionPolicy = {
  last: 0,
  daily: 0,
  weekly: 0,
  monthly: 0,
  yearly: 0,
};

export interface DatedBackup {
  name: string;
  /** When it was made (from its name: UTC). */
  time: Date;
}

export interface RetentionDecision {
  /** Newest first. */
  keep: DatedBackup[];
  /** Newest first. */
  remove: DatedBackup[];
  /** For each backup: why it is kept, or why no rule keeps it. */
  reasons: Map<string, string[]>;
}

interface Rule {
  field: keyof RetentionPolicy;
  /** The option (and input) that sets it. */
  option: string;
  /** What one period is called, e.g. `day`. */
  unit: string;
  /** The period a time falls in, e.g. `2026-11-26`. */
  period: (time: Date) => string;
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** The ISO 8601 week of a UTC time, as Go's Time.ISOWeek (which restic uses): `2026-W48`. */
export function isoWeek(time: Date): string {
  // The week's Thursday decides its year; weeks start on Monday.
  const day = Date.UTC(time.getUTCFullYear(), time.getUTCMonth(), time.getUTCDate());
  const weekday = (time.getUTCDay() + 6) % 7; // Monday 0 … Sunday 6
  const thursday = new Date(day + (3 - weekday) * 86_400_000);
  const year = thursday.getUTCFullYear();
  const week = Math.floor((thursday.getTime() - Date.UTC(year, 0, 1)) / (7 * 86_400_000)) + 1;
  return `${year}-W${pad(week)}`;
}

const PERIOD_RULES: readonly Rule[] = [
  {
    field: 'daily',
    option: 'keep-daily',
    unit: 'day',
    period: (t) => `${t.getUTCFullYear()}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())}`,
  },
  { field: 'weekly', option: 'keep-weekly', unit: 'week', period: isoWeek },
  {
    field: 'monthly',
    option: 'keep-monthly',
    unit: 'month',
    period: (t) => `${t.getUTCFullYear()}-${pad(t.getUTCMonth() + 1)}`,
  },
  { field: 'yearly', option: 'keep-yearly', unit: 'year', period: (t) => `${t.getUTCFullYear()}` },
];

export function isRetentionOff(policy: RetentionPolicy): boolean {
  return Object.values(policy).every((n) => n === 0);
}

/** `keep-last 3, keep-daily 7` (the rules that are on), or `off`. */
export function describePolicy(policy: RetentionPolicy): string {
  const on = [
    ['keep-last', policy.last],
    ...PERIOD_RULES.map((rule) => [rule.option, policy[rule.field]] as const),
  ].filter(([, n]) => n !== 0);
  return on.length === 0 ? 'off' : on.map(([option, n]) => `${option} ${n}`).join(', ');
}

/** Newest first; at the same time, the later name first (a stable order for ties). */
function newestFirst(a: DatedBackup, b: DatedBackup): number {
  const byTime = b.time.getTime() - a.time.getTime();
  return byTime !== 0 ? byTime : a.name < b.name ? 1 : a.name > b.name ? -1 : 0;
}

/**
 * Decides which backups the policy keeps, as restic's `forget` does: newest first, each
 * rule keeps the newest backup of each period until it has kept as many as it may (keep-last
 * counts backups); a backup any rule keeps is kept. A rule that still may keep more when it
 * reaches the oldest backup keeps that one too (restic since 0.16: the history reaches back
 * as far as it can). An empty policy keeps everything. `protect` names a backup kept
 * whatever the policy says (the one just written).
 */
export function selectKept(
  backups: readonly DatedBackup[],
  policy: RetentionPolicy,
  protect?: string,
): RetentionDecision {
  const sorted = [...backups].sort(newestFirst);
  const reasons = new Map<string, string[]>();
  if (isRetentionOff(policy)) {
    for (const backup of sorted) reasons.set(backup.name, ['no keep-* rule is on']);
    return { keep: sorted, remove: [], reasons };
  }

  const lastLeft = { count: policy.last };
  const periods = PERIOD_RULES.filter((rule) => policy[rule.field] > 0).map((rule) => ({
    rule,
    count: policy[rule.field],
    /** The period the previous backup fell in. */
    previous: undefined as string | undefined,
    /** Period → the backup this rule keeps for it. */
    keptFor: new Map<string, string>(),
  }));

  const keep: DatedBackup[] = [];
  const remove: DatedBackup[] = [];
  sorted.forEach((backup, index) => {
    const oldest = index === sorted.length - 1;
    const why: string[] = [];
    const whyNot: string[] = [];
    if (policy.last > 0) {
      if (lastLeft.count > 0) {
        lastLeft.count--;
        why.push(`keep-last ${policy.last}: one of the ${policy.last} newest`);
      } else whyNot.push(`keep-last ${policy.last}: not one of the ${policy.last} newest`);
    }
    for (const bucket of periods) {
      const { rule } = bucket;
      const n = policy[rule.field];
      const period = rule.period(backup.time);
      const newPeriod = period !== bucket.previous;
      if (bucket.count > 0 && (newPeriod || oldest)) {
        bucket.count--;
        bucket.previous = period;
        if (newPeriod) {
          bucket.keptFor.set(period, backup.name);
          why.push(`${rule.option} ${n}: the newest of ${rule.unit} ${period}`);
        } else
          why.push(
            `${rule.option} ${n}: the oldest backup, kept as fewer than ${n} ${rule.unit}s hold backups`,
          );
      } else {
        const newer = bucket.keptFor.get(period);
        whyNot.push(
          newer !== undefined
            ? `${rule.option} ${n}: not the newest of ${rule.unit} ${period} (${newer} is)`
            : `${rule.option} ${n}: ${rule.unit} ${period} is not one of the ${n} newest ${rule.unit}s with backups`,
        );
      }
    }
    if (why.length === 0 && backup.name === protect) why.push('the backup just written');
    if (why.length > 0) {
      keep.push(backup);
      reasons.set(backup.name, why);
    } else {
      remove.push(backup);
      reasons.set(backup.name, whyNot);
    }
  });
  return { keep, remove, reasons };
}
