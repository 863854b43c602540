/**
 * The ggml tensor types a GGUF file names by number: which ones ppd reads, and how each stores
 * its elements (in blocks of `blockSize` elements taking `blockBytes` bytes, along ne0, the
 * innermost dimension). Only the geometry lives here; the block contents are quant.ts's job.
 *
 * Numbers and geometry follow ggml.h's `enum ggml_type` and ggml-common.h's block structs. Types
 * ppd does not read are still named, so an error can say "Q5_K", not "type 13".
 */
import type { DType } from '../tensor-source.ts';

export interface GgmlTypeInfo {
  id: number;
  name: DType;
  /** Elements per block (1 for the float types). */
  blockSize: number;
  /** Bytes per block. */
  blockBytes: number;
}

/** The types ppd reads, by name; codes.ts says what each quantized block holds. */
export const GGML_TYPES: Record<DType, GgmlTypeInfo> = {
  F32: { id: 0, name: 'F32', blockSize: 1, blockBytes: 4 },
  F16: { id: 1, name: 'F16', blockSize: 1, blockBytes: 2 },
  Q4_0: { id: 2, name: 'Q4_0', blockSize: 32, blockBytes: 18 }, // f16 d; u8 qs[16]
  Q4_1: { id: 3, name: 'Q4_1', blockSize: 32, blockBytes: 20 }, // f16 d, m; u8 qs[16]
  Q5_0: { id: 6, name: 'Q5_0', blockSize: 32, blockBytes: 22 }, // f16 d; u8 qh[4], qs[16]
  Q5_1: { id: 7, name: 'Q5_1', blockSize: 32, blockBytes: 24 }, // f16 d, m; u8 qh[4], qs[16]
  Q8_0: { id: 8, name: 'Q8_0', blockSize: 32, blockBytes: 34 }, // f16 d; i8 qs[32]
  // K-quants: 256-element super-blocks.
  Q2_K: { id: 10, name: 'Q2_K', blockSize: 256, blockBytes: 84 }, // u8 scales[16], qs[64]; f16 d, dmin
  Q3_K: { id: 11, name: 'Q3_K', blockSize: 256, blockBytes: 110 }, // u8 hmask[32], qs[64], scales[12]; f16 d
  Q4_K: { id: 12, name: 'Q4_K', blockSize: 256, blockBytes: 144 }, // f16 d, dmin; u8 scales[12], qs[128]
  Q5_K: { id: 13, name: 'Q5_K', blockSize: 256, blockBytes: 176 }, // f16 d, dmin; u8 scales[12], qh[32], qs[128]
  Q6_K: { id: 14, name: 'Q6_K', blockSize: 256, blockBytes: 210 }, // u8 ql[128], qh[64]; i8 scales[16]; f16 d
  BF16: { id: 30, name: 'BF16', blockSize: 1, blockBytes: 2 },
};

const BY_ID = new Map(Object.values(GGML_TYPES).map((t) => [t.id, t]));

/** ggml's names for the types ppd does not read (ids 4 and 5 were removed from ggml long ago). */
const UNSUPPORTED_NAMES: Record<number, string> = {
  9: 'Q8_1', 15: 'Q8_K',
  16: 'IQ2_XXS', 17: 'IQ2_XS', 18: 'IQ3_XXS', 19: 'IQ1_S', 20: 'IQ4_NL', 21: 'IQ3_S', 22: 'IQ2_S',
  23: 'IQ4_XS', 24: 'I8', 25: 'I16', 26: 'I32', 27: 'I64', 28: 'F64', 29: 'IQ1_M', 34: 'TQ1_0',
  35: 'TQ2_0', 39: 'MXFP4',
};

/** The type with ggml id `id`, or undefined when ppd does not read it. */
export function ggmlTypeById(id: number): GgmlTypeInfo | undefined {
  return BY_ID.get(id);
}

/** "Q5_K (13)" for a known id, "unknown type 99" otherwise: for error messages. */
export function describeGgmlTypeId(id: number): string {
  const name = BY_ID.get(id)?.name ?? UNSUPPORTED_NAMES[id];
  return name === undefined ? `unknown type ${id}` : `${name} (${id})`;
}

export const SUPPORTED_TYPE_NAMES = Object.keys(GGML_TYPES).join(', ');

/** Bytes taken by `elements` elements of `type`; `elements` must be a whole number of blocks. */
export function byteSize(type: GgmlTypeInfo, elements: number): number {
  return (elements / type.blockSize) * type.blockBytes;
}
