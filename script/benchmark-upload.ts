// Measures the artifact upload of one backup directory against the local artifact service
// (Azurite + the Twirp stand-in of test/harness), each variant in its own process so that
// its peak memory is its own: `tar` (what uploadBackupArtifact does: one raw upload of a
// tar streamed through a FIFO), `zip` (the earlier upload: one zip of stored entries) and
// `raw` (one raw upload per file, the floor). Rounds are interleaved (A B C A B C …) after
// a warm-up round; the table holds medians.
// Usage: node script/benchmark-upload.ts [--mib N] [--rounds N] [--variants tar,zip,raw]
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DefaultArtifactClient } from '@actions/artifact';

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '1024' },
    rounds: { type: 'string', default: '3' },
    variants: { type: 'string', default: 'tar,zip,raw' },
    child: { type: 'string' },
    dir: { type: 'string' },
    name: { type: 'string' },
  },
});

interface Result {
  seconds: number;
  /** CPU seconds of the uploading process and the children it waited for (tar). */
  cpuSeconds: number;
  peakRssMiB: number;
  bytes: number;
  artifacts: string[];
}

/** CPU time of this process and its waited-for children (/proc/self/stat, in clock ticks). */
function cpuSeconds(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  // utime, stime, cutime, cstime are fields 14-17 of the whole line: 12-15 after "(comm) ".
  return fields.slice(11, 15).reduce((sum, ticks) => sum + Number(ticks), 0) / 100;
}

/** One upload in this process; prints its result as the last line. */
async function runChild(variant: string, dir: string, name: string): Promise<void> {
  const client = new DefaultArtifactClient();
  const files = readdirSync(dir).map((file) => join(dir, file));
  const started = performance.now();
  const cpuBefore = cpuSeconds();
  let bytes = 0;
  const artifacts: string[] = [];
  if (variant === 'tar') {
    const { uploadBackupArtifact } = await import('../src/destination/artifact.ts');
    const stored = await uploadBackupArtifact(dir, name, 0);
    bytes = stored.size;
    artifacts.push(stored.name);
  } else if (variant === 'zip') {
    const response = await client.uploadArtifact(name, files, dir, { compressionLevel: 0 });
    bytes = response.size ?? 0;
    artifacts.push(name);
  } else if (variant === 'raw') {
    for (const file of files) {
      const response = await client.uploadArtifact('raw', [file], dir, { skipArchive: true });
      bytes += response.size ?? 0;
      artifacts.push(file.slice(dir.length + 1));
    }
  } else throw new Error(`unknown variant ${variant}`);
  const result: Result = {
    seconds: (performance.now() - started) / 1000,
    cpuSeconds: cpuSeconds() - cpuBefore,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    bytes,
    artifacts,
  };
  console.log(`RESULT ${JSON.stringify(result)}`);
}

/** Runs one variant in a child process and polls the disk's free space while it runs. */
async function runVariant(
  variant: string,
  dir: string,
  name: string,
  env: Record<string, string>,
): Promise<Result & { diskMiB: number }> {
  const free = () => {
    const stats = statfsSync(dir);
    return stats.bavail * stats.bsize;
  };
  const before = free();
  let lowest = before;
  const poll = setInterval(() => (lowest = Math.min(lowest, free())), 50);
  const argv = [import.meta.filename, '--child', variant, '--dir', dir, '--name', name];
  const child = spawn(process.execPath, argv, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  clearInterval(poll);
  const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (code !== 0 || !line) throw new Error(`${variant} failed (${code}):\n${stdout.slice(-2000)}`);
  // Others write to this disk too: the figure is an upper bound of what the upload used.
  return { ...(JSON.parse(line.slice(7)) as Result), diskMiB: (before - lowest) / 2 ** 20 };
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
  const results = new Map<string, (Result & { diskMiB: number })[]>();
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
            `${label} ${variant}: ${result.seconds.toFixed(2)} s, CPU ${result.cpuSeconds.toFixed(2)} s, peak RSS ${result.peakRssMiB.toFixed(0)} MiB, ${result.bytes} bytes, disk +${result.diskMiB.toFixed(0)} MiB`,
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
  console.log('| variant | seconds | ratio to raw | CPU seconds | peak RSS MiB | extra disk MiB |');
  console.log('|---|--:|--:|--:|--:|--:|');
  for (const variant of variants) {
    const runs = results.get(variant)!;
    const seconds = median(runs.map((r) => r.seconds));
    console.log(
      `| ${variant} | ${seconds.toFixed(2)} | ${(seconds / floor).toFixed(2)} | ${median(runs.map((r) => r.cpuSeconds)).toFixed(2)} | ${median(runs.map((r) => r.peakRssMiB)).toFixed(0)} | ${median(runs.map((r) => r.diskMiB)).toFixed(0)} |`,
    );
  }
}

if (values.child) await runChild(values.child, values.dir!, values.name!);
else await main();
