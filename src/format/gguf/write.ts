/**
 * Writing a GGUF v3 file (layout.ts describes the container): metadata entries with their
 * declared types, then tensors, each at an offset that is a multiple of the alignment, padded
 * with zeros as llama.cpp's own writer does (it checks that each tensor starts where the previous
 * one's padded end is).
 *
 * Tensor at a time: each tensor's bytes are produced by its `data()` when its turn comes, written
 * and dropped, so a model never sits in memory whole. The file appears atomically: bytes go to a
 * temporary file beside `path`, which is flushed and renamed into place at the end (and removed
 * if anything fails). What the bytes are (quantisation, LLaMA's names and row order) is decided
 * by the caller; this file checks only that sizes and types are consistent.
 */
import { InputError } from '../../errors.ts';
import { writeAtomically } from '../atomic.ts';
import { writeAll } from '../file-io.ts';
import type { DType } from '../tensor-source.ts';
import { byteSize, GGML_TYPES } from './ggml-types.ts';
import {
  ALIGNMENT_KEY,
  DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  INTEGER_RANGE,
  MAX_DIMS,
  VALUE_TYPE_ID,
  WRITTEN_VERSION,
  alignUp,
} from './layout.ts';
import type { GgufEntry, GgufScalarType } from './types.ts';

export interface GgufTensorToWrite {
  name: string;
  type: DType;
  /** ggml order: ne0 (the contiguous dimension, e.g. a linear weight's input size) first. */
  dims: number[];
  /** The stored bytes, exactly as long as `type` and `dims` need; called once, in order. */
  data: () => Uint8Array;
}

export interface GgufWriteOptions {
  /** Data alignment in bytes, a power of two; recorded as general.alignment when not 32. */
  alignment?: number;
}

/** A growable little-endian byte buffer for the header. */
class ByteBuilder {
  private bytes = new Uint8Array(1 << 16);
  private view = new DataView(this.bytes.buffer);
  length = 0;
  private readonly encoder = new TextEncoder();

  private reserve(n: number): number {
    if (this.length + n > this.bytes.length) {
      const grown = new Uint8Array(Math.max(this.bytes.length * 2, this.length + n));
      grown.set(this.bytes.subarray(0, this.length));
      this.bytes = grown;
      this.view = new DataView(grown.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  // Each write reserves its bytes first: reserve() may replace the buffer, and with it this.view.
  u8(v: number): void { const at = this.reserve(1); this.view.setUint8(at, v); }
  i8(v: number): void { const at = this.reserve(1); this.view.setInt8(at, v); }
  u16(v: number): void { const at = this.reserve(2); this.view.setUint16(at, v, true); }
  i16(v: number): void { const at = this.reserve(2); this.view.setInt16(at, v, true); }
  u32(v: number): void { const at = this.reserve(4); this.view.setUint32(at, v, true); }
  i32(v: number): void { const at = this.reserve(4); this.view.setInt32(at, v, true); }
  u64(v: number): void { const at = this.reserve(8); this.view.setBigUint64(at, BigInt(v), true); }
  i64(v: number): void { const at = this.reserve(8); this.view.setBigInt64(at, BigInt(v), true); }
  f32(v: number): void { const at = this.reserve(4); this.view.setFloat32(at, v, true); }
  f64(v: number): void { const at = this.reserve(8); this.view.setFloat64(at, v, true); }

  string(text: string): void {
    const utf8 = this.encoder.encode(text);
    this.u64(utf8.length);
    const at = this.reserve(utf8.length);
    this.bytes.set(utf8, at);
  }

  /** The bytes so far, zero-padded to a multiple of `alignment`. */
  padded(alignment: number): Uint8Array {
    this.reserve(alignUp(this.length, alignment) - this.length); // fresh bytes are already zero
    return this.bytes.subarray(0, this.length);
  }
}

function checkScalar(key: string, type: GgufScalarType, value: unknown): void {
  const range = INTEGER_RANGE[type];
  const ok = range
    ? Number.isInteger(value) && (value as number) >= range[0] && (value as number) <= range[1]
    : type === 'f32' || type === 'f64'
      ? typeof value === 'number'
      : type === 'bool'
        ? typeof value === 'boolean'
        : typeof value === 'string';
  if (!ok) throw new InputError(`GGUF metadata "${key}": ${JSON.stringify(value)} is not a valid ${type}`);
}

function writeScalar(out: ByteBuilder, type: GgufScalarType, value: number | boolean | string): void {
  if (type === 'string') out.string(value as string);
  else if (type === 'bool') out.u8(value ? 1 : 0);
  else out[type](value as number);
}

function writeEntry(out: ByteBuilder, entry: GgufEntry): void {
  out.string(entry.key);
  if (entry.type === 'array') {
    if (!(entry.itemType in VALUE_TYPE_ID) || entry.itemType === ('array' as string)) {
      throw new InputError(`GGUF metadata "${entry.key}": unknown item type ${entry.itemType}`);
    }
    entry.value.forEach((item) => checkScalar(entry.key, entry.itemType, item));
    out.u32(VALUE_TYPE_ID.array);
    out.u32(VALUE_TYPE_ID[entry.itemType]);
    out.u64(entry.value.length);
    for (const item of entry.value) writeScalar(out, entry.itemType, item);
    return;
  }
  if (!(entry.type in VALUE_TYPE_ID)) throw new InputError(`GGUF metadata "${entry.key}": unknown type ${entry.type}`);
  checkScalar(entry.key, entry.type, entry.value);
  out.u32(VALUE_TYPE_ID[entry.type]);
  writeScalar(out, entry.type, entry.value);
}

function checkTensor(t: GgufTensorToWrite): number {
  const type = GGML_TYPES[t.type];
  if (!type) throw new InputError(`GGUF tensor "${t.name}": unknown type ${t.type}`);
  if (t.dims.length > MAX_DIMS || !t.dims.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new InputError(`GGUF tensor "${t.name}": invalid dims [${t.dims}]`);
  }
  if (t.dims.length > 0 && t.dims[0] % type.blockSize !== 0) {
    throw new InputError(`GGUF tensor "${t.name}": ${t.type} needs rows of whole ${type.blockSize}-element blocks, ne0 is ${t.dims[0]}`);
  }
  return byteSize(type, t.dims.reduce((n, d) => n * d, 1));
}

/** Header, metadata and tensor infos, padded to where the data section starts. */
function encodeHeader(entries: GgufEntry[], tensors: GgufTensorToWrite[], sizes: number[], alignment: number): Uint8Array {
  const out = new ByteBuilder();
  const all: GgufEntry[] = alignment === DEFAULT_ALIGNMENT ? entries : [...entries, { key: ALIGNMENT_KEY, type: 'u32', value: alignment }];
  out.u32(GGUF_MAGIC);
  out.u32(WRITTEN_VERSION);
  out.u64(tensors.length);
  out.u64(all.length);
  const keys = new Set<string>();
  for (const entry of all) {
    if (keys.has(entry.key)) throw new InputError(`GGUF metadata "${entry.key}" is given twice`);
    keys.add(entry.key);
    writeEntry(out, entry);
  }
  let offset = 0;
  tensors.forEach((t, i) => {
    out.string(t.name);
    out.u32(t.dims.length);
    t.dims.forEach((d) => out.u64(d));
    out.u32(GGML_TYPES[t.type].id);
    out.u64(offset);
    offset += alignUp(sizes[i], alignment);
  });
  return out.padded(alignment);
}

/** Writes a GGUF v3 file at `path`; returns its size in bytes. */
export function writeGguf(path: string, entries: GgufEntry[], tensors: GgufTensorToWrite[], opts: GgufWriteOptions = {}): number {
  const alignment = opts.alignment ?? DEFAULT_ALIGNMENT;
  if (!Number.isInteger(alignment) || alignment <= 0 || alignment > 0xffffffff || (alignment & (alignment - 1)) !== 0) {
    throw new InputError(`GGUF alignment must be a power of two, got ${alignment}`);
  }
  if (entries.some((e) => e.key === ALIGNMENT_KEY)) throw new InputError(`set "${ALIGNMENT_KEY}" through the alignment option`);
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw new InputError(`GGUF tensor "${t.name}" is given twice`);
    names.add(t.name);
  }
  const sizes = tensors.map(checkTensor);
  const header = encodeHeader(entries, tensors, sizes, alignment);

  return writeAtomically(path, (fd) => {
    writeAll(fd, header, 0);
    let position = header.length;
    tensors.forEach((t, i) => {
      const bytes = t.data();
      if (bytes.length !== sizes[i]) {
        throw new InputError(`GGUF tensor "${t.name}": data() gave ${bytes.length} bytes, ${t.type} [${t.dims}] needs ${sizes[i]}`);
      }
      writeAll(fd, bytes, position);
      const padding = alignUp(bytes.length, alignment) - bytes.length;
      writeAll(fd, new Uint8Array(padding), position + bytes.length);
      position += bytes.length + padding;
    });
    return position;
  });
}
