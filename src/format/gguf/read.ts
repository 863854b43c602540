/**
 * Reading the GGUF container (v2 and v3, little-endian): header, metadata, tensor infos, and a
 * tensor's raw bytes on request. What the bytes mean (dequantisation, LLaMA names, the Q/K row
 * order) is for quant.ts and the llama-*.ts modules; this file knows only the container
 * (layout.ts describes it).
 *
 * Opening reads the header through a small window, so a multi-gigabyte file costs its metadata
 * (the tokenizer's arrays: a few MB) and nothing more. Every length and count is checked against
 * the bytes left before anything is allocated, so a corrupt or hostile file ends in a
 * FormatError naming the file and what is wrong, never in a crash or a huge allocation.
 * Positions are plain numbers (exact to 2^53) and reads go in chunks, so files over 2 GiB work.
 */
import { FormatError } from '../../errors.ts';
import { littleEndian, type ReadableFile } from '../readable-file.ts';
import {
  ALIGNMENT_KEY,
  DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  MAX_DIMS,
  READABLE_VERSIONS,
  SCALAR_BYTES,
  VALUE_TYPE_BY_ID,
  VALUE_TYPE_ID,
  alignUp,
} from './layout.ts';
import { byteSize, describeGgmlTypeId, ggmlTypeById, SUPPORTED_TYPE_NAMES, type GgmlTypeInfo } from './ggml-types.ts';
import type { GgufMetadata, GgufValue } from './types.ts';

export interface GgufTensorInfo {
  name: string;
  type: GgmlTypeInfo;
  /** ggml order: ne0 (the contiguous dimension) first. */
  dims: number[];
  elements: number;
  /** Absolute file position of the first byte. */
  position: number;
  byteLength: number;
}

export interface GgufFile {
  readonly path: string;
  /** The file's ReadableFile.stamp (name, size, modification time). */
  readonly stamp: string;
  readonly version: number;
  readonly alignment: number;
  readonly metadata: GgufMetadata;
  /** Each key's stored type: "u32", "string", "array<string>", "array<array<u8>>", ... */
  readonly metadataTypes: ReadonlyMap<string, string>;
  /** In file order. */
  readonly tensors: readonly GgufTensorInfo[];
  tensor(name: string): GgufTensorInfo | undefined;
  /** The tensor's stored bytes, in a fresh buffer (so typed views over it are aligned). */
  readBytes(tensor: GgufTensorInfo): Uint8Array;
  /**
   * Fills `dst` from byte `offset` of the tensor's stored bytes (a row of it, say); a FormatError
   * when that runs past the tensor. Allowed after close() while a retain() is held.
   */
  readPart(tensor: GgufTensorInfo, offset: number, dst: Uint8Array): void;
  /**
   * Keeps the file open past close() until the returned release is called, for reads of rows on
   * demand after the loader is done with the file (readPart).
   */
  retain(): () => void;
  close(): void;
}

/** Header bytes fetched per read while parsing; strings longer than this get a read of their own. */
const WINDOW_BYTES = 1 << 20;
/** Arrays nest in the format; deeper than this is a corrupt file, not a model. */
const MAX_ARRAY_DEPTH = 8;

/** Sequential little-endian reads of the header, each checked against the file's end. */
class HeaderReader {
  position = 0;
  private window = new Uint8Array(0);
  private view = new DataView(this.window.buffer);
  private windowStart = 0;
  private readonly decoder = new TextDecoder('utf-8');

  constructor(
    private readonly source: ReadableFile,
    readonly file: string,
    readonly fileSize: number,
  ) {}

  get remaining(): number {
    return this.fileSize - this.position;
  }

  /** Makes `n` bytes at the current position readable; returns their offset in the window. */
  private take(n: number, what: string): number {
    if (n > this.remaining) {
      throw new FormatError(this.file, `truncated: ${what} at byte ${this.position} needs ${n} bytes, but the file ends at ${this.fileSize}`);
    }
    const end = this.position + n;
    if (this.position < this.windowStart || end > this.windowStart + this.window.length) {
      this.window = new Uint8Array(Math.min(Math.max(n, WINDOW_BYTES), this.remaining));
      this.source.read(this.window, this.position);
      this.view = new DataView(this.window.buffer);
      this.windowStart = this.position;
    }
    const at = this.position - this.windowStart;
    this.position = end;
    return at;
  }

  // Each read takes its bytes first: take() may replace the window, and with it this.view.
  u8(what: string): number { const o = this.take(1, what); return this.view.getUint8(o); }
  i8(what: string): number { const o = this.take(1, what); return this.view.getInt8(o); }
  u16(what: string): number { const o = this.take(2, what); return this.view.getUint16(o, true); }
  i16(what: string): number { const o = this.take(2, what); return this.view.getInt16(o, true); }
  u32(what: string): number { const o = this.take(4, what); return this.view.getUint32(o, true); }
  i32(what: string): number { const o = this.take(4, what); return this.view.getInt32(o, true); }
  f32(what: string): number { const o = this.take(4, what); return this.view.getFloat32(o, true); }
  f64(what: string): number { const o = this.take(8, what); return this.view.getFloat64(o, true); }

  /** A 64-bit integer as a number; beyond 2^53 it could not be an honest count, size or value. */
  u64(what: string): number {
    const at = this.position;
    const o = this.take(8, what);
    const value = this.view.getBigUint64(o, true);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError(this.file, `${what} at byte ${at} is ${value}, too large`);
    return Number(value);
  }

  i64(what: string): number {
    const at = this.position;
    const o = this.take(8, what);
    const value = this.view.getBigInt64(o, true);
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new FormatError(this.file, `${what} at byte ${at} is ${value}, beyond what ppd can hold exactly`);
    }
    return Number(value);
  }

  string(what: string): string {
    const at = this.position;
    const length = this.u64(`${what} length`);
    if (length > this.remaining) {
      throw new FormatError(this.file, `${what} at byte ${at} claims ${length} bytes, past the end of the file`);
    }
    const offset = this.take(length, what);
    return this.decoder.decode(this.window.subarray(offset, offset + length));
  }

  /** A count of items, each at least `minItemBytes` long, that must fit in the rest of the file. */
  count(what: string, minItemBytes: number): number {
    const at = this.position;
    const n = this.u64(what);
    if (n * minItemBytes > this.remaining) {
      throw new FormatError(this.file, `${what} at byte ${at} is ${n}, more than the ${this.remaining} bytes left could hold`);
    }
    return n;
  }
}

/** Smallest encoding of a value of this type: scalars' size, 8 for a string, 12 for an array. */
function minValueBytes(typeId: number): number {
  const name = VALUE_TYPE_BY_ID.get(typeId);
  if (name === 'string') return 8;
  if (name === 'array') return 12;
  return SCALAR_BYTES[name as keyof typeof SCALAR_BYTES] ?? 1;
}

/** Reads one value of type `typeId`; returns it with its type's name ("u32", "array<string>"). */
function readValue(r: HeaderReader, typeId: number, key: string, depth = 0): { value: GgufValue; type: string } {
  const what = `value of "${key}"`;
  switch (typeId) {
    case VALUE_TYPE_ID.u8: return { value: r.u8(what), type: 'u8' };
    case VALUE_TYPE_ID.i8: return { value: r.i8(what), type: 'i8' };
    case VALUE_TYPE_ID.u16: return { value: r.u16(what), type: 'u16' };
    case VALUE_TYPE_ID.i16: return { value: r.i16(what), type: 'i16' };
    case VALUE_TYPE_ID.u32: return { value: r.u32(what), type: 'u32' };
    case VALUE_TYPE_ID.i32: return { value: r.i32(what), type: 'i32' };
    case VALUE_TYPE_ID.u64: return { value: r.u64(what), type: 'u64' };
    case VALUE_TYPE_ID.i64: return { value: r.i64(what), type: 'i64' };
    case VALUE_TYPE_ID.f32: return { value: r.f32(what), type: 'f32' };
    case VALUE_TYPE_ID.f64: return { value: r.f64(what), type: 'f64' };
    case VALUE_TYPE_ID.string: return { value: r.string(what), type: 'string' };
    case VALUE_TYPE_ID.bool: {
      const at = r.position;
      const byte = r.u8(what);
      if (byte > 1) throw new FormatError(r.file, `${what} at byte ${at} is a bool stored as ${byte} (must be 0 or 1)`);
      return { value: byte === 1, type: 'bool' };
    }
    case VALUE_TYPE_ID.array: {
      if (depth >= MAX_ARRAY_DEPTH) throw new FormatError(r.file, `"${key}" nests arrays more than ${MAX_ARRAY_DEPTH} deep`);
      const at = r.position;
      const itemType = r.u32(`item type of "${key}"`);
      if (!VALUE_TYPE_BY_ID.has(itemType)) throw new FormatError(r.file, `"${key}" at byte ${at}: unknown array item type ${itemType}`);
      const n = r.count(`length of "${key}"`, minValueBytes(itemType));
      const items: GgufValue[] = new Array(n);
      let type = `array<${VALUE_TYPE_BY_ID.get(itemType)}>`;
      for (let i = 0; i < n; i++) {
        const item = readValue(r, itemType, key, depth + 1);
        items[i] = item.value;
        if (i === 0) type = `array<${item.type}>`; // spells out nested item types
      }
      return { value: items, type };
    }
    default:
      throw new FormatError(r.file, `"${key}" at byte ${r.position - 4}: unknown value type ${typeId}`);
  }
}

function readPreamble(r: HeaderReader): number {
  if (r.fileSize < 4 || r.u32('magic') !== GGUF_MAGIC) throw new FormatError(r.file, 'not a GGUF file (no "GGUF" magic at byte 0)');
  const version = r.u32('version');
  if (!READABLE_VERSIONS.includes(version)) {
    // A big-endian file's version reads byte-swapped: 3 becomes 0x03000000.
    const swapped = (version & 0xffff) === 0 && version !== 0;
    const why = swapped ? 'a big-endian GGUF, which ppd does not read' : version === 1 ? 'GGUF v1, long obsolete' : 'an unknown version';
    throw new FormatError(r.file, `GGUF version ${version} is ${why} (ppd reads v2 and v3)`);
  }
  return version;
}

function readMetadata(r: HeaderReader, count: number): { metadata: Map<string, GgufValue>; types: Map<string, string>; alignment: number } {
  const metadata = new Map<string, GgufValue>();
  const types = new Map<string, string>();
  for (let i = 0; i < count; i++) {
    const key = r.string(`key of metadata entry ${i}`);
    if (metadata.has(key)) throw new FormatError(r.file, `metadata key "${key}" appears twice`);
    const typeId = r.u32(`value type of "${key}"`);
    const { value, type } = readValue(r, typeId, key);
    metadata.set(key, value);
    types.set(key, type);
  }
  let alignment = DEFAULT_ALIGNMENT;
  if (metadata.has(ALIGNMENT_KEY)) {
    alignment = metadata.get(ALIGNMENT_KEY) as number;
    if (types.get(ALIGNMENT_KEY) !== 'u32' || alignment === 0 || (alignment & (alignment - 1)) !== 0) {
      throw new FormatError(r.file, `"${ALIGNMENT_KEY}" must be a u32 power of two, got ${types.get(ALIGNMENT_KEY)} ${JSON.stringify(metadata.get(ALIGNMENT_KEY))}`);
    }
  }
  return { metadata, types, alignment };
}

/** One tensor info; `position` is relative to the data section until the caller rebases it. */
function readTensorInfo(r: HeaderReader, index: number): GgufTensorInfo {
  const name = r.string(`name of tensor ${index}`);
  const where = `tensor "${name}"`;
  const nDims = r.u32(`${where} dimension count`);
  if (nDims > MAX_DIMS) throw new FormatError(r.file, `${where} has ${nDims} dimensions (at most ${MAX_DIMS})`);
  const dims: number[] = [];
  let elements = 1;
  for (let d = 0; d < nDims; d++) {
    dims.push(r.u64(`${where} dimension ${d}`));
    elements *= dims[d];
    if (!Number.isSafeInteger(elements)) throw new FormatError(r.file, `${where} has too many elements ([${dims}...])`);
  }
  const typeId = r.u32(`${where} type`);
  const type = ggmlTypeById(typeId);
  if (!type) {
    throw new FormatError(r.file, `${where} is stored as ${describeGgmlTypeId(typeId)}, which ppd does not read (it reads ${SUPPORTED_TYPE_NAMES})`);
  }
  if (nDims > 0 && dims[0] % type.blockSize !== 0) {
    throw new FormatError(r.file, `${where}: row length ${dims[0]} is not a multiple of ${type.name}'s block of ${type.blockSize}`);
  }
  const offset = r.u64(`${where} offset`);
  return { name, type, dims, elements, position: offset, byteLength: byteSize(type, elements) };
}

/** Rebases tensor offsets to file positions and checks alignment, bounds, overlaps and names. */
function placeTensors(file: string, tensors: GgufTensorInfo[], dataStart: number, alignment: number, fileSize: number): void {
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw new FormatError(file, `tensor "${t.name}" appears twice`);
    names.add(t.name);
    if (t.position % alignment !== 0) {
      throw new FormatError(file, `tensor "${t.name}": data offset ${t.position} is not a multiple of the alignment ${alignment}`);
    }
    t.position += dataStart;
    if (t.position + t.byteLength > fileSize) {
      throw new FormatError(file, `tensor "${t.name}": data [${t.position}, ${t.position + t.byteLength}) lies beyond the end of the file (${fileSize} bytes); truncated?`);
    }
  }
  const byStart = [...tensors].sort((a, b) => a.position - b.position);
  for (let i = 1; i < byStart.length; i++) {
    const [prev, next] = [byStart[i - 1], byStart[i]];
    if (next.position < prev.position + prev.byteLength) {
      throw new FormatError(file, `tensors "${prev.name}" and "${next.name}" overlap in the data section`);
    }
  }
}

/** Parses everything of a GGUF file but the tensor data; closing the result closes the file. */
export function readGguf(source: ReadableFile): GgufFile {
  const path = source.name;
  try {
    if (!littleEndian) throw new Error('ppd reads GGUF only on little-endian hosts');
    const r = new HeaderReader(source, path, source.size);
    const version = readPreamble(r);
    const tensorCount = r.count('tensor count', 8 + 4 + 4 + 8); // name length, n_dims, type, offset
    const kvCount = r.count('metadata entry count', 8 + 4 + 1); // key length, type, smallest value
    const { metadata, types, alignment } = readMetadata(r, kvCount);
    const tensors: GgufTensorInfo[] = [];
    for (let i = 0; i < tensorCount; i++) tensors.push(readTensorInfo(r, i));
    placeTensors(path, tensors, alignUp(r.position, alignment), alignment, r.fileSize);
    return ggufFile(source, version, alignment, metadata, types, tensors);
  } catch (err) {
    source.close();
    throw err;
  }
}

function ggufFile(
  source: ReadableFile,
  version: number,
  alignment: number,
  metadata: GgufMetadata,
  metadataTypes: ReadonlyMap<string, string>,
  tensors: GgufTensorInfo[],
): GgufFile {
  const path = source.name;
  const byName = new Map(tensors.map((t) => [t.name, t]));
  let open = true;
  let retained = 0;
  const closeIfUnused = () => {
    if (!open && retained === 0) source.close();
  };
  return {
    path,
    stamp: source.stamp,
    version,
    alignment,
    metadata,
    metadataTypes,
    tensors,
    tensor: (name) => byName.get(name),
    readBytes(tensor: GgufTensorInfo): Uint8Array {
      if (!open) throw new Error(`${path}: read of "${tensor.name}" after close()`);
      const bytes = new Uint8Array(tensor.byteLength);
      source.read(bytes, tensor.position);
      return bytes;
    },
    readPart(tensor: GgufTensorInfo, offset: number, dst: Uint8Array): void {
      if (!open && retained === 0) throw new Error(`${path}: read of "${tensor.name}" after close()`);
      if (!(Number.isInteger(offset) && offset >= 0 && offset + dst.length <= tensor.byteLength)) {
        throw new FormatError(path, `bytes ${offset}..${offset + dst.length} of tensor "${tensor.name}" are past its ${tensor.byteLength} bytes`);
      }
      source.read(dst, tensor.position + offset);
    },
    retain(): () => void {
      if (!open) throw new Error(`${path}: retain() after close()`);
      retained++;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        retained--;
        closeIfUnused();
      };
    },
    close(): void {
      if (!open) return;
      open = false;
      closeIfUnused();
    },
  };
}
