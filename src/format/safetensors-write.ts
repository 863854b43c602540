/**
 * Writing a safetensors file tensor by tensor, so a multi-gigabyte checkpoint (a random test
 * model, a trained adapter) never sits in memory whole: each entry produces its F32 data only
 * when its turn comes, is narrowed to the stored dtype (round to nearest, ties to even) and
 * written out. The file appears atomically: bytes go to `<path>.tmp`, which is renamed at the end.
 * Reading lives in safetensors.ts.
 */
import { InputError } from '../errors.ts';
import { f32ToBf16, f32ToF16 } from './half.ts';
import { writeAtomically } from './atomic.ts';
import { writeAll } from './file-io.ts';
import { ITEM_SIZE } from './safetensors.ts';
import type { FloatDType, TensorInfo } from './tensor-source.ts';

export interface TensorToWrite extends TensorInfo {
  dtype: FloatDType;
  /** Produces the tensor's values, row-major, product(shape) long; called once, in order. */
  data: () => Float32Array;
}

export interface WriteOptions {
  /** Free-form strings stored as the header's "__metadata__". */
  metadata?: Record<string, string>;
}

function elementCount(shape: number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

function checkEntries(path: string, entries: TensorToWrite[]): void {
  const seen = new Set<string>();
  for (const { name, dtype, shape } of entries) {
    if (name === '__metadata__' || seen.has(name)) {
      throw new InputError(`${path}: tensor name "${name}" is reserved or used twice`);
    }
    seen.add(name);
    if (!(dtype in ITEM_SIZE)) throw new InputError(`${path}: tensor "${name}" has unsupported dtype ${dtype}`);
    if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new InputError(`${path}: tensor "${name}" has invalid shape [${shape}]`);
    }
  }
}

/** The JSON header, padded with spaces so the data region starts 8-byte aligned. */
function encodeHeader(entries: TensorToWrite[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const { name, dtype, shape } of entries) {
    const bytes = elementCount(shape) * ITEM_SIZE[dtype];
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Buffer.alloc(8 + Math.ceil(json.length / 8) * 8, 0x20);
  padded.writeBigUInt64LE(BigInt(padded.length - 8), 0);
  json.copy(padded, 8);
  return padded;
}

/** The stored bytes of F32 values narrowed to `dtype` (little-endian host assumed, as in reading). */
function encode(values: Float32Array, dtype: FloatDType): Uint8Array {
  const stored = dtype === 'F32' ? values : dtype === 'F16' ? f32ToF16(values) : f32ToBf16(values);
  return new Uint8Array(stored.buffer, stored.byteOffset, stored.byteLength);
}

/** Writes `entries` to a safetensors file at `path`, in the given order. */
export function writeSafetensors(path: string, entries: TensorToWrite[], opts: WriteOptions = {}): void {
  checkEntries(path, entries);
  writeAtomically(path, (fd) => {
    const header = encodeHeader(entries, opts.metadata);
    writeAll(fd, header, 0);
    let position = header.length;
    for (const entry of entries) {
      const values = entry.data();
      const expected = elementCount(entry.shape);
      if (values.length !== expected) {
        throw new InputError(
          `${path}: tensor "${entry.name}" produced ${values.length} values, shape [${entry.shape}] needs ${expected}`,
        );
      }
      const bytes = encode(values, entry.dtype);
      writeAll(fd, bytes, position);
      position += bytes.length;
    }
  });
}
