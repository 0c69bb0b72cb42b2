// `owncloud-backup verify DIR`: proves a backup directory is whole, from its manifest alone:
// every archive has the recorded size and SHA-256, decompresses completely, the dump ends
// with its engine's completion line and has the recorded size, and the files archive
// lists the data directory with ownCloud's marker. Reads each archive once.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { engineFor } from './database/index.ts';
import { InputError } from './errors.ts';
import { streamProcess } from './host/process.ts';
import { MANIFEST_FORMAT, type ArchiveRecord, type Manifest } from './manifest.ts';
import { MANIFEST_NAME } from './naming.ts';

export interface Check {
  ok: boolean;
  what: string;
}

function readManifest(directory: string): Manifest {
  const path = join(directory, MANIFEST_NAME);
  if (!existsSync(path))
    throw new InputError(`${directory} has no ${MANIFEST_NAME}: it is not a finished backup.`);
  let manifest: Manifest;
  try {
    manifest = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
  } catch {
    throw new InputError(`${path} is not valid JSON.`);
  }
  if (manifest.format !== MANIFEST_FORMAT)
    throw new InputError(`${path} is not an ${MANIFEST_FORMAT} manifest.`);
  return manifest;
}

/** Hashes the archive and feeds it, decompressed, to `consume`; returns the hash and the exit status. */
async function readArchive(path: string, archive: ArchiveRecord, consume: Writable) {
  const hash = createHash('sha256');
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      callback(null, chunk);
    },
  });
  const decompress = streamProcess(
    archive.compression === 'zstd' ? ['zstd', '-dc', '-q'] : ['gzip', '-dc'],
    { feedStdin: true },
  );
  // A damaged archive makes the decompressor (or tar after it) stop early: that is a
  // finding, not an error of this command.
  const [read, consumed, result] = await Promise.allSettled([
    pipeline(createReadStream(path), tap, decompress.stdin),
    pipeline(decompress.stdout, consume),
    decompress.done,
  ]);
  const decompressed =
    read.status === 'fulfilled' &&
    consumed.status === 'fulfilled' &&
    result.status === 'fulfilled' &&
    result.value.exitCode === 0;
  return { sha256: hash.digest('hex'), decompressed };
}

export async function verifyBackup(directory: string): Promise<Check[]> {
  const manifest = readManifest(directory);
  const checks: Check[] = [];
  for (const archive of manifest.archives) {
    const path = join(directory, archive.name);
    if (!existsSync(path)) {
      checks.push({ ok: false, what: `${archive.name} is missing` });
      continue;
    }
    const size = statSync(path).size;
    checks.push({
      ok: size === archive.size,
      what: `${archive.name}: size ${size} (manifest: ${archive.size})`,
    });

    let bytes = 0;
    let tail = Buffer.alloc(0);
    const consume = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        bytes += chunk.length;
        tail = Buffer.concat([tail, chunk]).subarray(-4096);
        callback();
      },
    });
    const listing =
      archive.role === 'files'
        ? streamProcess(['tar', '--list', '--file=-'], { feedStdin: true })
        : undefined;
    const target = listing ? listing.stdin : consume;
    const [read, listed] = await Promise.all([
      readArchive(path, archive, target as Writable),
      listing
        ? Promise.all([scanListing(listing.stdout), listing.done])
        : Promise.resolve(undefined),
    ]);
    checks.push({
      ok: read.sha256 === archive.sha256,
      what: `${archive.name}: sha256 ${read.sha256 === archive.sha256 ? 'matches' : `is ${read.sha256}, manifest says ${archive.sha256}`}`,
    });
    checks.push({
      ok: read.decompressed,
      what: `${archive.name}: decompresses ${read.decompressed ? 'completely' : 'with errors (damaged or cut short)'}`,
    });

    if (archive.role === 'database') {
      const problem = engineFor(manifest.database.type).checkTail(tail.toString('utf8'));
      checks.push({
        ok: problem === undefined,
        what: `${archive.name}: ${problem ?? `ends with the ${manifest.database.dumpTool} completion line`}`,
      });
      checks.push({
        ok: bytes === manifest.database.dumpBytes,
        what: `${archive.name}: ${bytes} bytes of SQL (manifest: ${manifest.database.dumpBytes})`,
      });
    } else if (listed) {
      const [{ entries, marker }, result] = listed;
      checks.push({
        ok: result.exitCode === 0,
        what: `${archive.name}: tar lists ${entries} entries`,
      });
      checks.push({
        ok: marker,
        what: `${archive.name}: ${marker ? 'holds' : 'lacks'} the data directory's .ocdata/.ncdata marker`,
      });
    }
  }
  return checks;
}

/** Counts tar's listing line by line (never holding it whole) and looks for the marker. */
async function scanListing(
  stream: NodeJS.ReadableStream,
): Promise<{ entries: number; marker: boolean }> {
  let entries = 0;
  let marker = false;
  let partial = '';
  for await (const chunk of stream) {
    const lines = (partial + String(chunk)).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      entries++;
      if (line === 'data/.ocdata' || line === 'data/.ncdata') marker = true;
    }
  }
  return { entries, marker };
}
