/**
 * Block quantization of linear weights, in the layout ONNX Runtime's MatMulNBits multiplies by
 * (`BlockQuantized`, format/tensor-source.ts), with llama.cpp's rounding rules so `--quantize q8`
 * and `q4` mean what GGUF's Q8_0 and Q4_0 mean:
 *
 *   q8 (Q8_0)  per block of 32: d = absmax / 127, q = round(x / d) in -127..127 (half away from
 *              zero, C's roundf), stored q + 128; value = d * (stored - 128).
 *   q4 (Q4_0)  per block of 32: m = the element of largest magnitude, with its sign; d = m / -8,
 *              q = min(15, floor(x / d + 8.5)) in 0..15; value = d * (q - 8). The largest element
 *              is exactly -8 * d = m; the opposite side reaches +7 * d only.
 *
 * Products are computed in f32 like ggml (1/d, then x * (1/d)). Scales stay f32 here, where GGUF
 * stores them as f16: the quantized integers are GGUF's, the dequantized values a little closer
 * to the weights. A row whose length is not a multiple of 32 ends with a partial block, padded
 * with the zero point (value 0); GGUF has no such blocks, MatMulNBits does.
 *
 * Shapes: a weight W is [rows, cols] = [out, in] (checkpoint order); B = ceil(cols / 32) blocks
 * per row; data [rows, B, 32 * bits / 8] bytes, scales [rows, B].
 *
 * This file is arithmetic only: which tensors get quantized is llama-graph.ts's decision.
 */
import type { BlockQuantized } from './tensor-source.ts';

/** What `--quantize` asks for: 8-bit (Q8_0-like) or 4-bit (Q4_0-like) blocks of 32. */
export type QuantizeMode = 'q8' | 'q4';
export const QUANTIZE_MODES = ['q8', 'q4'] as const satisfies readonly QuantizeMode[];

/** Elements per block: GGUF's Q8_0/Q4_0 block, and a size MLAS has int8 kernels for. */
export const QUANT_BLOCK = 32;

export const bitsOf = (mode: QuantizeMode): 4 | 8 => (mode === 'q8' ? 8 : 4);

/** MatMulNBits' default zero point: 2^(bits-1). */
export const zeroPoint = (bits: 4 | 8): number => 1 << (bits - 1);

/** C's roundf: halves away from zero (Math.round sends -2.5 to -2). */
const roundHalfAway = (v: number): number => Math.sign(v) * Math.round(Math.abs(v));

/** The stored integer (zero point included) of a scaled value v = x / d, by Q8_0's or Q4_0's rule. */
const code8 = (v: number): number => Math.min(255, Math.max(1, roundHalfAway(v) + 128));
const code4 = (v: number): number => Math.min(15, Math.max(0, Math.floor(Math.fround(v + 8.5))));

/** The scale d of the block w[start, end) by Q8_0's (absmax / 127) or Q4_0's (signed max / -8) rule. */
function blockScale(w: Float32Array, start: number, end: number, bits: 4 | 8): number {
  let amax = 0;
  let max = 0;
  for (let i = start; i < end; i++) {
    if (Math.abs(w[i]!) > amax) {
      amax = Math.abs(w[i]!);
      max = w[i]!;
    }
  }
  return bits === 8 ? Math.fround(amax / 127) : Math.fround(max / -8);
}

/** Quantizes a row-major [rows, cols] F32 matrix in blocks of QUANT_BLOCK along each row. */
export function quantize(w: Float32Array, rows: number, cols: number, mode: QuantizeMode): BlockQuantized {
  if (w.length !== rows * cols) throw new Error(`quantize: ${w.length} values for a [${rows}, ${cols}] matrix`);
  const bits = bitsOf(mode);
  const blocks = Math.ceil(cols / QUANT_BLOCK);
  const blockBytes = (QUANT_BLOCK * bits) / 8;
  const data = new Uint8Array(rows * blocks * blockBytes);
  const scales = new Float32Array(rows * blocks);
  const zero = zeroPoint(bits);
  const code = bits === 8 ? code8 : code4;
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < blocks; b++) {
      const start = r * cols + b * QUANT_BLOCK;
      const end = Math.min(start + QUANT_BLOCK, (r + 1) * cols);
      const d = blockScale(w, start, end, bits);
      const id = d === 0 ? 0 : Math.fround(1 / d);
      scales[r * blocks + b] = d;
      const out = (r * blocks + b) * blockBytes;
      for (let j = 0; j < QUANT_BLOCK; j++) {
        const q = start + j < end ? code(Math.fround(w[start + j]! * id)) : zero; // padding: value 0
        if (bits === 8) data[out + j] = q;
        else data[out + (j >> 1)]! |= j & 1 ? q << 4 : q; // element 2i: low nibble, 2i+1: high
      }
    }
  }
  return { bits, blockSize: QUANT_BLOCK, rows, cols, data, scales, zeroPoint: zero };
}

/** The stored integer of element `col` of row `row` (zero point included). */
function codeAt(m: BlockQuantized, row: number, col: number): number {
  const blocks = Math.ceil(m.cols / m.blockSize);
  const blockBytes = (m.blockSize * m.bits) / 8;
  const b = Math.floor(col / m.blockSize);
  const j = col % m.blockSize;
  const base = (row * blocks + b) * blockBytes;
  if (m.bits === 8) return m.data[base + j]!;
  const byte = m.data[base + (j >> 1)]!;
  return j & 1 ? byte >> 4 : byte & 15;
}

/** The values a BlockQuantized matrix stands for, row-major [rows, cols] F32 (the naive reference). */
export function dequantize(m: BlockQuantized): Float32Array {
  const out = new Float32Array(m.rows * m.cols);
  const blocks = Math.ceil(m.cols / m.blockSize);
  for (let r = 0; r < m.rows; r++) {
    for (let c = 0; c < m.cols; c++) {
      const block = r * blocks + Math.floor(c / m.blockSize);
      const scaled = Math.fround(m.scales[block]! * (codeAt(m, r, c) - m.zeroPoint));
      out[r * m.cols + c] = scaled - (m.offsets ? m.offsets[block]! : 0);
    }
  }
  return out;
}
