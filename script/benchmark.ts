// Measures a backup of a large sample instance (default 20,000 files, 1 GiB, SQLite) against
// the documentation's commands run by hand on the same instance, and the tool's peak memory
// on a small and a large instance (it must not grow with the data).
// Usage: node script/benchmark.ts [--files N] [--bytes N] [--rounds N] [--ssh]
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
  };
  for (let round = 0; round < Number(values.rounds); round++) {
    // Interleaved, so disk state after deletions affects every variant alike.
    results.ours!.push(await ours(large, join(root, `out-ours-${round}`)));
    results.byHand!.push(await byHand(large, join(root, `out-hand-${round}`)));
    if (sshd) results.oursSsh!.push(await ours(large, join(root, `out-ssh-${round}`), sshd));
    results.oursSmall!.push(await ours(small, join(root, `out-small-${round}`)));
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
  await sshd?.stop();
} finally {
  rmSync(root, { recursive: true, force: true });
}
