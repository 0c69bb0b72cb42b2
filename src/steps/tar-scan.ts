// Reads a tar stream's headers as it passes through, unchanged: each member's name, type
// and size (and an incremental archive's directory contents, GNU.dumpdir), told one at a
// time. The data blocks are skipped, never copied or held: memory stays flat.
import { Transform, type TransformCallback } from 'node:stream';

const BLOCK = 512;
const EMPTY = Buffer.alloc(0);

/** A tar number field: octal digits, or GNU's base-256 for big values. Pure. */
export function tarNumber(field: Buffer): number {
  if (field[0]! & 0x80) {
    let value = field[0]! & 0x7f;
    for (let i = 1; i < field.length; i++) value = value * 256 + field[i]!;
    return value;
  }
  const text = field
    .toString('latin1')
    .replace(/[\0 ]+$/g, '')
    .trim();
  return text === '' ? 0 : parseInt(text, 8);
}

export function cString(field: Buffer): string {
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? field.length : end).toString('utf8');
}

/** A pax extended header's records (`LEN key=value\n`), values as raw bytes. Pure. */
export function paxRecords(data: Buffer): Map<string, Buffer> {
  const records = new Map<string, Buffer>();
  for (let at = 0; at < data.length;) {
    const space = data.indexOf(0x20, at);
    if (space === -1) break;
    const length = Number(data.subarray(at, space).toString('latin1'));
    if (!Number.isInteger(length) || length <= 0) break;
    const record = data.subarray(space + 1, at + length - 1);
    const equals = record.indexOf(0x3d);
    if (equals !== -1)
      records.set(record.subarray(0, equals).toString('utf8'), record.subarray(equals + 1));
    at += length;
  }
  return records;
}

/** The `path` of a pax extended header's records, if it has one. Pure. */
export function paxPath(data: Buffer): string | undefined {
  return paxRecords(data).get('path')?.toString('utf8');
}

/** One entry of a GNU.dumpdir: Y (in this archive), N (unchanged, not in it), D (directory). */
export interface DumpdirEntry {
  flag: string;
  name: string;
}

/** Parses a GNU.dumpdir value: `<flag><name>\0` entries, ended by an empty one. Pure. */
export function parseDumpdir(value: Buffer): DumpdirEntry[] {
  const entries: DumpdirEntry[] = [];
  for (let at = 0; at < value.length;) {
    const end = value.indexOf(0, at);
    const item = value.subarray(at, end === -1 ? value.length : end);
    if (item.length === 0) break;
    const flag = String.fromCharCode(item[0]!);
    // R/T/X record renames in a snapshot's own bookkeeping; only what is there counts.
    if (flag === 'Y' || flag === 'N' || flag === 'D')
      entries.push({ flag, name: item.subarray(1).toString('utf8') });
    at = end === -1 ? value.length : end + 1;
  }
  return entries;
}

export type MemberType = 'file' | 'directory' | 'symlink' | 'hardlink' | 'other';

export interface TarMember {
  /** As archived, without `./` or a trailing slash. */
  name: string;
  type: MemberType;
  /** Data bytes (0 for anything but files). */
  size: number;
  /** A link's target. */
  linkTarget?: string;
  /** A directory's contents in an incremental archive. */
  dumpdir?: DumpdirEntry[];
}

const padded = (size: number) => Math.ceil(size / BLOCK) * BLOCK;

function memberType(flag: string): MemberType {
  if (flag === '0' || flag === '\0' || flag === '7' || flag === 'S') return 'file';
  if (flag === '5' || flag === 'D') return 'directory';
  if (flag === '2') return 'symlink';
  if (flag === '1') return 'hardlink';
  return 'other';
}

/**
 * Passes a tar stream on unchanged and tells `onMember` about each member. Fails on a
 * stream that ends without tar's end-of-archive marker.
 */
export class TarScan extends Transform {
  /** Bytes of header material waiting for the rest of its blocks. */
  private pending: Buffer = Buffer.alloc(0);
  /** Data bytes of the current member still to skip. */
  private skip = 0;
  /** A meta record (pax header, long name) whose data is being read whole. */
  private meta: { type: string; size: number } | undefined;
  private longName: string | undefined;
  private longLink: string | undefined;
  private pax: Map<string, Buffer> | undefined;
  private ended = false;
  /** Bytes passed through. */
  bytes = 0;
  /** Bytes of the files' contents passed so far (what a progress line counts). */
  fileBytes = 0;
  /** Of the current member's data, the bytes that are file content (the rest is padding). */
  private contentLeft = 0;
  private readonly onMember: (member: TarMember) => void;
  private readonly onChunk: ((scan: TarScan) => void) | undefined;
  private readonly keepEnd: boolean;
  /** Without the marker: the start of a header block the last chunk ended in. */
  private held: Buffer = EMPTY;

  /**
   * `onChunk`: told after each chunk has been read (for progress lines). `keepEnd: false`
   * drops the end-of-archive marker (and tar's padding after it): another archive's
   * members follow it in the same stream.
   */
  constructor(
    onMember: (member: TarMember) => void,
    onChunk?: (scan: TarScan) => void,
    options: { keepEnd?: boolean } = {},
  ) {
    super();
    this.onMember = onMember;
    this.onChunk = onChunk;
    this.keepEnd = options.keepEnd ?? true;
  }

  override _transform(chunk: Buffer, _encoding: string, callback: TransformCallback): void {
    if (this.ended && !this.keepEnd) return callback();
    let endAt: number | undefined;
    try {
      endAt = this.scan(chunk);
    } catch (error) {
      return callback(error as Error);
    }
    if (this.keepEnd) {
      this.bytes += chunk.length;
      this.onChunk?.(this);
      return callback(null, chunk);
    }
    // Without the marker: a header block cut by the chunk's end is held back until it is
    // known not to be the marker; what comes from the marker on is dropped.
    const total = this.held.length > 0 ? Buffer.concat([this.held, chunk]) : chunk;
    let out: Buffer;
    if (endAt !== undefined) out = total.subarray(0, this.held.length + endAt);
    else if (this.ended) out = EMPTY;
    else {
      const holding = this.meta === undefined && this.skip === 0 ? this.pending.length : 0;
      out = total.subarray(0, total.length - holding);
      this.held = holding > 0 ? Buffer.from(total.subarray(total.length - holding)) : EMPTY;
    }
    if (this.ended) this.held = EMPTY;
    this.bytes += out.length;
    this.onChunk?.(this);
    callback(null, out.length > 0 ? out : undefined);
  }

  /**
   * Reads a chunk's headers; returns where in it the end-of-archive marker starts (negative:
   * in the bytes held back from the chunk before), or undefined.
   */
  private scan(chunk: Buffer): number | undefined {
    let at = 0;
    while (at < chunk.length && !this.ended) {
      const blockStart = at - this.pending.length;
      if (this.skip > 0) {
        const take = Math.min(this.skip, chunk.length - at);
        const content = Math.min(take, this.contentLeft);
        this.contentLeft -= content;
        this.fileBytes += content;
        this.skip -= take;
        at += take;
        continue;
      }
      const need = this.meta ? padded(this.meta.size) : BLOCK;
      const take = Math.min(need - this.pending.length, chunk.length - at);
      this.pending =
        this.pending.length === 0 && take === need
          ? chunk.subarray(at, at + take)
          : Buffer.concat([this.pending, chunk.subarray(at, at + take)]);
      at += take;
      if (this.pending.length < need) return undefined;
      const block = this.pending;
      this.pending = Buffer.alloc(0);
      if (this.meta) this.takeMeta(block);
      else {
        this.takeHeader(block);
        // A marker straddling two chunks starts before this one: drop all of this one.
        if (this.ended) return blockStart;
      }
    }
    return undefined;
  }

  private takeMeta(data: Buffer): void {
    const { type, size } = this.meta!;
    this.meta = undefined;
    const body = data.subarray(0, size);
    if (type === 'L') this.longName = cString(body);
    else if (type === 'K') this.longLink = cString(body);
    else if (type === 'x') this.pax = paxRecords(Buffer.from(body));
  }

  private takeHeader(header: Buffer): void {
    if (header.every((b) => b === 0)) {
      this.ended = true;
      return;
    }
    const flag = String.fromCharCode(header[156]!);
    const size = tarNumber(header.subarray(124, 136));
    if (flag === 'x' || flag === 'L' || flag === 'K' || flag === 'g') {
      if (size > 16 * 1024 * 1024) throw new Error(`a tar extended header of ${size} bytes`);
      if (size === 0) return;
      this.meta = { type: flag, size };
      return;
    }
    const magic = header.subarray(257, 263).toString('latin1');
    const prefix =
      magic.startsWith('ustar') && magic !== 'ustar ' ? cString(header.subarray(345, 500)) : '';
    const plain = cString(header.subarray(0, 100));
    const pax = this.pax;
    const name =
      pax?.get('path')?.toString('utf8') ??
      this.longName ??
      (prefix ? `${prefix}/${plain}` : plain);
    const link =
      pax?.get('linkpath')?.toString('utf8') ?? this.longLink ?? cString(header.subarray(157, 257));
    const type = memberType(flag);
    const paxSize = pax?.get('size');
    const dataSize = paxSize ? Number(paxSize.toString('latin1')) : size;
    const realSize = pax?.get('GNU.sparse.realsize') ?? pax?.get('GNU.sparse.size');
    const dumpdir = pax?.get('GNU.dumpdir');
    this.onMember({
      name: name.replace(/^\.\//, '').replace(/\/+$/, ''),
      type,
      size: type === 'file' ? (realSize ? Number(realSize.toString('latin1')) : dataSize) : 0,
      ...(type === 'symlink' || type === 'hardlink' ? { linkTarget: link } : {}),
      ...(dumpdir ? { dumpdir: parseDumpdir(dumpdir) } : {}),
    });
    this.pax = undefined;
    this.longName = undefined;
    this.longLink = undefined;
    // Links and directories have no data, whatever their size field says. (Old GNU
    // sparse headers with extension blocks are not written by tar --format=posix.)
    this.skip = flag === '1' || flag === '2' || flag === '5' ? 0 : padded(dataSize);
    this.contentLeft = type === 'file' ? Math.min(dataSize, this.skip) : 0;
  }

  override _flush(callback: TransformCallback): void {
    if (!this.ended)
      return callback(new Error('the tar stream ends without its end-of-archive marker'));
    callback();
  }
}
