// A tar stream cut down to some members, here on the runner: records are passed through
// byte for byte (with the extended headers that belong to them: GNU long names, pax headers
// with ACLs and xattrs, sparse maps) or skipped, and the stream ends with tar's end-of-archive
// marker. A restore of single paths then sends the host only what it extracts, not the whole
// archive. Memory stays flat: data blocks stream; only headers are looked at.
import { Transform, type TransformCallback } from 'node:stream';
import { isAtOrBelow } from './archive-listing.ts';
import { cString, paxPath, tarNumber } from './tar-scan.ts';

const BLOCK = 512;

const padded = (size: number) => Math.ceil(size / BLOCK) * BLOCK;

/** Keeps the members at or below any of `members` (tar's own rule for member names). */
export class TarFilter extends Transform {
  private buffer: Buffer = Buffer.alloc(0);
  /** Extended headers (and their data) waiting for the member they describe. */
  private pending: Buffer[] = [];
  private longName: string | undefined;
  private paxName: string | undefined;
  /** Bytes of the current record's data still to pass on (keep) or drop. */
  private remaining = 0;
  private keeping = false;
  /** Waiting for this many bytes of a meta record's data (read whole). */
  private meta: { type: string; size: number } | undefined;
  private ended = false;
  /** Members passed on. */
  kept = 0;
  private readonly members: readonly string[];

  constructor(members: readonly string[]) {
    super();
    this.members = members;
  }

  private wanted(name: string): boolean {
    const clean = name.replace(/^\.\//, '').replace(/\/+$/, '');
    return this.members.some((m) => isAtOrBelow(clean, m));
  }

  override _transform(chunk: Buffer, _encoding: string, callback: TransformCallback): void {
    if (this.ended) return callback();
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    try {
      this.drain();
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  private drain(): void {
    for (;;) {
      if (this.ended) return;
      if (this.remaining > 0) {
        if (this.buffer.length === 0) return;
        const take = Math.min(this.remaining, this.buffer.length);
        if (this.keeping) this.push(this.buffer.subarray(0, take));
        this.buffer = this.buffer.subarray(take);
        this.remaining -= take;
        continue;
      }
      if (this.meta) {
        const need = padded(this.meta.size);
        if (this.buffer.length < need) return;
        const data = this.buffer.subarray(0, need);
        this.pending.push(Buffer.from(data));
        if (this.meta.type === 'L') this.longName = cString(data.subarray(0, this.meta.size));
        if (this.meta.type === 'x') this.paxName = paxPath(data.subarray(0, this.meta.size));
        this.buffer = this.buffer.subarray(need);
        this.meta = undefined;
        continue;
      }
      if (this.buffer.length < BLOCK) return;
      const header = this.buffer.subarray(0, BLOCK);
      if (header.every((b) => b === 0)) {
        this.ended = true;
        this.push(Buffer.alloc(2 * BLOCK));
        return;
      }
      const type = String.fromCharCode(header[156]!) || '0';
      const size = tarNumber(header.subarray(124, 136));
      // GNU sparse files carry their map in extension blocks after the header.
      let headerBlocks = 1;
      if (type === 'S' && header[482] === 1) {
        for (;;) {
          if (this.buffer.length < (headerBlocks + 1) * BLOCK) return;
          const extension = this.buffer.subarray(headerBlocks * BLOCK, (headerBlocks + 1) * BLOCK);
          headerBlocks++;
          if (extension[504] !== 1) break;
        }
      }
      const headerBytes = Buffer.from(this.buffer.subarray(0, headerBlocks * BLOCK));
      this.buffer = this.buffer.subarray(headerBlocks * BLOCK);
      if (type === 'x' || type === 'L' || type === 'K' || type === 'g') {
        this.pending.push(headerBytes);
        this.meta = { type, size };
        continue;
      }
      const magic = header.subarray(257, 263).toString('latin1');
      const prefix =
        magic.startsWith('ustar') && magic !== 'ustar ' ? cString(header.subarray(345, 500)) : '';
      const plain = cString(header.subarray(0, 100));
      const name = this.paxName ?? this.longName ?? (prefix ? `${prefix}/${plain}` : plain);
      this.keeping = this.wanted(name);
      if (this.keeping) {
        for (const part of this.pending) this.push(part);
        this.push(headerBytes);
        this.kept++;
      }
      this.pending = [];
      this.longName = undefined;
      this.paxName = undefined;
      // Links and directories have no data, whatever their size field says.
      this.remaining = type === '1' || type === '2' || type === '5' ? 0 : padded(size);
    }
  }

  override _flush(callback: TransformCallback): void {
    if (!this.ended)
      return callback(new Error('the archive ends without tar’s end-of-archive marker'));
    callback();
  }
}
