/**
 * The GGUF container's fixed numbers, shared by the reader (read.ts) and the writer (write.ts).
 *
 * File layout (all little-endian; "string" = u64 byte length + UTF-8 bytes, no terminator):
 *
 *   u32 magic "GGUF" | u32 version | u64 tensor_count | u64 kv_count
 *   kv_count x  { string key | u32 value_type | value }          value: scalar, string, or
 *                                                                  { u32 item_type | u64 n | n values }
 *   tensor_count x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
 *   zero padding to `alignment` | tensor data, each tensor at data_start + offset
 *
 * `alignment` is the u32 value of "general.alignment", 32 when absent; every tensor offset is a
 * multiple of it. ne[0] is the innermost (contiguous) dimension: the reverse of PyTorch's order.
 */
import type { GgufScalarType } from './types.ts';

/** "GGUF" read as a little-endian u32. */
export const GGUF_MAGIC = 0x46554747;
/** v1 used u32 counts and lengths; v2 moved to u64; v3 only added big-endian files (refused here). */
export const READABLE_VERSIONS = [2, 3];
export const WRITTEN_VERSION = 3;
export const DEFAULT_ALIGNMENT = 32;
export const ALIGNMENT_KEY = 'general.alignment';
/** ggml's GGML_MAX_DIMS: a tensor info with more dimensions is corrupt. */
export const MAX_DIMS = 4;

/** gguf_type numbers of the metadata value types. */
export const VALUE_TYPE_ID: Record<GgufScalarType | 'array', number> = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
};

export const VALUE_TYPE_BY_ID = new Map(Object.entries(VALUE_TYPE_ID).map(([name, id]) => [id, name as GgufScalarType | 'array']));

/** Inclusive integer ranges of the integer types (64-bit ones limited to what a JS number holds exactly). */
export const INTEGER_RANGE: Partial<Record<GgufScalarType, [number, number]>> = {
  u8: [0, 0xff],
  i8: [-0x80, 0x7f],
  u16: [0, 0xffff],
  i16: [-0x8000, 0x7fff],
  u32: [0, 0xffffffff],
  i32: [-0x80000000, 0x7fffffff],
  u64: [0, Number.MAX_SAFE_INTEGER],
  i64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
};

/** Bytes of a fixed-size scalar (strings are 8 + length, arrays 12 + items). */
export const SCALAR_BYTES: Partial<Record<GgufScalarType, number>> = {
  u8: 1, i8: 1, bool: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, u64: 8, i64: 8, f64: 8,
};

export function alignUp(position: number, alignment: number): number {
  return Math.ceil(position / alignment) * alignment;
}
