// Measures a backup of a large sample instance (default 20,000 files, 1 GiB, SQLite) against
// the documentation's commands run by hand on the same instance, and the tool's peak memory
// on a small and a large instance (it must not grow with the data).
// With --restore it also restores each round's backup over the large instance (in place,
// the previous state moved aside and removed afterwards, outside the timing) and times the
// README's restore by hand (tar extract + sqlite3 load) beside it.
// Usage: node script/benchmark.ts [--files N] [--bytes N] [--rounds N] [--ssh] [--restore]
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startSshd, type SshServer } from '../test/harness/sshd.ts';
import { buildSampleInstance, type SampleInstance } from '../test/sample/instance.ts';

const { values } = parseArgs({
  options: {
    files: { type: 'string', default: '20000' },
    bytes: { type: 'string', default: String(1024 ** 3) },
    rounds: { type: 'string', default: '3' },
    ssh: { type: 'boolean', default: false },
    restore: { type: 'boolean', default: false },
  },
});
const CLI = resolve(import.meta.dirname, '..', 'dist', 'cli', 'index.js');
const root = mkdtempSync(join(tmpdir(), 'owncloud-backup-bench-'));
chmodSync(root, 0o755);

interface Measurement {
  seconds: number;
  peakRssMiB?: number;
  maintenanceSeconds?: number;
}

/** Runs a command, polling its peak resident memory (VmHWM) until it exits. */
async function measure(argv: string[], cwd: string): Promise<Measurement & { stdout: string }> {
  const started = performance.now();
  const child = spawn(argv[0]!, argv.slice(1), { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  let peakKiB = 0;
  const poll = setInterval(() => {
    try {
      const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      if (match) peakKiB = Math.max(peakKiB, Number(match[1]));
    } catch {
      // exited
    }
  }, 20);
  const code = await new Promise<number | null>((r) => child.once('close', r));
  clearInterval(poll);
  if (code !== 0) throw new Error(`${argv.join(' ')} failed (${code}):\n${stderr}`);
  return { seconds: (performance.now() - started) / 1000, peakRssMiB: peakKiB / 1024, stdout };
}

async function ours(sample: SampleInstance, out: string, ssh?: SshServer): Promise<Measurement> {
  mkdirSync(out, { recursive: true });
  const sshArgs = ssh
    ? [
        '--host',
        ssh.host,
        '--port',
        String(ssh.port),
        '--ssh-key-file',
        ssh.privateKeyPath,
        '--known-hosts-file',
        ssh.knownHostsPath,
      ]
    : [];
  const result = await measure(
    [
      process.execPath,
      CLI,
      'backup',
      '--owncloud-dir',
      sample.installDir,
      '--backup-dir',
      out,
      ...sshArgs,
    ],
    '/',
  );
  const dir = join(out, readdirSync(out)[0]!);
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as {
    maintenance: { seconds: number };
  };
  return {
    seconds: result.seconds,
    peakRssMiB: result.peakRssMiB!,
    maintenanceSeconds: manifest.maintenance.seconds,
  };
}

/** The documentation's procedure by hand: rsync -Aax config data DIR, then sqlite3 .dump. */
async function byHand(sample: SampleInstance, out: string): Promise<Measurement> {
  mkdirSync(out, { recursive: true });
  const started = performance.now();
  await measure(['rsync', '-Aax', 'config', 'data', `${out}/`], sample.installDir);
  const dump = spawnSync(
    'sh',
    ['-c', `sqlite3 data/owncloud.db .dump > '${out}/owncloud-dbbackup_$(date +%Y%m%d).bak'`],
    { cwd: sample.installDir },
  );
  if (dump.status !== 0) throw new Error('sqlite3 .dump failed');
  const seconds = (performance.now() - started) / 1000;
  // Done as the documentation advises, the instance is in maintenance mode the whole time.
  return { seconds, maintenanceSeconds: seconds };
}

/** `owncloud-backup restore` of a backup over the instance it came from. */
async function oursRestore(sample: SampleInstance, out: string): Promise<Measurement> {
  const dir = join(out, readdirSync(out)[0]!);
  const result = await measure(
    [process.execPath, CLI, 'restore', dir, '--owncloud-dir', sample.installDir],
    '/',
  );
  // The previous state (the whole data directory, moved aside) goes outside the timing.
  await measure(
    [process.execPath, CLI, 'restore', '--cleanup', '--owncloud-dir', sample.installDir],
    '/',
  );
  return { seconds: result.seconds, peakRssMiB: result.peakRssMiB! };
}

/** The README's restore by hand, its heavy part: unpack the files, load the dump. */
async function restoreByHand(out: string, into: string): Promise<Measurement> {
  const dir = join(out, readdirSync(out)[0]!);
  const names = readdirSync(dir);
  const files = names.find((n) => n.startsWith('owncloud-files_'))!;
  const dump = names.find((n) => n.startsWith('owncloud-dbbackup_'))!;
  mkdirSync(into, { recursive: true });
  const started = performance.now();
  await measure(
    [
      'tar',
      '--extract',
      '--file',
      join(dir, files),
      '--numeric-owner',
      '--acls',
      '--xattrs',
      '--xattrs-include=*',
      '--same-permissions',
    ],
    into,
  );
  const load = spawnSync('sh', [
    '-c',
    'set -e; zstd -dc "$1" | sqlite3 -bail "$2"',
    'sh',
    join(dir, dump),
    join(into, 'restored.db'),
  ]);
  if (load.status !== 0) throw new Error(`loading the dump failed: ${String(load.stderr)}`);
  const seconds = (performance.now() - started) / 1000;
  rmSync(into, { recursive: true, force: true });
  return { seconds };
}

function row(name: string, runs: Measurement[]): string {
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const cell = (xs: (number | undefined)[], digits = 2) =>
    xs.every((x) => x !== undefined) ? median(xs as number[]).toFixed(digits) : '-';
  return `| ${name} | ${cell(runs.map((r) => r.seconds))} | ${cell(runs.map((r) => r.maintenanceSeconds))} | ${cell(
    runs.map((r) => r.peakRssMiB),
    0,
  )} |`;
}

try {
  const files = Number(values.files);
  const bytes = Number(values.bytes);
  let t0 = performance.now();
  const large = await buildSampleInstance({
    database: { type: 'sqlite' },
    root: join(root, 'large'),
    bulk: { files, bytes },
  });
  console.log(
    `Built a sample of ${files} bulk files, ${(bytes / 1024 ** 3).toFixed(2)} GiB in ${((performance.now() - t0) / 1000).toFixed(1)} s.`,
  );
  const small = await buildSampleInstance({
    database: { type: 'sqlite' },
    root: join(root, 'small'),
    bulk: { files: 100, bytes: 1024 ** 2 },
  });
  const sshd = values.ssh ? await startSshd() : undefined;

  const results: Record<string, Measurement[]> = {
    ours: [],
    byHand: [],
    oursSsh: [],
    oursSmall: [],
    restore: [],
    restoreByHand: [],
  };
  for (let round = 0; round < Number(values.rounds); round++) {
    // Interleaved, so disk state after deletions affects every variant alike.
    results.ours!.push(await ours(large, join(root, `out-ours-${round}`)));
    results.byHand!.push(await byHand(large, join(root, `out-hand-${round}`)));
    if (sshd) results.oursSsh!.push(await ours(large, join(root, `out-ssh-${round}`), sshd));
    results.oursSmall!.push(await ours(small, join(root, `out-small-${round}`)));
    if (values.restore) {
      results.restore!.push(await oursRestore(large, join(root, `out-ours-${round}`)));
      results.restoreByHand!.push(
        await restoreByHand(join(root, `out-ours-${round}`), join(root, `hand-restore-${round}`)),
      );
    }
    // Each round's backups go once measured: the disk holds one round at a time.
    for (const name of ['ours', 'hand', 'ssh', 'small'])
      rmSync(join(root, `out-${name}-${round}`), { recursive: true, force: true });
    console.log(`round ${round + 1} done`);
  }
  t0 = performance.now();
  console.log(
    `\nMedians of ${values.rounds} rounds (seconds; maintenance-mode seconds; peak RSS of the tool's own process, MiB):\n`,
  );
  console.log('| variant | wall s | maintenance s | peak RSS MiB |\n| --- | --- | --- | --- |');
  console.log(
    row(
      `owncloud-backup, local, ${files} files / ${(bytes / 1024 ** 3).toFixed(2)} GiB (zstd archive + dump)`,
      results.ours!,
    ),
  );
  if (sshd)
    console.log(row('owncloud-backup over SSH (loopback), same instance', results.oursSsh!));
  console.log(
    row('by hand: rsync -Aax config data + sqlite3 .dump (no archive, no checks)', results.byHand!),
  );
  console.log(row('owncloud-backup, local, 100 files / 1 MiB', results.oursSmall!));
  if (values.restore) {
    console.log(
      row(
        'owncloud-backup restore, local, in place (verify, safety copy, files, database, checks)',
        results.restore!,
      ),
    );
    console.log(
      row(
        'restore by hand: tar --extract, then zstd -dc into sqlite3 (no checks, no safety copy)',
        results.restoreByHand!,
      ),
    );
  }
  await sshd?.stop();
} finally {
  rmSync(root, { recursive: true, force: true });
}
