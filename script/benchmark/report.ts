// The benchmark's tables: medians per variant with the ratio to the floor, then every round.
import type { Measurement, Variant } from './variants.ts';

export function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const MiB = 1024 ** 2;

function cell(values: (number | undefined)[], format: (x: number) => string): string {
  const known = values.filter((v): v is number => v !== undefined);
  return known.length === values.length && known.length > 0 ? format(median(known)) : '-';
}

const s = (x: number) => x.toFixed(1);
const s2 = (x: number) => x.toFixed(2);
const mib = (x: number) => (x / MiB).toFixed(0);

export function summaryTable(
  variants: Variant[],
  results: Map<string, Measurement[]>,
  floorId: string,
): string {
  const floorRuns = results.get(floorId);
  const floorSeconds = floorRuns?.length ? median(floorRuns.map((r) => r.seconds)) : undefined;
  const lines = [
    '| variant | wall s | × floor | maintenance s | dump s | peak RSS MiB | runner peak disk MiB | backup MiB |',
    '|---|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const variant of variants) {
    const runs = results.get(variant.id) ?? [];
    if (runs.length === 0) continue;
    const wall = median(runs.map((r) => r.seconds));
    const ratio = floorSeconds ? (wall / floorSeconds).toFixed(2) : '-';
    lines.push(
      `| ${variant.label} | ${s(wall)} | ${ratio} | ${cell(
        runs.map((r) => r.maintenanceSeconds),
        s2,
      )} | ${cell(
        runs.map((r) => r.dumpSeconds),
        s2,
      )} | ${cell(
        runs.map((r) => r.peakRssMiB),
        (x) => x.toFixed(0),
      )} | ${cell(
        runs.map((r) => r.peakDiskBytes),
        mib,
      )} | ${cell(
        runs.map((r) => r.backupBytes),
        mib,
      )} |`,
    );
  }
  return lines.join('\n');
}

export function roundsTable(variants: Variant[], results: Map<string, Measurement[]>): string {
  const opt = (x: number | undefined, format: (x: number) => string) =>
    x === undefined ? '-' : format(x);
  const lines = [
    '| variant | round | wall s | maintenance s | dump s | peak RSS MiB | runner peak disk MiB | backup MiB |',
    '|---|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const variant of variants)
    (results.get(variant.id) ?? []).forEach((r, i) =>
      lines.push(
        `| ${variant.id} | ${i + 1} | ${s2(r.seconds)} | ${opt(r.maintenanceSeconds, s2)} | ${opt(
          r.dumpSeconds,
          s2,
        )} | ${opt(r.peakRssMiB, (x) => x.toFixed(0))} | ${opt(r.peakDiskBytes, mib)} | ${opt(
          r.backupBytes,
          mib,
        )} |`,
      ),
    );
  return lines.join('\n');
}

/** Where the tools' time goes: the median of each step their logs report, per variant. */
export function stepsTable(variants: Variant[], results: Map<string, Measurement[]>): string {
  const withSteps = variants.filter((v) => (results.get(v.id) ?? []).some((r) => r.steps));
  if (withSteps.length === 0) return '';
  const titles: string[] = [];
  for (const variant of withSteps)
    for (const run of results.get(variant.id)!)
      for (const title of Object.keys(run.steps ?? {}))
        if (!titles.includes(title)) titles.push(title);
  const lines = [
    `| step (s) | ${withSteps.map((v) => v.id).join(' | ')} |`,
    `|---|${withSteps.map(() => '--:').join('|')}|`,
  ];
  for (const title of titles)
    lines.push(
      `| ${title} | ${withSteps
        .map((v) =>
          cell(
            results.get(v.id)!.map((r) => r.steps?.[title]),
            s2,
          ),
        )
        .join(' | ')} |`,
    );
  return lines.join('\n');
}

/** The goal figures of the issue this benchmark serves, checked against the medians. */
export function goalLines(results: Map<string, Measurement[]>): string[] {
  const med = (id: string, pick: (r: Measurement) => number | undefined) => {
    const values = (results.get(id) ?? []).map(pick);
    return values.length && values.every((v) => v !== undefined)
      ? median(values as number[])
      : undefined;
  };
  const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');
  const lines: string[] = [];
  const floorWall = med('floor', (r) => r.seconds);
  const floorDump = med('floor', (r) => r.dumpSeconds);
  const floorRss = med('floor', (r) => r.peakRssMiB);
  for (const id of ['action-ssh', 'action-local']) {
    const wall = med(id, (r) => r.seconds);
    if (wall !== undefined && floorWall !== undefined && id === 'action-ssh')
      lines.push(
        `- ${id}: ${(wall / floorWall).toFixed(2)} × the floor (goal ≤ 1.2): ${verdict(wall / floorWall <= 1.2)}`,
      );
    const window = med(id, (r) => r.maintenanceSeconds);
    if (window !== undefined && floorDump !== undefined)
      lines.push(
        `- ${id}: maintenance window ${window.toFixed(2)} s, the dump alone (floor) ${floorDump.toFixed(2)} s (goal ≤ dump + 1 s): ${verdict(window <= floorDump + 1)}`,
      );
    const rss = med(id, (r) => r.peakRssMiB);
    if (rss !== undefined && floorRss !== undefined)
      lines.push(
        `- ${id}: peak RSS ${rss.toFixed(0)} MiB, the floor's upload process ${floorRss.toFixed(0)} MiB (goal ≤): ${verdict(rss <= floorRss)}`,
      );
    const disk = med(id, (r) => r.peakDiskBytes);
    const backup = med(id, (r) => r.backupBytes);
    if (disk !== undefined && backup !== undefined)
      lines.push(
        `- ${id}: runner peak disk ${mib(disk)} MiB for a backup of ${mib(backup)} MiB (${(disk / backup).toFixed(2)} ×; goal: the archive plus a small margin)`,
      );
  }
  const cliRss = med('cli-ssh', (r) => r.peakRssMiB);
  if (cliRss !== undefined)
    lines.push(
      `- cli-ssh: peak RSS ${cliRss.toFixed(0)} MiB (goal ≤ 150 MiB): ${verdict(cliRss <= 150)}`,
    );
  return lines;
}
