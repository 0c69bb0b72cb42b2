// The retention rules are restic's: the same backups as snapshots in a real restic
// repository, `restic forget --dry-run` keeps the same ones as selectKept, policy by policy
// (over a turn of the year, gaps, and several backups a day). restic before 0.16 did not
// keep the oldest snapshot for a rule with periods left; with such a restic, that one
// difference is all there may be.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeScratchDir } from '../harness/scratch.ts';
import { requireTool } from '../harness/tools.ts';
import { backupName } from '../../src/naming.ts';
import {
  describePolicy,
  NO_RETENTION,
  selectKept,
  type DatedBackup,
  type RetentionPolicy,
} from '../../src/retention.ts';

const scratch = makeScratchDir('retention-restic');
const repository = join(scratch.path, 'repo');
// restic reads --time in local time: UTC here, so that its days are the names' days.
const env = {
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: scratch.path,
  TZ: 'UTC',
  RESTIC_REPOSITORY: repository,
  RESTIC_PASSWORD: 'retention-test',
  RESTIC_CACHE_DIR: join(scratch.path, 'cache'),
};
let restic: string;
let version: [number, number];

function run(args: string[]): string {
  return execFileSync(restic, args, { env, encoding: 'utf8' });
}

/**
 * Nightly at 02:30 UTC from 10 December 2026 to 20 January 2027, but not from 24 to 29
 * December; a second run at 23:59:59 every fourth night.
 */
function backups(): DatedBackup[] {
  const list: DatedBackup[] = [];
  for (let t = Date.UTC(2026, 11, 10, 2, 30); t <= Date.UTC(2027, 0, 20, 2, 30); t += 86_400_000) {
    const day = new Date(t).getUTCDate();
    if (new Date(t).getUTCMonth() === 11 && day >= 24 && day <= 29) continue;
    list.push({ name: backupName(new Date(t)), time: new Date(t) });
    if (list.length % 4 === 0) {
      const late = new Date(t + (21 * 3600 + 29 * 60 + 59) * 1000);
      list.push({ name: backupName(late), time: late });
    }
  }
  return list;
}

beforeAll(() => {
  restic = requireTool('restic');
  const [, major, minor] = /restic (\d+)\.(\d+)/.exec(run(['version']))!;
  version = [Number(major), Number(minor)];
  const data = join(scratch.path, 'data');
  mkdirSync(data);
  writeFileSync(join(data, 'file'), 'the same small file in every snapshot');
  run(['init']);
  for (const { time } of backups())
    run(['backup', '--quiet', '--time', time.toISOString().slice(0, 19).replace('T', ' '), data]);
}, 300_000);
afterAll(() => scratch.remove());

const POLICIES: Partial<RetentionPolicy>[] = [
  { last: 3 },
  { daily: 7 },
  { daily: 7, weekly: 4, monthly: 3 },
  { daily: 100 },
  { weekly: 2 },
  { weekly: 5, yearly: 1 },
  { monthly: 1 },
  { monthly: 2 },
  { yearly: 1 },
  { yearly: 5 },
  { last: 2, daily: 3, weekly: 3, monthly: 2, yearly: 2 },
];

describe('restic forget', () => {
  it.each(POLICIES.map((p) => [describePolicy({ ...NO_RETENTION, ...p }), p] as const))(
    'keeps what selectKept keeps: %s',
    (_, rules) => {
      const policy = { ...NO_RETENTION, ...rules };
      const args = ['forget', '--dry-run', '--json', '--group-by', ''];
      for (const [rule, n] of Object.entries(rules)) args.push(`--keep-${rule}`, String(n));
      const groups = JSON.parse(run(args)) as { keep: { time: string }[] }[];
      const byRestic = groups[0]!.keep.map((s) => backupName(new Date(s.time))).sort();
      const decision = selectKept(backups(), policy);
      const ours = decision.keep.map((b) => b.name).sort();
      const before016 = version[0] === 0 && version[1] < 16;
      if (!before016) expect(ours).toEqual(byRestic);
      else {
        // All the same but the oldest, kept by a rule with periods left.
        const onlyOurs = ours.filter((name) => !byRestic.includes(name));
        expect(byRestic.filter((name) => !ours.includes(name))).toEqual([]);
        expect(onlyOurs.length).toBeLessThanOrEqual(1);
        for (const name of onlyOurs)
          expect(decision.reasons.get(name)!.every((r) => r.includes('the oldest backup'))).toBe(
            true,
          );
      }
    },
  );
});
