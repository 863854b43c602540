/**
 * ggml's tensor types as bytes: widening any type ppd reads to F32, narrowing F32 to the types
 * ppd writes, and re-laying quantized blocks as BlockQuantized (the MatMulNBits layout that
 * tensor-source.ts documents) without rounding anything again. Not the container (read.ts,
 * write.ts); what each quantized block means lives in codes.ts, how F32 becomes blocks in
 * quantizers.ts.
 *
 * Q8_0/Q4_0 quantisation follows ggml's quantize_row_q8_0_ref and quantize_row_q4_0_ref step by
 * step in F32 arithmetic, so the bytes are the ones llama.cpp writes. Those rules are
 * format/quantize.ts's (the graph quantizes by them too); this file only lays their result out as
 * ggml blocks.
 */
import { InputError } from '../../errors.ts';
import { quantize as quantizeRows } from '../quantize.ts';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, numberToF16Bits } from '../half.ts';
import type { BlockQuantized, DType } from '../tensor-source.ts';
import { CODE_LAYOUTS, codesToValues, decodeCodes, isQuantType, type QuantType } from './codes.ts';
import { quantizeBlocks, type KQuantWritable } from './quantizers.ts';

/** A typed view needs its element alignment; a fresh buffer has it, a sub-view may not. */
function aligned(bytes: Uint8Array, alignment: number): Uint8Array {
  return bytes.byteOffset % alignment === 0 ? bytes : bytes.slice();
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
  return codesToValues(decodeCodes(type, bytes, elements));
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
  return fromBlockQuantized(quantizeRows(values, values.length / 32, 32, 'q8'));
}

/**
 * ggml's quantize_row_q4_0_ref: d = -(the signed value of largest magnitude) / 8, so that value
 * maps to q = 0 exactly; q = min(15, trunc(x / d + 8.5)).
 */
export function quantizeQ4_0(values: Float32Array): Uint8Array {
  return fromBlockQuantized(quantizeRows(values, values.length / 32, 32, 'q4'));
}

/** The types ppd writes. */
export type WritableType = 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0' | KQuantWritable;

/** F32 values stored as `type`; quantized types need whole blocks (32 elements, 256 for the K types). */
export function quantize(type: WritableType, values: Float32Array): Uint8Array {
  if (isQuantType(type) && values.length % CODE_LAYOUTS[type].blockSize !== 0) {
    throw new InputError(`${type} stores blocks of ${CODE_LAYOUTS[type].blockSize} values; got ${values.length}`);
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
    default:
      return quantizeBlocks(type, values);
  }
}

/**
 * A quantized [rows, cols] matrix's bytes re-laid as BlockQuantized, exactly: the codes, scales
 * and offsets of codes.ts become MatMulNBits blocks of one sub-block each (16 or 32 elements),
 * codes of up to 4 bits packed two to a byte, wider ones (Q5_*, Q6_K, Q8_0) one to a byte. Row r
 * of the result is stored row `sourceRow[r]` (identity when absent): whole quantized rows move,
 * nothing is requantized.
 */
export function toBlockQuantized(type: QuantType, bytes: Uint8Array, rows: number, cols: number, sourceRow?: ArrayLike<number>): BlockQuantized {
  const layout = CODE_LAYOUTS[type];
  if (cols % layout.blockSize !== 0) throw new InputError(`${type} rows hold whole blocks of ${layout.blockSize}; got rows of ${cols}`);
  const bits = layout.codeBits <= 4 ? 4 : 8;
  const rowBytes = (cols / layout.blockSize) * layout.blockBytes;
  const subBlocks = cols / layout.subBlock; // per row
  const packedRow = (cols * bits) / 8;
  const data = new Uint8Array(rows * packedRow);
  const scales = new Float32Array(rows * subBlocks);
  const offsets = layout.hasOffsets ? new Float32Array(rows * subBlocks) : undefined;
  const group = layout.offsetGroup;
  const offsetCodes = group === undefined ? undefined : { codes: new Uint8Array(rows * subBlocks), scales: new Float32Array((rows * subBlocks) / group), group };
  for (let r = 0; r < rows; r++) {
    const from = sourceRow ? sourceRow[r]! : r;
    const row = decodeCodes(type, bytes.subarray(from * rowBytes, (from + 1) * rowBytes), cols);
    scales.set(row.scales, r * subBlocks);
    if (offsets) offsets.set(row.offsets!, r * subBlocks);
    if (offsetCodes) {
      offsetCodes.codes.set(row.offsetCodes!, r * subBlocks);
      offsetCodes.scales.set(row.offsetScales!, (r * subBlocks) / group!);
    }
    if (bits === 8) {
      data.set(row.codes, r * packedRow);
      continue;
    }
    // MatMulNBits byte i of a block holds elements 2i (low nibble) and 2i + 1 (high); blocks and
    // rows are contiguous, so this pairs up the whole row.
    for (let i = 0; i < packedRow; i++) data[r * packedRow + i] = row.codes[2 * i]! | (row.codes[2 * i + 1]! << 4);
  }
  return { bits, blockSize: layout.subBlock, rows, cols, data, scales, zeroPoint: layout.zeroPoint, offsets, ...(offsetCodes ? { offsetCodes } : {}) };
}
