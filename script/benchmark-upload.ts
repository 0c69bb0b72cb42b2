// Measures the artifact upload of one backup directory against the local artifact service
// (Azurite + the Twirp stand-in of test/harness), each variant in its own process so that
// its wall time, CPU time and peak memory are its own:
// - `zip`: what the action does (uploadBackupArtifact: one zip of stored entries, streamed
//   from the files by the client);
// - `raw`: one raw (skipArchive) upload per file, the floor;
// - `tar-fifo`: one raw upload of an uncompressed tar that GNU tar writes into a FIFO the
//   client reads (pipe enlarged to 1 MiB); `tar-fifo-64k`: the same with the default pipe.
// Rounds are interleaved (A B C A B C …) after a warm-up round; the table holds medians.
// Why the FIFO loses: the client reads a raw file through fs.createReadStream with an 8 MiB
// highWaterMark, and Node allocates a whole 8 MiB buffer for every read (copying when the
// read is short); a pipe yields at most its size per read, so the garbage collector runs
// many times more often than for a file. CPU time is the steadier figure on a busy machine.
// Usage: node script/benchmark-upload.ts [--mib N] [--rounds N] [--variants zip,raw,tar-fifo]
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DefaultArtifactClient } from '@actions/artifact';

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '1024' },
    rounds: { type: 'string', default: '3' },
    variants: { type: 'string', default: 'zip,raw,tar-fifo' },
    child: { type: 'string' },
    dir: { type: 'string' },
    name: { type: 'string' },
  },
});

interface Result {
  seconds: number;
  /** CPU seconds of the uploading process and the children it waited for (tar). */
  cpuSeconds: number;
  /** Of which the children's. */
  childCpuSeconds: number;
  peakRssMiB: number;
  bytes: number;
}

/** CPU time of this process and its waited-for children (/proc/self/stat, in clock ticks). */
function cpuSeconds(which: 'all' | 'children' = 'all'): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  // utime, stime, cutime, cstime are fields 14-17 of the whole line: 12-15 after "(comm) ".
  const ticks = fields.slice(which === 'all' ? 11 : 13, 15);
  return ticks.reduce((sum, value) => sum + Number(value), 0) / 100;
}

/**
 * Perl opens the FIFO for writing, enlarges it to 1 MiB (F_SETPIPE_SZ, the most a user may
 * set) and becomes tar: the client reads with an 8 MiB buffer, and every read of a default
 * 64 KiB pipe allocates a whole one.
 */
const PIPE_WRITER =
  'open(STDOUT, ">", shift) or die "open: $!"; fcntl(STDOUT, 1031, 1048576) or die "F_SETPIPE_SZ: $!"; exec { $ARGV[0] } @ARGV or die "exec: $!"';

/** One raw upload of an uncompressed tar of `dir`, streamed by tar through a FIFO. */
async function uploadTarThroughFifo(
  client: DefaultArtifactClient,
  dir: string,
  name: string,
  bigPipe: boolean,
): Promise<number> {
  const pipeDir = mkdtempSync(join(tmpdir(), 'owncloud-backup-upload-bench-fifo-'));
  const fifo = join(pipeDir, name); // the client names a raw artifact after its file
  try {
    execFileSync('mkfifo', ['-m', '0600', fifo]);
    const members = readdirSync(dir);
    const tarArgs = ['--create', '--format=posix', '--blocking-factor=256', `--directory=${dir}`];
    const argv = bigPipe
      ? ['perl', '-e', PIPE_WRITER, fifo, 'tar', ...tarArgs, '--file=-', '--', ...members]
      : ['tar', ...tarArgs, `--file=${fifo}`, '--', ...members];
    const tar = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'inherit'] });
    const exited = new Promise<number | null>((resolve) => tar.once('close', resolve));
    const response = await client.uploadArtifact(name, [fifo], pipeDir, { skipArchive: true });
    if ((await exited) !== 0) throw new Error('tar failed');
    return response.size ?? 0;
  } finally {
    rmSync(pipeDir, { recursive: true, force: true });
  }
}

/** One upload in this process; prints its result as the last line. */
async function runChild(variant: string, dir: string, name: string): Promise<void> {
  const client = new DefaultArtifactClient();
  const files = readdirSync(dir).map((file) => join(dir, file));
  const started = performance.now();
  const cpuBefore = cpuSeconds();
  const childCpuBefore = cpuSeconds('children');
  let bytes = 0;
  if (variant === 'zip') {
    // What the action does.
    const { uploadBackupArtifact } = await import('../src/destination/artifact.ts');
    const stored = await uploadBackupArtifact(dir, name, 0);
    bytes = stored.size;
  } else if (variant === 'raw') {
    for (const file of files) {
      const response = await client.uploadArtifact('raw', [file], dir, { skipArchive: true });
      bytes += response.size ?? 0;
    }
  } else if (variant === 'tar-fifo' || variant === 'tar-fifo-64k') {
    bytes = await uploadTarThroughFifo(client, dir, name, variant === 'tar-fifo');
  } else throw new Error(`unknown variant ${variant}`);
  const result: Result = {
    seconds: (performance.now() - started) / 1000,
    cpuSeconds: cpuSeconds() - cpuBefore,
    childCpuSeconds: cpuSeconds('children') - childCpuBefore,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    bytes,
  };
  console.log(`RESULT ${JSON.stringify(result)}`);
}

/** Runs one variant in a child process. */
async function runVariant(
  variant: string,
  dir: string,
  name: string,
  env: Record<string, string>,
): Promise<Result> {
  const argv = [import.meta.filename, '--child', variant, '--dir', dir, '--name', name];
  const child = spawn(process.execPath, argv, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (code !== 0 || !line) throw new Error(`${variant} failed (${code}):\n${stdout.slice(-2000)}`);
  return JSON.parse(line.slice(7)) as Result;
}

function median(numbers: number[]): number {
  const sorted = [...numbers].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

async function main(): Promise<void> {
  const { startArtifactService } = await import('../test/harness/artifact-service.ts');
  const mib = Number(values.mib);
  const rounds = Number(values.rounds);
  const variants = values.variants.split(',');
  const dir = mkdtempSync(join(tmpdir(), 'owncloud-backup-upload-bench-'));
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.once(signal, () => {
      rmSync(dir, { recursive: true, force: true });
      process.exit(130);
    });
  // A backup's shape: one big files archive, a dump, the manifest and the checksums.
  const write = (file: string, bytes: number) => {
    for (let done = 0, part = 0; done < bytes; part++) {
      const size = Math.min(64 * 2 ** 20, bytes - done);
      writeFileSync(join(dir, file), randomBytes(size), { flag: part ? 'a' : 'w', mode: 0o600 });
      done += size;
    }
  };
  write('owncloud-files_20260101.tar.zst', mib * 2 ** 20);
  write('owncloud-dbbackup_20260101.bak.zst', 20 * 2 ** 20);
  write('manifest.json', 3000);
  write('SHA256SUMS', 300);
  const results = new Map<string, Result[]>();
  try {
    for (let round = 0; round <= rounds; round++) {
      // A fresh service each round: Azurite keeps deleted blobs' memory.
      const service = await startArtifactService();
      try {
        for (const variant of variants) {
          const name = `owncloud-backup-20260101-0000${round}${variants.indexOf(variant)}`;
          const result = await runVariant(variant, dir, name, service.env);
          const label = round === 0 ? 'warm-up' : `round ${round}`;
          console.log(
            `${label} ${variant}: ${result.seconds.toFixed(2)} s, CPU ${result.cpuSeconds.toFixed(2)} s (children ${result.childCpuSeconds.toFixed(2)} s), peak RSS ${result.peakRssMiB.toFixed(0)} MiB, ${result.bytes} bytes`,
          );
          if (round > 0) results.set(variant, [...(results.get(variant) ?? []), result]);
        }
      } finally {
        await service.stop();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const floor = median((results.get('raw') ?? results.get(variants[0]!)!).map((r) => r.seconds));
  console.log(`\n${mib} MiB + 20 MiB, medians of ${rounds} rounds`);
  console.log('| variant | seconds | ratio to raw | CPU seconds | peak RSS MiB |');
  console.log('|---|--:|--:|--:|--:|');
  for (const variant of variants) {
    const runs = results.get(variant)!;
    const seconds = median(runs.map((r) => r.seconds));
    console.log(
      `| ${variant} | ${seconds.toFixed(2)} | ${(seconds / floor).toFixed(2)} | ${median(runs.map((r) => r.cpuSeconds)).toFixed(2)} | ${median(runs.map((r) => r.peakRssMiB)).toFixed(0)} |`,
    );
  }
}

if (values.child) await runChild(values.child, values.dir!, values.name!);
else await main();
