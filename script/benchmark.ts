// Compares, on sample instances behind a loopback sshd with a MariaDB database and uploads to
// a local artifact service (Azurite and a stand-in for GitHub's results service):
//   1. the floor: `ssh tar | zstd -T0 -3` + `ssh mysqldump | zstd` + two raw artifact uploads
//   2. the documented manual commands: maintenance mode on, `rsync -Aax` of config and data,
//      mysqldump, maintenance mode off, then the copy uploaded as actions/upload-artifact does
//   3. this action over SSH (the committed bundle, main and post step, as the runner runs it)
//   4. this action, local transport (on the host itself)
//   5. the CLI over SSH (no upload), for its peak memory
// in one interleaved run (1 2 3 4 5 1 2 3 4 5 …): one warm-up round not counted, then medians
// of the rounds. Each variant runs into a fresh directory, and each upload goes to a fresh
// artifact service (started and stopped outside the timing). The action runs with its
// action.yml defaults except restore-test: false (the test loads the dump on the runner after
// the backup, which none of the others do). Archive names and sizes come from the manifest.
// --quick: two small samples, one round, no warm-up (a try in minutes).
// With --age, one more: the CLI over SSH with --encrypt-to (age), beside the plain CLI run.
// With --restore, two more variants in the same interleave: `owncloud-backup restore` in place
// against the README's restore by hand (see benchmark/restore.ts).
// Usage: node script/benchmark.ts [--rounds N] [--no-warm-up] [--quick] [--files N --bytes N] [--restore] [--age]
//          [--only floor,manual,action-ssh,action-local,cli-ssh,cli-ssh-age,restore-cli,restore-manual]
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { startArtifactService } from '../test/harness/artifact-service.ts';
import { startMariaDb, writeMariaDbClientConfig } from '../test/harness/mariadb.ts';
import { makeScratchDir } from '../test/harness/scratch.ts';
import { startSshd } from '../test/harness/sshd.ts';
import { buildSampleInstance } from '../test/sample/instance.ts';
import { goalLines, roundsTable, stepsTable, summaryTable } from './benchmark/report.ts';
import { makeRestoreSource, restoreCli, restoreManual } from './benchmark/restore.ts';
import { cliSshAge, VARIANTS, type Bench, type Measurement } from './benchmark/variants.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string' },
    files: { type: 'string' },
    bytes: { type: 'string' },
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    restore: { type: 'boolean', default: false },
    age: { type: 'boolean', default: false },
    'warm-up': { type: 'boolean' },
  },
  allowNegative: true,
});

const MiB = 1024 ** 2;
interface Size {
  files: number;
  bytes: number;
}
const sizes: Size[] =
  values.files || values.bytes
    ? [{ files: Number(values.files ?? 20000), bytes: Number(values.bytes ?? 1024 ** 3) }]
    : values.quick
      ? [
          { files: 2000, bytes: 64 * MiB },
          { files: 5000, bytes: 32 * MiB },
        ]
      : [
          { files: 20000, bytes: 1024 ** 3 },
          { files: 100000, bytes: 572 * MiB },
        ];
const rounds = Number(values.rounds ?? (values.quick ? 1 : 3));
const warmUp = values['warm-up'] ?? !values.quick;
const only = values.only?.split(',');
const all = [
  ...VARIANTS,
  ...(values.age ? [cliSshAge] : []),
  ...(values.restore ? [restoreCli, restoreManual] : []),
];
const variants = only ? all.filter((v) => only.includes(v.id)) : all;
if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds must be a whole number ≥ 1');
if (only && variants.length !== only.length)
  throw new Error(`--only takes some of: ${all.map((v) => v.id).join(', ')}`);

const describe = (size: Size) =>
  `${size.files.toLocaleString('en-US')} files / ${
    size.bytes >= 1024 ** 3
      ? `${(size.bytes / 1024 ** 3).toFixed(0)} GiB`
      : `${size.bytes / MiB} MiB`
  }`;

// Removed however the run ends (an interrupt too), with the servers.
const scratch = makeScratchDir('bench');
const root = scratch.path;
chmodSync(root, 0o755); // the instance's owner must reach its installation
const [sshd, mariadb] = await Promise.all([startSshd(), startMariaDb()]);
const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
try {
  console.log(
    `${rounds} round(s)${warmUp ? ' after one warm-up round' : ''}, interleaved; load average ${load()}.`,
  );
  const tables: string[] = [];
  for (const [index, size] of sizes.entries()) {
    let t0 = performance.now();
    const sample = await buildSampleInstance({
      database: { type: 'mysql', server: mariadb },
      root: join(root, `sample-${index}`),
      dbName: `owncloud_bench_${index}`,
      dbUser: `oc_bench_${index}`,
      dbPassword: randomBytes(18).toString('base64url'),
      bulk: size,
    });
    const hostDir = join(root, `host-${index}`);
    mkdirSync(hostDir, { mode: 0o700 });
    const dbOptionFile = join(hostDir, 'client.cnf');
    writeMariaDbClientConfig(dbOptionFile, String(sample.config.dbuser), sample.dbPassword);
    const bench: Bench = { sshd, mariadb, sample, dbOptionFile };
    if (values.restore)
      bench.restoreSource = await makeRestoreSource(bench, join(root, `restore-source-${index}`));
    console.log(
      `\nBuilt a sample of ${describe(size)} (MariaDB) in ${((performance.now() - t0) / 1000).toFixed(0)} s.`,
    );

    const results = new Map<string, Measurement[]>(variants.map((v) => [v.id, []]));
    for (let round = warmUp ? 0 : 1; round <= rounds; round++) {
      for (const variant of variants) {
        const dir = join(root, `run-${index}`, `round-${round}`, variant.id);
        mkdirSync(dir, { recursive: true });
        const service = variant.uploads ? await startArtifactService() : undefined;
        let measurement: Measurement;
        try {
          measurement = await variant.run({ bench, dir, artifactEnv: service?.env ?? {} });
        } finally {
          await service?.stop();
        }
        if (round > 0) results.get(variant.id)!.push(measurement);
        console.log(
          `  ${round === 0 ? 'warm-up' : `round ${round}`}: ${variant.id} ${measurement.seconds.toFixed(1)} s`,
        );
        // A few big files go at once; the manual copy's many files wait for the end, as
        // deleting many files slows creating files afterwards on this kind of disk.
        if (!variant.keepsManyFiles) rmSync(dir, { recursive: true, force: true });
      }
    }
    t0 = performance.now();
    const steps = stepsTable(variants, results);
    const goals = goalLines(results);
    const table = [
      `### ${describe(size)}: medians of ${rounds} round(s)`,
      '',
      summaryTable(variants, results, 'floor'),
      ...(goals.length ? ['', 'Against the goals:', '', ...goals] : []),
      ...(steps
        ? ['', "Where the tools' time goes (medians of the steps their logs time):", '', steps]
        : []),
      '',
      `Every round:`,
      '',
      roundsTable(variants, results),
    ].join('\n');
    tables.push(table);
    console.log(`\n${table}\n`);
  }
  console.log(
    [
      '',
      `Load average at the end: ${load()}.`,
      'wall s: the whole variant (for the action, main and post step; uploads included).',
      "maintenance s: the manifest's window (the manual commands: maintenance on to off).",
      "dump s: mysqldump alone (floor, manual); the tool's log where it says.",
      "peak RSS: VmHWM of the tool's own Node process polled every 20 ms (action: main or post, whichever is higher); floor and manual: their upload process.",
      "runner peak disk: `du -sb` (apparent bytes) of the run's directory (RUNNER_TEMP, TMPDIR and the outputs all inside it), one walk every 200 ms.",
      '',
      tables.join('\n\n'),
    ].join('\n'),
  );
} finally {
  await Promise.all([sshd.stop(), mariadb.stop()]);
  scratch.remove();
}
