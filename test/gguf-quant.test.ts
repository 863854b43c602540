/**
 * ggml block formats: each type's dequantisation of hand-made blocks, against values worked out
 * from the block layout (ggml-common.h), not from the code under test; Q8_0/Q4_0 quantisation
 * against bytes worked out by hand from ggml's reference rules (ties away from zero for Q8_0, the
 * "+8.5 then truncate" of Q4_0, clamping); round trips; and the MatMulNBits re-layout both ways.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { dequantize, fromBlockQuantized, quantize, quantizeQ4_0, quantizeQ8_0, toBlockQuantized } from '../src/format/gguf/quant.ts';
import { Rng } from '../src/sampling/rng.ts';
import { assertClose } from './helpers/tiny-model.ts';

// F16 bit patterns used below.
const F16 = { 1: 0x3c00, 0.5: 0x3800, 0.25: 0x3400, 2: 0x4000, '-0.5': 0xb800, 0: 0 } as const;
const f16Bytes = (bits: number) => [bits & 0xff, bits >> 8];
const int8 = (q: number) => q & 0xff;

function randomValues(count: number, seed: number, scale = 1): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: count }, () => scale * (2 * rng.next() - 1));
}

describe('dequantisation of hand-made blocks', () => {
  test('F32, F16 and BF16', () => {
    assert.deepEqual([...dequantize('F32', new Uint8Array(new Float32Array([1.5, -2]).buffer), 2)], [1.5, -2]);
    assert.deepEqual([...dequantize('F16', Uint8Array.from([...f16Bytes(F16[0.5]), ...f16Bytes(0xc000)]), 2)], [0.5, -2]);
    // BF16 is the top half of an F32: 0x3fc0 -> 0x3fc00000 = 1.5.
    assert.deepEqual([...dequantize('BF16', Uint8Array.from([0xc0, 0x3f, 0x80, 0xbf]), 2)], [1.5, -1]);
  });

  test('Q8_0: x = d * q', () => {
    const q = Array.from({ length: 32 }, (_, j) => (j === 0 ? -128 : j === 1 ? 127 : j - 16));
    const bytes = Uint8Array.from([...f16Bytes(F16[0.5]), ...q.map(int8)]);
    assert.deepEqual([...dequantize('Q8_0', bytes, 32)], q.map((v) => v * 0.5));
  });

  test('Q4_0: low nibbles are elements 0-15, high nibbles 16-31, minus 8, times d', () => {
    const qs = Array.from({ length: 16 }, (_, j) => j | ((15 - j) << 4));
    const bytes = Uint8Array.from([...f16Bytes(F16[0.25]), ...qs]);
    const expected = [...Array.from({ length: 16 }, (_, j) => (j - 8) * 0.25), ...Array.from({ length: 16 }, (_, j) => (15 - j - 8) * 0.25)];
    assert.deepEqual([...dequantize('Q4_0', bytes, 32)], expected);
  });

  test('Q4_K: eight sub-blocks of 32 with 6-bit scales and mins', () => {
    const sc = [1, 2, 3, 4, 17, 33, 50, 63];
    const mn = [0, 1, 2, 3, 20, 40, 48, 5];
    // Sub-blocks 0-3: 6 bits in bytes 0-3 (scale) and 4-7 (min). Sub-blocks 4-7: low 4 bits in
    // bytes 8-11 (scale low nibble, min high nibble), top 2 bits in the top bits of bytes 0-7.
    const scales = new Array(12).fill(0);
    for (let j = 0; j < 4; j++) {
      scales[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
      scales[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
      scales[j + 8] = (sc[j + 4] & 0xf) | ((mn[j + 4] & 0xf) << 4);
    }
    // Byte l of group g (32 bytes): low nibble is element l of sub-block 2g, high of 2g+1.
    const q = (sub: number, e: number) => (sub * 3 + e) % 16;
    const qs = Array.from({ length: 128 }, (_, i) => {
      const [g, l] = [Math.floor(i / 32), i % 32];
      return q(2 * g, l) | (q(2 * g + 1, l) << 4);
    });
    const bytes = Uint8Array.from([...f16Bytes(F16[1]), ...f16Bytes(F16[0.5]), ...scales, ...qs]);
    assert.equal(bytes.length, 144);
    const expected = Array.from({ length: 256 }, (_, i) => {
      const [sub, e] = [Math.floor(i / 32), i % 32];
      return 1 * sc[sub] * q(sub, e) - 0.5 * mn[sub];
    });
    assert.deepEqual([...dequantize('Q4_K', bytes, 256)], expected);
  });

  test('Q6_K: sixteen sub-blocks of 16 with signed 8-bit scales, q - 32', () => {
    const q = Array.from({ length: 256 }, (_, e) => (e * 7 + 3) % 64); // 6-bit values
    const sc = Array.from({ length: 16 }, (_, i) => i - 8);
    // Per 128-element half h: ql[l] holds elements l (low nibble) and l+64 (high); ql[l+32] holds
    // l+32 and l+96; qh[l] holds the top 2 bits of elements l, l+32, l+64, l+96.
    const ql = new Array(128).fill(0);
    const qh = new Array(64).fill(0);
    for (let h = 0; h < 2; h++) {
      const e = (k: number) => q[128 * h + k];
      for (let l = 0; l < 32; l++) {
        ql[64 * h + l] = (e(l) & 0xf) | ((e(l + 64) & 0xf) << 4);
        ql[64 * h + l + 32] = (e(l + 32) & 0xf) | ((e(l + 96) & 0xf) << 4);
        qh[32 * h + l] = (e(l) >> 4) | ((e(l + 32) >> 4) << 2) | ((e(l + 64) >> 4) << 4) | ((e(l + 96) >> 4) << 6);
      }
    }
    const bytes = Uint8Array.from([...ql, ...qh, ...sc.map(int8), ...f16Bytes(F16[0.5])]);
    assert.equal(bytes.length, 210);
    const expected = q.map((v, e) => 0.5 * sc[Math.floor(e / 16)] * (v - 32));
    assert.deepEqual([...dequantize('Q6_K', bytes, 256)], expected);
  });

  test('several blocks in a row', () => {
    const block = (d: number, q: number) => [...f16Bytes(d), ...new Array(32).fill(int8(q))];
    const out = dequantize('Q8_0', Uint8Array.from([...block(F16[2], 3), ...block(F16['-0.5'], -4)]), 64);
    assert.deepEqual([...out], [...new Array(32).fill(6), ...new Array(32).fill(2)]);
  });
});

describe('quantisation matches ggml byte for byte', () => {
  test('Q8_0: d = max|x| / 127, q = round half away from zero', () => {
    // Block 1: max|x| = 127 so d = 1 exactly: the ties show the rounding rule (-2.5 -> -3, 2.5 -> 3).
    const one = [127, 2.5, -2.5, 0.5, -0.5, 1.4999, -126.6, ...new Array(25).fill(0)];
    // Block 2: max|x| = 254 (negative) so d = 2, 1/d = 0.5: 5 -> 2.5 -> 3, -3 -> -1.5 -> -2.
    const two = [-254, 5, -3, 1, 253, ...new Array(27).fill(0)];
    // Block 3: all zero, d = 0: every q is 0.
    const three = new Array(32).fill(0);
    const expected = [
      ...f16Bytes(F16[1]), ...[127, 3, -3, 1, -1, 1, -127, ...new Array(25).fill(0)].map(int8),
      ...f16Bytes(F16[2]), ...[-127, 3, -2, 1, 127, ...new Array(27).fill(0)].map(int8),
      ...f16Bytes(F16[0]), ...new Array(32).fill(0),
    ];
    assert.deepEqual([...quantizeQ8_0(Float32Array.from([...one, ...two, ...three]))], expected);
  });

  test('Q4_0: d = -(signed max) / 8, q = min(15, trunc(x / d + 8.5))', () => {
    // Block 1: the largest magnitude is -8, so d = 1: x + 8.5 truncated, 7.6 -> 16 clamps to 15.
    const xs = [-8, 7, 7.6, 0, -0.5, 0.5, 0.49, -3.2];
    const qs = [0, 15, 15, 8, 8, 9, 8, 5];
    const one = [...xs, ...new Array(24).fill(0)];
    const q1 = [...qs, ...new Array(24).fill(8)];
    // Block 2: the largest magnitude is +4, so d = -0.5 and x / d = -2x: 4 -> 0, -4 -> 16 -> 15, 1 -> 6.
    const two = [4, -4, 1, ...new Array(29).fill(0)];
    const q2 = [0, 15, 6, ...new Array(29).fill(8)];
    const pack = (q: number[]) => Array.from({ length: 16 }, (_, j) => q[j] | (q[j + 16] << 4));
    const expected = [...f16Bytes(F16[1]), ...pack(q1), ...f16Bytes(F16['-0.5']), ...pack(q2)];
    assert.deepEqual([...quantizeQ4_0(Float32Array.from([...one, ...two]))], expected);
  });

  test('round trips: error within half a step (a step for Q4_0\'s clamped end), and requantising is lossless', () => {
    const values = randomValues(32 * 64, 5, 3);
    for (const [type, levels] of [['Q8_0', 127], ['Q4_0', 8]] as const) {
      const bytes = quantize(type, values);
      const back = dequantize(type, bytes, values.length);
      for (let b = 0; b < values.length / 32; b++) {
        const block = values.subarray(b * 32, (b + 1) * 32);
        const step = Math.max(...block.map(Math.abs)) / levels;
        // d is stored as F16 (relative error up to 2^-11), which every q (up to `levels`) multiplies.
        const bound = (type === 'Q8_0' ? step / 2 : step) + step * levels * 2 ** -11;
        for (let j = 0; j < 32; j++) assert.ok(Math.abs(back[b * 32 + j] - block[j]) <= bound, `${type} block ${b} element ${j}`);
      }
      assert.deepEqual(quantize(type, back), bytes, `${type} requantised`);
    }
  });

  test('float types narrow as half.ts does', () => {
    const values = Float32Array.from([1, -0.5, 65504, 1e-8]);
    // 1e-8 is below half F16's smallest subnormal (2^-24), so it rounds to 0.
    assert.deepEqual([...dequantize('F16', quantize('F16', values), 4)], [1, -0.5, 65504, 0]);
    assert.deepEqual([...dequantize('F32', quantize('F32', values), 4)], [...values]);
    assert.deepEqual([...dequantize('BF16', quantize('BF16', Float32Array.from([1.5, -2])), 2)], [1.5, -2]);
  });
});

describe('Q8_0/Q4_0 as BlockQuantized (MatMulNBits layout)', () => {
  const rows = 5;
  const cols = 64;
  const values = randomValues(rows * cols, 9);
  const order = [3, 0, 4, 1, 2];

  for (const type of ['Q8_0', 'Q4_0'] as const) {
    test(`${type}: scale * (q - zero point) equals the dequantised rows, permuted`, () => {
      const bytes = quantize(type, values);
      const flat = dequantize(type, bytes, values.length);
      const bq = toBlockQuantized(type, bytes, rows, cols, order);
      assert.equal(bq.bits, type === 'Q8_0' ? 8 : 4);
      assert.deepEqual([bq.blockSize, bq.rows, bq.cols, bq.scales.length], [32, rows, cols, rows * 2]);
      assert.equal(bq.data.length, (rows * cols * bq.bits) / 8);
      const zeroPoint = 2 ** (bq.bits - 1);
      const q = (r: number, c: number) => {
        const block = r * 2 + Math.floor(c / 32);
        if (bq.bits === 8) return bq.data[block * 32 + (c % 32)];
        const byte = bq.data[block * 16 + Math.floor((c % 32) / 2)];
        return c % 2 === 0 ? byte & 0xf : byte >> 4;
      };
      for (let r = 0; r < rows; r++) {
        const got = Array.from({ length: cols }, (_, c) => bq.scales[r * 2 + Math.floor(c / 32)] * (q(r, c) - zeroPoint));
        assertClose(got, flat.subarray(order[r] * cols, (order[r] + 1) * cols), 0, `${type} row ${r}`);
      }
    });
  }

  test('fromBlockQuantized undoes toBlockQuantized byte for byte', () => {
    for (const type of ['Q8_0', 'Q4_0'] as const) {
      const bytes = quantize(type, values);
      assert.deepEqual(fromBlockQuantized(toBlockQuantized(type, bytes, rows, cols)), bytes, type);
    }
  });

  test('Q4_0 nibbles move from (j, j + 16) pairs to (2i, 2i + 1) pairs', () => {
    const q = Array.from({ length: 32 }, (_, j) => j % 16);
    const block = Uint8Array.from([...f16Bytes(F16[1]), ...Array.from({ length: 16 }, (_, j) => q[j] | (q[j + 16] << 4))]);
    const bq = toBlockQuantized('Q4_0', block, 1, 32);
    assert.deepEqual([...bq.data], Array.from({ length: 16 }, (_, i) => q[2 * i] | (q[2 * i + 1] << 4)));
    assert.deepEqual([...bq.scales], [1]);
  });

  test('Q8_0 stores int8 q as q + 128', () => {
    const block = Uint8Array.from([...f16Bytes(F16[0.5]), ...[-128, -1, 0, 1, 127, ...new Array(27).fill(0)].map(int8)]);
    const bq = toBlockQuantized('Q8_0', block, 1, 32);
    assert.deepEqual([...bq.data.subarray(0, 5)], [0, 127, 128, 129, 255]);
    assert.deepEqual([...bq.scales], [0.5]);
  });
});
