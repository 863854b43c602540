/**
 * The ggml types beyond Q8_0/Q4_0 (Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q5_K; Q4_K/Q6_K's hand-made
 * blocks are in gguf-quant.test.ts):
 * - dequantisation of hand-made blocks, against values worked out from the block layout
 *   (ggml-common.h), not from the code under test;
 * - the writers (quantizers.ts): every element sits on the code nearest to it under the block's
 *   stored scale and offset (ggml's second pass), the error stays within the type's step, and
 *   what is written reads back as written;
 * - the MatMulNBits re-layout of every type: scale * (q - zero point) - offset equals the
 *   dequantised rows bit for bit, rows permuted as asked.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CODE_LAYOUTS, decodeCodes, type QuantType } from '../src/format/gguf/codes.ts';
import { dequantize, quantize, toBlockQuantized } from '../src/format/gguf/quant.ts';
import { dequantize as dequantizeBlocks } from '../src/format/quantize.ts';
import { Rng } from '../src/sampling/rng.ts';

const F16 = { 1: 0x3c00, 0.5: 0x3800, 0.25: 0x3400, 2: 0x4000, '-1': 0xbc00 } as const;
const f16Bytes = (bits: number) => [bits & 0xff, bits >> 8];

/** Gaussian-ish values (sum of 4 uniforms), the shape of trained weights more than a uniform is. */
function weightsLike(count: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: count }, () => (rng.next() + rng.next() + rng.next() + rng.next() - 2) * 0.05);
}

describe('dequantisation of hand-made blocks', () => {
  const nibbleBytes = (q: number[]) => Array.from({ length: 16 }, (_, j) => (q[j]! & 15) | ((q[j + 16]! & 15) << 4));
  const fifthBits = (q: number[]) => [0, 1, 2, 3].map((byte) => q.slice(8 * byte, 8 * byte + 8).reduce((acc, v, bit) => acc | ((v >> 4) << bit), 0));
  const q32 = (mod: number) => Array.from({ length: 32 }, (_, j) => (j * 7 + 3) % mod);

  test('Q4_1: x = d * q + m, nibble pairs (j, j + 16)', () => {
    const q = q32(16);
    const bytes = Uint8Array.from([...f16Bytes(F16[0.5]), ...f16Bytes(F16['-1']), ...nibbleBytes(q)]);
    assert.deepEqual([...dequantize('Q4_1', bytes, 32)], q.map((v) => 0.5 * v - 1));
  });

  test('Q5_0: x = d * (q - 16), the fifth bit of element j at bit j of a little-endian u32', () => {
    const q = q32(32);
    const bytes = Uint8Array.from([...f16Bytes(F16[0.25]), ...fifthBits(q), ...nibbleBytes(q)]);
    assert.deepEqual([...dequantize('Q5_0', bytes, 32)], q.map((v) => 0.25 * (v - 16)));
  });

  test('Q5_1: x = d * q + m', () => {
    const q = q32(32);
    const bytes = Uint8Array.from([...f16Bytes(F16[2]), ...f16Bytes(F16[0.5]), ...fifthBits(q), ...nibbleBytes(q)]);
    assert.deepEqual([...dequantize('Q5_1', bytes, 32)], q.map((v) => 2 * v + 0.5));
  });

  /** Bytes of 256 2-bit fields: element 128h + 32j + l at bits 2j of byte 32h + l. */
  const crumbBytes = (q: number[]) =>
    Array.from({ length: 64 }, (_, i) => {
      const [h, l] = [Math.floor(i / 32), i % 32];
      return [0, 1, 2, 3].reduce((acc, j) => acc | ((q[128 * h + 32 * j + l]! & 3) << (2 * j)), 0);
    });

  test('Q2_K: 16 sub-blocks of 16, x = d * sc * q - dmin * m with 4-bit sc (low nibble) and m (high)', () => {
    const q = Array.from({ length: 256 }, (_, e) => (e * 5 + 1) % 4);
    const sc = Array.from({ length: 16 }, (_, s) => (s * 3 + 1) % 16);
    const mn = Array.from({ length: 16 }, (_, s) => (s * 7 + 2) % 16);
    const bytes = Uint8Array.from([...sc.map((s, i) => s | (mn[i]! << 4)), ...crumbBytes(q), ...f16Bytes(F16[0.5]), ...f16Bytes(F16[0.25])]);
    assert.equal(bytes.length, 84);
    const expected = q.map((v, e) => 0.5 * sc[e >> 4]! * v - 0.25 * mn[e >> 4]!);
    assert.deepEqual([...dequantize('Q2_K', bytes, 256)], expected);
  });

  test('Q3_K: x = d * (sc - 32) * (q - 4), q = 2 low bits + a third bit in hmask, 6-bit sc split over 12 bytes', () => {
    const q = Array.from({ length: 256 }, (_, e) => (e * 3 + 2) % 8);
    const sc = Array.from({ length: 16 }, (_, s) => (s * 11 + 5) % 64); // stored values, scale = sc - 32
    // hmask[l] bit b holds the third bit of element 32b + l.
    const hmask = Array.from({ length: 32 }, (_, l) => [0, 1, 2, 3, 4, 5, 6, 7].reduce((acc, b) => acc | ((q[32 * b + l]! >> 2) << b), 0));
    // Low 4 bits: bytes 0-7 (sub-blocks 0-7 low nibble, 8-15 high nibble); top 2 bits of
    // sub-block i at bits 2*floor(i/4) of byte 8 + i mod 4.
    const scales = new Array(12).fill(0);
    sc.forEach((s, i) => {
      scales[i % 8] |= (s & 15) << (i < 8 ? 0 : 4);
      scales[8 + (i % 4)] |= (s >> 4) << (2 * Math.floor(i / 4));
    });
    const bytes = Uint8Array.from([...hmask, ...crumbBytes(q), ...scales, ...f16Bytes(F16[0.25])]);
    assert.equal(bytes.length, 110);
    const expected = q.map((v, e) => 0.25 * (sc[e >> 4]! - 32) * (v - 4));
    assert.deepEqual([...dequantize('Q3_K', bytes, 256)], expected);
  });

  test('Q5_K: Q4_K\'s scales and nibbles plus a fifth bit: element l of sub-block s at bit s of qh[l]', () => {
    const q = Array.from({ length: 256 }, (_, e) => (e * 13 + 7) % 32);
    const sc = [1, 2, 3, 4, 17, 33, 50, 63];
    const mn = [0, 1, 2, 3, 20, 40, 48, 5];
    const scales = new Array(12).fill(0);
    for (let j = 0; j < 4; j++) {
      scales[j] = sc[j]! | ((sc[j + 4]! >> 4) << 6);
      scales[j + 4] = mn[j]! | ((mn[j + 4]! >> 4) << 6);
      scales[j + 8] = (sc[j + 4]! & 0xf) | ((mn[j + 4]! & 0xf) << 4);
    }
    const qh = Array.from({ length: 32 }, (_, l) => [0, 1, 2, 3, 4, 5, 6, 7].reduce((acc, s) => acc | ((q[32 * s + l]! >> 4) << s), 0));
    // Group g of 64: byte l holds element l of sub-block 2g (low nibble) and of 2g + 1 (high).
    const qs = Array.from({ length: 128 }, (_, i) => {
      const [g, l] = [Math.floor(i / 32), i % 32];
      return (q[64 * g + l]! & 15) | ((q[64 * g + 32 + l]! & 15) << 4);
    });
    const bytes = Uint8Array.from([...f16Bytes(F16[0.25]), ...f16Bytes(F16[0.5]), ...scales, ...qh, ...qs]);
    assert.equal(bytes.length, 176);
    const expected = q.map((v, e) => 0.25 * sc[e >> 5]! * v - 0.5 * mn[e >> 5]!);
    assert.deepEqual([...dequantize('Q5_K', bytes, 256)], expected);
  });
});

/**
 * Relative RMS error bounds of each writer on weights-like data, about 1.3x what was measured on
 * this seed (Q4_1 7.6 %, Q5_0 4.1 %, Q5_1 3.7 %, Q2_K 29 %, Q3_K 15 %, Q4_K 6.9 %, Q5_K 3.4 %,
 * Q6_K 1.7 %; a uniform grid of step s costs s / sqrt(12), e.g. Q4_1's range / 15 / 3.5 = 7.7 %
 * of the RMS of 32 Gaussian values): a wrong layout or rule gives errors near 100 %.
 */
const WRITERS: [QuantType, number][] = [
  ['Q4_1', 0.1], ['Q5_0', 0.055], ['Q5_1', 0.05], ['Q2_K', 0.38], ['Q3_K', 0.19], ['Q4_K', 0.09], ['Q5_K', 0.045], ['Q6_K', 0.023],
];

describe('writers', () => {
  const values = weightsLike(256 * 24, 3);

  for (const [type, bound] of WRITERS) {
    test(`${type}: every element on its nearest code under the stored scale and offset; error within ${bound * 100} %`, () => {
      const bytes = quantize(type, values);
      const layout = CODE_LAYOUTS[type];
      assert.equal(bytes.length, (values.length / layout.blockSize) * layout.blockBytes);
      const c = decodeCodes(type, bytes, values.length);
      const back = dequantize(type, bytes, values.length);
      const nmax = (1 << layout.codeBits) - 1;
      let [num, den, checked] = [0, 0, 0];
      for (let e = 0; e < values.length; e++) {
        num += (back[e]! - values[e]!) ** 2;
        den += values[e]! ** 2;
        const s = Math.floor(e / layout.subBlock);
        const scale = c.scales[s]!;
        // The 32-element types round against their unrounded F32 d (only the file keeps F16);
        // the K types round a second time against the stored d * sc, which is what is checked.
        if (layout.blockSize !== 256 || scale === 0) continue;
        const offset = c.offsets ? c.offsets[s]! : 0;
        const nearest = Math.min(nmax, Math.max(0, Math.round((values[e]! + offset) / scale + c.zeroPoint)));
        const code = c.codes[e]!;
        // Exact halves may round either way (ggml rounds in F32, halves to even).
        const tie = Math.abs(Math.abs((values[e]! + offset) / scale + c.zeroPoint - code) - 0.5) < 1e-4;
        assert.ok(code === nearest || tie, `${type} element ${e}: code ${code}, nearest ${nearest}`);
        checked++;
      }
      const error = Math.sqrt(num / den);
      assert.ok(error < bound, `${type}: relative RMS error ${error.toFixed(4)}`);
      if (layout.blockSize === 256) assert.ok(checked > values.length * 0.9, `${type}: ${checked} elements checked`);
    });
  }

  test('all-zero and constant blocks quantize to zeros and to the constant within a step', () => {
    for (const [type] of WRITERS) {
      const n = CODE_LAYOUTS[type].blockSize;
      assert.ok(dequantize(type, quantize(type, new Float32Array(n)), n).every((v) => v === 0), `${type} zeros`);
      const constant = dequantize(type, quantize(type, new Float32Array(n).fill(0.3)), n);
      for (const v of constant) assert.ok(Math.abs(v - 0.3) < 0.3 * 0.15, `${type} constant 0.3 -> ${v}`);
    }
  });
});

describe('every type as BlockQuantized (MatMulNBits layout)', () => {
  const rows = 3;
  const cols = 512;
  const values = weightsLike(rows * cols, 8);
  const order = [2, 0, 1];

  for (const type of Object.keys(CODE_LAYOUTS) as QuantType[]) {
    test(`${type}: scale * (q - zero point) - offset equals the dequantised rows bit for bit, permuted`, () => {
      const bytes = quantize(type, values);
      const flat = dequantize(type, bytes, values.length);
      const bq = toBlockQuantized(type, bytes, rows, cols, order);
      const layout = CODE_LAYOUTS[type];
      assert.equal(bq.bits, layout.codeBits <= 4 ? 4 : 8);
      assert.equal(bq.blockSize, layout.subBlock);
      assert.equal(bq.zeroPoint, layout.zeroPoint);
      assert.equal(bq.offsets !== undefined, layout.hasOffsets);
      assert.equal(bq.data.length, (rows * cols * bq.bits) / 8);
      const got = dequantizeBlocks(bq);
      for (let r = 0; r < rows; r++) {
        assert.deepEqual([...got.subarray(r * cols, (r + 1) * cols)], [...flat.subarray(order[r]! * cols, (order[r]! + 1) * cols)], `${type} row ${r}`);
      }
      // The K-quants' minimums as integer codes under one dmin per super-block (what the graph's
      // second MatMulNBits multiplies by): the same offsets, exactly.
      assert.equal(bq.offsetCodes !== undefined, layout.offsetGroup !== undefined);
      if (bq.offsetCodes) {
        const { codes, scales, group } = bq.offsetCodes;
        assert.equal(group * layout.subBlock, layout.blockSize);
        assert.deepEqual([...codes.keys()].map((i) => Math.fround(scales[Math.floor(i / group)]! * codes[i]!)), [...bq.offsets!]);
      }
    });
  }
});
