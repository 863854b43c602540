/**
 * ggml's block formats: widening F32/F16/BF16/Q8_0/Q4_0/Q4_K/Q6_K tensor bytes to F32,
 * narrowing F32 to F16/BF16/Q8_0/Q4_0 bytes, and re-laying Q8_0/Q4_0 as BlockQuantized (the
 * MatMulNBits layout that tensor-source.ts documents) and back. Not the container (read.ts,
 * write.ts).
 *
 * Blocks run along a tensor's rows (ne0), so a row of `cols` elements is cols / blockSize whole
 * blocks and a tensor is its rows' blocks back to back. Block layouts (ggml-common.h), with d and
 * dmin as F16 and q the stored integers:
 *
 *   Q8_0  34 B / 32:  d, i8 q[32]                  x[j] = d * q[j]
 *   Q4_0  18 B / 32:  d, u8 qs[16]                 x[j] = d * ((qs[j] & 15) - 8), x[j+16] = d * ((qs[j] >> 4) - 8)
 *   Q4_K 144 B / 256: d, dmin, u8 scales[12], u8 qs[128]
 *        8 sub-blocks of 32, each with a 6-bit scale and a 6-bit min packed in `scales`;
 *        x = d * scale * q - dmin * min, q the 4-bit value (low nibbles of 32 bytes, then high)
 *   Q6_K 210 B / 256: u8 ql[128], u8 qh[64], i8 scales[16], d
 *        16 sub-blocks of 16, x = d * scale * (q - 32), q 6 bits: 4 from ql, 2 from qh
 *
 * Quantisation follows ggml's quantize_row_q8_0_ref and quantize_row_q4_0_ref step by step in
 * F32 arithmetic, so the bytes are the ones llama.cpp writes. Those rules are format/quantize.ts's
 * (the graph quantizes by them too); this file only lays their result out as ggml blocks.
 */
import { InputError } from '../../errors.ts';
import { quantize as quantizeBlocks } from '../quantize.ts';
import { bf16ToF32, f16BitsToNumber, f16ToF32, f32ToBf16, f32ToF16, numberToF16Bits } from '../half.ts';
import type { BlockQuantized, DType } from '../tensor-source.ts';

const fround = Math.fround;

/** The F16 at bytes[at], little-endian, as a number. */
function f16At(bytes: Uint8Array, at: number): number {
  return f16BitsToNumber(bytes[at] | (bytes[at + 1] << 8));
}

/** A typed view needs its element alignment; a fresh buffer has it, a sub-view may not. */
function aligned(bytes: Uint8Array, alignment: number): Uint8Array {
  return bytes.byteOffset % alignment === 0 ? bytes : bytes.slice();
}

function dequantizeQ8_0(bytes: Uint8Array, out: Float32Array): void {
  for (let b = 0, at = 0; b < out.length / 32; b++, at += 34) {
    const d = f16At(bytes, at);
    for (let j = 0; j < 32; j++) out[b * 32 + j] = d * ((bytes[at + 2 + j] << 24) >> 24); // sign-extend i8
  }
}

function dequantizeQ4_0(bytes: Uint8Array, out: Float32Array): void {
  for (let b = 0, at = 0; b < out.length / 32; b++, at += 18) {
    const d = f16At(bytes, at);
    for (let j = 0; j < 16; j++) {
      const q = bytes[at + 2 + j];
      out[b * 32 + j] = d * ((q & 15) - 8);
      out[b * 32 + j + 16] = d * ((q >> 4) - 8);
    }
  }
}

/**
 * Scale and min of Q4_K sub-block j (0..7) from the 12 packed bytes at `at` (ggml's
 * get_scale_min_k4): sub-blocks 0-3 keep theirs in the low 6 bits of bytes 0-3 (scales) and 4-7
 * (mins); sub-blocks 4-7 put their low 4 bits in bytes 8-11 and their top 2 bits in the spare
 * top bits of bytes 0-7.
 */
function q4kScaleMin(bytes: Uint8Array, at: number, j: number): [number, number] {
  if (j < 4) return [bytes[at + j] & 63, bytes[at + j + 4] & 63];
  const scale = (bytes[at + j + 4] & 0xf) | ((bytes[at + j - 4] >> 6) << 4);
  const min = (bytes[at + j + 4] >> 4) | ((bytes[at + j] >> 6) << 4);
  return [scale, min];
}

function dequantizeQ4_K(bytes: Uint8Array, out: Float32Array): void {
  for (let b = 0, at = 0; b < out.length / 256; b++, at += 144) {
    const d = f16At(bytes, at);
    const dmin = f16At(bytes, at + 2);
    const qs = at + 16;
    // 4 groups of 64 elements; group g uses 32 bytes: low nibbles are sub-block 2g, high 2g+1.
    for (let g = 0; g < 4; g++) {
      const [s1, m1] = q4kScaleMin(bytes, at + 4, 2 * g);
      const [s2, m2] = q4kScaleMin(bytes, at + 4, 2 * g + 1);
      const [d1, min1, d2, min2] = [fround(d * s1), fround(dmin * m1), fround(d * s2), fround(dmin * m2)];
      const y = b * 256 + g * 64;
      for (let l = 0; l < 32; l++) {
        const q = bytes[qs + g * 32 + l];
        out[y + l] = d1 * (q & 0xf) - min1;
        out[y + 32 + l] = d2 * (q >> 4) - min2;
      }
    }
  }
}

function dequantizeQ6_K(bytes: Uint8Array, out: Float32Array): void {
  for (let b = 0, at = 0; b < out.length / 256; b++, at += 210) {
    const d = f16At(bytes, at + 208);
    // Two halves of 128 elements; half h reads ql[64h..], qh[32h..], scales[8h..].
    for (let h = 0; h < 2; h++) {
      const ql = at + 64 * h;
      const qh = at + 128 + 32 * h;
      const sc = at + 192 + 8 * h;
      const y = b * 256 + 128 * h;
      const scale = (i: number) => fround(d * ((bytes[sc + i] << 24) >> 24)); // i8 scale
      for (let l = 0; l < 32; l++) {
        const is = l >> 4; // elements 0-15 and 16-31 of each 32 have their own scale
        const high = bytes[qh + l];
        const q1 = ((bytes[ql + l] & 0xf) | (((high >> 0) & 3) << 4)) - 32;
        const q2 = ((bytes[ql + l + 32] & 0xf) | (((high >> 2) & 3) << 4)) - 32;
        const q3 = ((bytes[ql + l] >> 4) | (((high >> 4) & 3) << 4)) - 32;
        const q4 = ((bytes[ql + l + 32] >> 4) | (((high >> 6) & 3) << 4)) - 32;
        out[y + l] = scale(is) * q1;
        out[y + l + 32] = scale(is + 2) * q2;
        out[y + l + 64] = scale(is + 4) * q3;
        out[y + l + 96] = scale(is + 6) * q4;
      }
    }
  }
}

/** `elements` values of `type` stored in `bytes` (whole blocks), widened to F32. F32 may share `bytes`' memory. */
export function dequantize(type: DType, bytes: Uint8Array, elements: number): Float32Array {
  if (type === 'F32') {
    const floats = aligned(bytes, 4);
    return new Float32Array(floats.buffer, floats.byteOffset, elements);
  }
  if (type === 'F16' || type === 'BF16') {
    const halves = aligned(bytes, 2);
    const u16 = new Uint16Array(halves.buffer, halves.byteOffset, elements);
    return type === 'F16' ? f16ToF32(u16) : bf16ToF32(u16);
  }
  const out = new Float32Array(elements);
  if (type === 'Q8_0') dequantizeQ8_0(bytes, out);
  else if (type === 'Q4_0') dequantizeQ4_0(bytes, out);
  else if (type === 'Q4_K') dequantizeQ4_K(bytes, out);
  else dequantizeQ6_K(bytes, out);
  return out;
}

function writeF16(out: Uint8Array, at: number, value: number): void {
  const bits = numberToF16Bits(value);
  out[at] = bits & 0xff;
  out[at + 1] = bits >> 8;
}

/**
 * A BlockQuantized matrix of 32-element blocks as Q8_0 or Q4_0 bytes: the inverse of
 * toBlockQuantized, with each scale rounded to the F16 that GGUF stores.
 */
export function fromBlockQuantized(m: BlockQuantized): Uint8Array {
  if (m.blockSize !== 32 || m.cols % 32 !== 0) throw new InputError(`GGUF blocks hold 32 values; got blocks of ${m.blockSize} over rows of ${m.cols}`);
  const blockBytes = m.bits === 8 ? 34 : 18;
  const packed = m.bits === 8 ? 32 : 16;
  const out = new Uint8Array(m.scales.length * blockBytes);
  for (let block = 0; block < m.scales.length; block++) {
    const [at, src] = [block * blockBytes, block * packed];
    writeF16(out, at, m.scales[block]);
    if (m.bits === 8) {
      for (let j = 0; j < 32; j++) out[at + 2 + j] = m.data[src + j] ^ 0x80; // q + 128 back to int8
      continue;
    }
    // MatMulNBits byte i holds elements 2i (low) and 2i+1 (high); ggml's byte j holds j and j+16.
    const nibble = (e: number) => (m.data[src + (e >> 1)] >> ((e & 1) * 4)) & 0xf;
    for (let j = 0; j < 16; j++) out[at + 2 + j] = nibble(j) | (nibble(j + 16) << 4);
  }
  return out;
}

/**
 * ggml's quantize_row_q8_0_ref: d = max|x| / 127, q = round(x / d), halves away from zero. The
 * rounding rules live in format/quantize.ts (shared with the graph's own quantisation); each
 * block is a "row" of 32 there.
 */
export function quantizeQ8_0(values: Float32Array): Uint8Array {
  return fromBlockQuantized(quantizeBlocks(values, values.length / 32, 32, 'q8'));
}

/**
 * ggml's quantize_row_q4_0_ref: d = -(the signed value of largest magnitude) / 8, so that value
 * maps to q = 0 exactly; q = min(15, trunc(x / d + 8.5)).
 */
export function quantizeQ4_0(values: Float32Array): Uint8Array {
  return fromBlockQuantized(quantizeBlocks(values, values.length / 32, 32, 'q4'));
}

/** The types ppd writes. */
export type WritableType = 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0';

/** F32 values stored as `type`; quantized types need whole 32-element blocks. */
export function quantize(type: WritableType, values: Float32Array): Uint8Array {
  if ((type === 'Q8_0' || type === 'Q4_0') && values.length % 32 !== 0) {
    throw new InputError(`${type} stores blocks of 32 values; got ${values.length}`);
  }
  switch (type) {
    case 'F32':
      return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    case 'F16': {
      const halves = f32ToF16(values);
      return new Uint8Array(halves.buffer, halves.byteOffset, halves.byteLength);
    }
    case 'BF16': {
      const halves = f32ToBf16(values);
      return new Uint8Array(halves.buffer, halves.byteOffset, halves.byteLength);
    }
    case 'Q8_0':
      return quantizeQ8_0(values);
    case 'Q4_0':
      return quantizeQ4_0(values);
  }
}

/**
 * Q8_0 or Q4_0 bytes of a [rows, cols] matrix re-laid as BlockQuantized. Row r of the result is
 * stored row `sourceRow[r]` (identity when absent): whole quantized rows move, nothing is
 * requantized. Q8_0's int8 q becomes q + 128; Q4_0's nibbles are already q + 8 and only move,
 * from ggml's (j, j + 16) pairs to MatMulNBits' (2i, 2i + 1) pairs.
 */
export function toBlockQuantized(
  type: 'Q8_0' | 'Q4_0',
  bytes: Uint8Array,
  rows: number,
  cols: number,
  sourceRow?: ArrayLike<number>,
): BlockQuantized {
  const blocksPerRow = cols / 32;
  const blockBytes = type === 'Q8_0' ? 34 : 18;
  const packed = type === 'Q8_0' ? 32 : 16; // data bytes per block
  const data = new Uint8Array(rows * blocksPerRow * packed);
  const scales = new Float32Array(rows * blocksPerRow);
  const nibbles = new Uint8Array(32);
  for (let r = 0; r < rows; r++) {
    const from = sourceRow ? sourceRow[r] : r;
    for (let b = 0; b < blocksPerRow; b++) {
      const at = (from * blocksPerRow + b) * blockBytes;
      const block = r * blocksPerRow + b;
      scales[block] = f16At(bytes, at);
      const dst = block * packed;
      if (type === 'Q8_0') {
        for (let j = 0; j < 32; j++) data[dst + j] = bytes[at + 2 + j] ^ 0x80; // int8 + 128
        continue;
      }
      for (let j = 0; j < 16; j++) {
        nibbles[j] = bytes[at + 2 + j] & 0xf;
        nibbles[j + 16] = bytes[at + 2 + j] >> 4;
      }
      for (let i = 0; i < 16; i++) data[dst + i] = nibbles[2 * i] | (nibbles[2 * i + 1] << 4);
    }
  }
  return { bits: type === 'Q8_0' ? 8 : 4, blockSize: 32, rows, cols, data, scales };
}
