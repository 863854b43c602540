/**
 * Every quantized ggml block type ppd reads, seen as integer codes: element e of a tensor stands
 * for
 *
 *   x[e] = scale[s] * (code[e] - zeroPoint) - offset[s]        s = floor(e / subBlock)
 *
 * with one zero point per type and an offset only where the type stores a minimum. This is the
 * form both consumers need: dequantisation (quant.ts) evaluates it in ggml's own F32 order of
 * operations, and the MatMulNBits re-layout (block-quantized.ts) keeps the codes and scales as
 * they are, so a weight stays exactly what the file says. Not here: writing blocks (quantizers.ts)
 * and the container (read.ts).
 *
 * Block layouts (ggml-common.h; d and dmin are F16, q the stored integers, "sub" the sub-block
 * that owns a scale):
 *
 *   type  elements bytes  sub  code bits  zero point  offset        x
 *   Q8_0      32     34    32     8          128        -           d * q,  q int8 (code = q + 128)
 *   Q4_0      32     18    32     4            8        -           d * (q - 8)
 *   Q4_1      32     20    32     4            0       -m           d * q + m
 *   Q5_0      32     22    32     5           16        -           d * (q - 16)
 *   Q5_1      32     24    32     5            0       -m           d * q + m
 *   Q2_K     256     84    16     2            0      dmin * mn     d * sc * q - dmin * mn   (4-bit sc, mn)
 *   Q3_K     256    110    16     3            4        -           d * (sc - 32) * (q - 4)  (6-bit sc)
 *   Q4_K     256    144    32     4            0      dmin * mn     d * sc * q - dmin * mn   (6-bit sc, mn)
 *   Q5_K     256    176    32     5            0      dmin * mn     d * sc * q - dmin * mn   (6-bit sc, mn)
 *   Q6_K     256    210    16     6           32        -           d * sc * (q - 32)        (int8 sc)
 *
 * The K-quants' offsets are integers too (mn, 4 or 6 bits) under one F16 dmin per super-block;
 * Codes keeps that form beside the values, so the graph can multiply by them as integers.
 *
 * Where the bits of one element live inside a block is each decoder's business; the comments
 * there say how. A tensor is its rows' blocks back to back; blocks run along a row (ne0).
 */
import { f16BitsToNumber } from '../half.ts';

const fround = Math.fround;

/** A quantized tensor as codes, sub-block scales and (for types with a minimum) offsets. */
export interface Codes {
  /** Elements per scale (and offset): 16 or 32. */
  subBlock: number;
  /** Bits a code needs (2..8); a code is below 2^codeBits. */
  codeBits: number;
  /** The code that stands for zero (before the offset). */
  zeroPoint: number;
  /** [n] one unsigned code per element. */
  codes: Uint8Array;
  /** [n / subBlock] */
  scales: Float32Array;
  /** [n / subBlock], subtracted after scaling; absent for types without a minimum. */
  offsets?: Float32Array;
  /**
   * The K-quants' offsets as integers under one scale per super-block: offsets[s] =
   * offsetScales[floor(s / offsetGroup)] * offsetCodes[s] (dmin * min), exactly. Absent for
   * Q4_1/Q5_1, whose minimums are free F16 values.
   */
  offsetCodes?: Uint8Array;
  offsetScales?: Float32Array;
  offsetGroup?: number;
}

/** Writes block b's codes from codes[e0] on and its sub-blocks' scales (and offsets) from [s0] on. */
type BlockDecoder = (bytes: Uint8Array, at: number, out: Codes, e0: number, s0: number) => void;

export interface CodeLayout {
  /** Elements per ggml block. */
  blockSize: number;
  blockBytes: number;
  subBlock: 16 | 32;
  codeBits: number;
  zeroPoint: number;
  hasOffsets: boolean;
  decode: BlockDecoder;
  /** Sub-blocks under one minimum scale (dmin), for the K-quants with minimums. */
  offsetGroup?: number;
}

/** The F16 at bytes[at], little-endian. */
export function f16At(bytes: Uint8Array, at: number): number {
  return f16BitsToNumber(bytes[at]! | (bytes[at + 1]! << 8));
}

/** Q8_0: d, then 32 int8; the code is the int8 plus 128. */
const decodeQ8_0: BlockDecoder = (bytes, at, out, e0, s0) => {
  out.scales[s0] = f16At(bytes, at);
  for (let j = 0; j < 32; j++) out.codes[e0 + j] = bytes[at + 2 + j]! ^ 0x80;
};

/** Byte j of 16 nibble pairs holds element j (low nibble) and j + 16 (high). */
function nibbles32(bytes: Uint8Array, at: number, codes: Uint8Array, e0: number): void {
  for (let j = 0; j < 16; j++) {
    codes[e0 + j] = bytes[at + j]! & 0xf;
    codes[e0 + j + 16] = bytes[at + j]! >> 4;
  }
}

/** The fifth bits of 32 elements, one per bit of a little-endian u32 at `at` (element j: bit j). */
function fifthBits32(bytes: Uint8Array, at: number, codes: Uint8Array, e0: number): void {
  for (let j = 0; j < 32; j++) codes[e0 + j]! |= ((bytes[at + (j >> 3)]! >> (j & 7)) & 1) << 4;
}

const decodeQ4_0: BlockDecoder = (bytes, at, out, e0, s0) => {
  out.scales[s0] = f16At(bytes, at);
  nibbles32(bytes, at + 2, out.codes, e0);
};

/** Q4_1: d, m, 16 nibble pairs; x = d * q + m, so the offset is -m. */
const decodeQ4_1: BlockDecoder = (bytes, at, out, e0, s0) => {
  out.scales[s0] = f16At(bytes, at);
  out.offsets![s0] = -f16At(bytes, at + 2);
  nibbles32(bytes, at + 4, out.codes, e0);
};

/** Q5_0: d, the fifth bits (u32), 16 nibble pairs. */
const decodeQ5_0: BlockDecoder = (bytes, at, out, e0, s0) => {
  out.scales[s0] = f16At(bytes, at);
  nibbles32(bytes, at + 6, out.codes, e0);
  fifthBits32(bytes, at + 2, out.codes, e0);
};

/** Q5_1: d, m, the fifth bits (u32), 16 nibble pairs. */
const decodeQ5_1: BlockDecoder = (bytes, at, out, e0, s0) => {
  out.scales[s0] = f16At(bytes, at);
  out.offsets![s0] = -f16At(bytes, at + 2);
  nibbles32(bytes, at + 8, out.codes, e0);
  fifthBits32(bytes, at + 4, out.codes, e0);
};

/**
 * The low 2 bits of Q2_K's and Q3_K's 256 codes, from 64 bytes at `at`: each half h of 128
 * elements reads 32 bytes; element 32j + l of the half (j = 0..3, l = 0..31) is bits 2j..2j+1
 * of byte l.
 */
function crumbs256(bytes: Uint8Array, at: number, codes: Uint8Array, e0: number): void {
  for (let h = 0; h < 2; h++) {
    for (let j = 0; j < 4; j++) {
      for (let l = 0; l < 32; l++) codes[e0 + 128 * h + 32 * j + l] = (bytes[at + 32 * h + l]! >> (2 * j)) & 3;
    }
  }
}

/** Q2_K: scales[16] (low nibble scale, high nibble min per sub-block of 16), qs[64], d, dmin. */
const decodeQ2_K: BlockDecoder = (bytes, at, out, e0, s0) => {
  const d = f16At(bytes, at + 80);
  const dmin = f16At(bytes, at + 82);
  out.offsetScales![s0 / 16] = dmin;
  for (let s = 0; s < 16; s++) {
    out.scales[s0 + s] = fround(d * (bytes[at + s]! & 0xf));
    out.offsets![s0 + s] = fround(dmin * (bytes[at + s]! >> 4));
    out.offsetCodes![s0 + s] = bytes[at + s]! >> 4;
  }
  crumbs256(bytes, at + 16, out.codes, e0);
};

/**
 * Q3_K: hmask[32], qs[64], scales[12], d. Element 32j + l of half h has its third bit at bit
 * 4h + j of hmask[l]. The 6-bit scale of sub-block i keeps its low 4 bits in the low (i < 8) or
 * high (i >= 8) nibble of scales[i mod 8] and its top 2 bits at bits 2*floor(i/4) of
 * scales[8 + i mod 4]; it is stored plus 32.
 */
const decodeQ3_K: BlockDecoder = (bytes, at, out, e0, s0) => {
  const d = f16At(bytes, at + 108);
  const sc = at + 96;
  for (let i = 0; i < 16; i++) {
    const low = i < 8 ? bytes[sc + i]! & 0xf : bytes[sc + i - 8]! >> 4;
    const high = (bytes[sc + 8 + (i % 4)]! >> (2 * Math.floor(i / 4))) & 3;
    out.scales[s0 + i] = fround(d * ((low | (high << 4)) - 32));
  }
  crumbs256(bytes, at + 32, out.codes, e0);
  for (let h = 0; h < 2; h++) {
    for (let j = 0; j < 4; j++) {
      for (let l = 0; l < 32; l++) out.codes[e0 + 128 * h + 32 * j + l]! |= ((bytes[at + l]! >> (4 * h + j)) & 1) << 2;
    }
  }
};

/**
 * Scale and min (6 bits each) of Q4_K/Q5_K sub-block j from the 12 bytes at `at` (ggml's
 * get_scale_min_k4): sub-blocks 0-3 keep theirs in the low 6 bits of bytes 0-3 (scales) and 4-7
 * (mins); sub-blocks 4-7 put their low 4 bits in bytes 8-11 and their top 2 bits in the spare
 * top bits of bytes 0-7.
 */
export function kScaleMin(bytes: Uint8Array, at: number, j: number): [number, number] {
  if (j < 4) return [bytes[at + j]! & 63, bytes[at + j + 4]! & 63];
  const scale = (bytes[at + j + 4]! & 0xf) | ((bytes[at + j - 4]! >> 6) << 4);
  const min = (bytes[at + j + 4]! >> 4) | ((bytes[at + j]! >> 6) << 4);
  return [scale, min];
}

/** Q4_K/Q5_K's sub-block scales d * sc and offsets dmin * mn, from d, dmin and scales[12] at `at`. */
function kScalesOffsets(bytes: Uint8Array, at: number, out: Codes, s0: number): void {
  const d = f16At(bytes, at);
  const dmin = f16At(bytes, at + 2);
  out.offsetScales![s0 / 8] = dmin;
  for (let j = 0; j < 8; j++) {
    const [scale, min] = kScaleMin(bytes, at + 4, j);
    out.scales[s0 + j] = fround(d * scale);
    out.offsets![s0 + j] = fround(dmin * min);
    out.offsetCodes![s0 + j] = min;
  }
}

/** Group g of 64 elements reads 32 bytes at at + 32g: low nibbles are sub-block 2g, high 2g + 1. */
function kNibbles256(bytes: Uint8Array, at: number, codes: Uint8Array, e0: number): void {
  for (let g = 0; g < 4; g++) {
    for (let l = 0; l < 32; l++) {
      const q = bytes[at + 32 * g + l]!;
      codes[e0 + 64 * g + l] = q & 0xf;
      codes[e0 + 64 * g + 32 + l] = q >> 4;
    }
  }
}

/** Q4_K: d, dmin, scales[12], qs[128]. */
const decodeQ4_K: BlockDecoder = (bytes, at, out, e0, s0) => {
  kScalesOffsets(bytes, at, out, s0);
  kNibbles256(bytes, at + 16, out.codes, e0);
};

/** Q5_K: d, dmin, scales[12], qh[32], qs[128]; sub-block s's fifth bits are bit s of qh[l]. */
const decodeQ5_K: BlockDecoder = (bytes, at, out, e0, s0) => {
  kScalesOffsets(bytes, at, out, s0);
  kNibbles256(bytes, at + 48, out.codes, e0);
  for (let s = 0; s < 8; s++) {
    for (let l = 0; l < 32; l++) out.codes[e0 + 32 * s + l]! |= ((bytes[at + 16 + l]! >> s) & 1) << 4;
  }
};

/**
 * Q6_K: ql[128], qh[64], scales[16] (int8), d. Half h (128 elements) reads ql[64h..], qh[32h..]:
 * for l < 32, elements l and l + 64 are the low and high nibbles of ql[l], elements l + 32 and
 * l + 96 those of ql[l + 32], and qh[l] holds the top 2 bits of l, l + 32, l + 64, l + 96 (bits
 * 0-1, 2-3, 4-5, 6-7). Sub-block i is elements 16i..16i + 15.
 */
const decodeQ6_K: BlockDecoder = (bytes, at, out, e0, s0) => {
  const d = f16At(bytes, at + 208);
  for (let i = 0; i < 16; i++) out.scales[s0 + i] = fround(d * ((bytes[at + 192 + i]! << 24) >> 24));
  for (let h = 0; h < 2; h++) {
    const [ql, qh, y] = [at + 64 * h, at + 128 + 32 * h, e0 + 128 * h];
    for (let l = 0; l < 32; l++) {
      const high = bytes[qh + l]!;
      out.codes[y + l] = (bytes[ql + l]! & 0xf) | ((high & 3) << 4);
      out.codes[y + l + 32] = (bytes[ql + l + 32]! & 0xf) | (((high >> 2) & 3) << 4);
      out.codes[y + l + 64] = (bytes[ql + l]! >> 4) | (((high >> 4) & 3) << 4);
      out.codes[y + l + 96] = (bytes[ql + l + 32]! >> 4) | (((high >> 6) & 3) << 4);
    }
  }
};

export type QuantType = 'Q8_0' | 'Q4_0' | 'Q4_1' | 'Q5_0' | 'Q5_1' | 'Q2_K' | 'Q3_K' | 'Q4_K' | 'Q5_K' | 'Q6_K';

export const CODE_LAYOUTS: Record<QuantType, CodeLayout> = {
  Q8_0: { blockSize: 32, blockBytes: 34, subBlock: 32, codeBits: 8, zeroPoint: 128, hasOffsets: false, decode: decodeQ8_0 },
  Q4_0: { blockSize: 32, blockBytes: 18, subBlock: 32, codeBits: 4, zeroPoint: 8, hasOffsets: false, decode: decodeQ4_0 },
  Q4_1: { blockSize: 32, blockBytes: 20, subBlock: 32, codeBits: 4, zeroPoint: 0, hasOffsets: true, decode: decodeQ4_1 },
  Q5_0: { blockSize: 32, blockBytes: 22, subBlock: 32, codeBits: 5, zeroPoint: 16, hasOffsets: false, decode: decodeQ5_0 },
  Q5_1: { blockSize: 32, blockBytes: 24, subBlock: 32, codeBits: 5, zeroPoint: 0, hasOffsets: true, decode: decodeQ5_1 },
  Q2_K: { blockSize: 256, blockBytes: 84, subBlock: 16, codeBits: 2, zeroPoint: 0, hasOffsets: true, decode: decodeQ2_K, offsetGroup: 16 },
  Q3_K: { blockSize: 256, blockBytes: 110, subBlock: 16, codeBits: 3, zeroPoint: 4, hasOffsets: false, decode: decodeQ3_K },
  Q4_K: { blockSize: 256, blockBytes: 144, subBlock: 32, codeBits: 4, zeroPoint: 0, hasOffsets: true, decode: decodeQ4_K, offsetGroup: 8 },
  Q5_K: { blockSize: 256, blockBytes: 176, subBlock: 32, codeBits: 5, zeroPoint: 0, hasOffsets: true, decode: decodeQ5_K, offsetGroup: 8 },
  Q6_K: { blockSize: 256, blockBytes: 210, subBlock: 16, codeBits: 6, zeroPoint: 32, hasOffsets: false, decode: decodeQ6_K },
};

export const isQuantType = (type: string): type is QuantType => type in CODE_LAYOUTS;

/** `elements` values of `type` (whole blocks) in `bytes`, as codes. */
export function decodeCodes(type: QuantType, bytes: Uint8Array, elements: number): Codes {
  const layout = CODE_LAYOUTS[type];
  const subBlocks = elements / layout.subBlock;
  const out: Codes = {
    subBlock: layout.subBlock,
    codeBits: layout.codeBits,
    zeroPoint: layout.zeroPoint,
    codes: new Uint8Array(elements),
    scales: new Float32Array(subBlocks),
    offsets: layout.hasOffsets ? new Float32Array(subBlocks) : undefined,
    ...(layout.offsetGroup === undefined
      ? {}
      : { offsetCodes: new Uint8Array(subBlocks), offsetScales: new Float32Array(subBlocks / layout.offsetGroup), offsetGroup: layout.offsetGroup }),
  };
  const subPerBlock = layout.blockSize / layout.subBlock;
  for (let b = 0; b < elements / layout.blockSize; b++) {
    layout.decode(bytes, b * layout.blockBytes, out, b * layout.blockSize, b * subPerBlock);
  }
  return out;
}

/**
 * The values codes stand for, evaluated as ggml's dequantize_row_* does in F32: scale * q, then
 * minus the offset (the F32 product d * sc was rounded once when the scale was made, as there).
 */
export function codesToValues(c: Codes, out = new Float32Array(c.codes.length)): Float32Array {
  for (let s = 0; s < c.scales.length; s++) {
    const scale = c.scales[s]!;
    const offset = c.offsets ? c.offsets[s]! : 0;
    const e0 = s * c.subBlock;
    if (c.offsets) {
      for (let j = 0; j < c.subBlock; j++) out[e0 + j] = fround(scale * (c.codes[e0 + j]! - c.zeroPoint)) - offset;
    } else {
      for (let j = 0; j < c.subBlock; j++) out[e0 + j] = scale * (c.codes[e0 + j]! - c.zeroPoint);
    }
  }
  return out;
}
