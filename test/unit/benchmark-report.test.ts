// The benchmark's own arithmetic: the step times it reads from the tools' logs, the medians,
// the ratio to the floor and the goal verdicts it prints.
import { describe, expect, it } from 'vitest';
import { goalLines, median, summaryTable } from '../../script/benchmark/report.ts';
import { stepsFromLog, VARIANTS, type Measurement } from '../../script/benchmark/variants.ts';

describe('stepsFromLog', () => {
  it("reads the action's and the command line's step lines, seconds and minutes", () => {
    const action = [
      '::group::Discover',
      'ownCloud 10.15.0.2 in /var/www/owncloud',
      'Discover: done in 1.2 s',
      '::endgroup::',
      'Maintenance window (files delta, database dump): done in 2 min 05 s',
    ].join('\n');
    expect(stepsFromLog(action)).toEqual({
      Discover: 1.2,
      'Maintenance window (files delta, database dump)': 125,
    });
    const cli =
      '02:17:24 == Connect\n02:17:24    Connect: done in 0.0 s\n02:17:30 Upload: 3 files\n';
    expect(stepsFromLog(cli)).toEqual({ Connect: 0 });
  });
});

describe('the tables', () => {
  it('medians: the middle value, or the mean of the two middle ones', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });

  const run = (seconds: number, extra: Partial<Measurement> = {}): Measurement => ({
    seconds,
    peakDiskBytes: 2 * 1024 ** 2,
    ...extra,
  });

  it('gives each variant its median wall time and its ratio to the floor', () => {
    const results = new Map([
      ['floor', [run(10), run(12), run(11)]],
      [
        'action-ssh',
        [
          run(13.2, { maintenanceSeconds: 1.5 }),
          run(40, { maintenanceSeconds: 3 }),
          run(12, { maintenanceSeconds: 1 }),
        ],
      ],
    ]);
    const lines = summaryTable(VARIANTS, results, 'floor').split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[2]).toMatch(/^\| floor: .* \| 11\.0 \| 1\.00 \| - \|/);
    expect(lines[3]).toMatch(/^\| this action over SSH \| 13\.2 \| 1\.20 \| 1\.50 \|/);
  });

  it('judges the goals from the medians', () => {
    const results = new Map([
      ['floor', [run(10, { dumpSeconds: 1.2, peakRssMiB: 229 })]],
      [
        'action-ssh',
        [run(13, { maintenanceSeconds: 2.1, peakRssMiB: 230, backupBytes: 1024 ** 2 })],
      ],
      ['cli-ssh', [run(9, { peakRssMiB: 150 })]],
    ]);
    expect(goalLines(results)).toEqual([
      '- action-ssh: 1.30 × the floor (goal ≤ 1.2): NOT met',
      '- action-ssh: maintenance window 2.10 s, the dump alone (floor) 1.20 s (goal ≤ dump + 1 s): met',
      "- action-ssh: peak RSS 230 MiB, the floor's upload process 229 MiB (goal ≤): NOT met",
      '- action-ssh: runner peak disk 2 MiB for a backup of 1 MiB (2.00 ×; goal: the archive plus a small margin)',
      '- cli-ssh: peak RSS 150 MiB (goal ≤ 150 MiB): met',
    ]);
  });
});
