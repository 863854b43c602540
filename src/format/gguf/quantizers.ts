/**
 * F32 rows to ggml blocks for the types ppd writes beyond Q8_0/Q4_0 (whose rules model/quantize.ts
 * holds): Q4_1, Q5_0, Q5_1 and the K-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K. Each follows the
 * reference quantizer of ggml-quants.c (quantize_row_*_ref, what llama-quantize runs without an
 * importance matrix) step by step, in F32 arithmetic where ggml computes in float: the same
 * searches for scales and minimums, the same rounding (nearest_int: halves to even), the same
 * second pass that re-rounds every element against the F16-rounded scales the file keeps. A C
 * compiler may fuse a multiply and an add where this code rounds twice, so a rare element may
 * land one code away from llama-quantize's; the block layout is exactly ggml's (the inverse of
 * codes.ts, which tests check).
 *
 * Shapes: `x` is one tensor's values, row-major, a whole number of blocks (32 elements for the
 * _0/_1 types, 256 for the K types); the result is its blocks back to back.
 */
import { numberToF16Bits } from '../half.ts';
import { CODE_LAYOUTS, f16At, kScaleMin, type QuantType } from './codes.ts';

const f = Math.fround;

/** ggml's nearest_int: round to nearest, halves to even, as the F32 add of 1.5 * 2^23 does. */
const nearestInt = (v: number): number => f(v + 12582912) - 12582912;

/** Writes value as F16 at out[at] and returns the F16's value (what a reader will see). */
function putF16(out: Uint8Array, at: number, value: number): number {
  const bits = numberToF16Bits(value);
  out[at] = bits & 0xff;
  out[at + 1] = bits >> 8;
  return f16At(out, at);
}

/** C's 0.1f. */
const TENTH = f(0.1);

const clamp = (v: number, lo: number, hi: number) => Math.max(lo, Math.min(hi, v));

// ---------------------------------------------------------------------------------------------
// 32-element types.

/** min and max of x[at, at + n). */
function minMax(x: Float32Array, at: number, n: number): [number, number] {
  let [min, max] = [Infinity, -Infinity];
  for (let j = 0; j < n; j++) {
    min = Math.min(min, x[at + j]!);
    max = Math.max(max, x[at + j]!);
  }
  return [min, max];
}

/** The element of largest magnitude in x[at, at + n), with its sign (the first one on ties). */
function signedMax(x: Float32Array, at: number, n: number): number {
  let [amax, max] = [0, 0];
  for (let j = 0; j < n; j++) {
    if (amax < Math.abs(x[at + j]!)) [amax, max] = [Math.abs(x[at + j]!), x[at + j]!];
  }
  return max;
}

/** Codes of one 32-element block into a ggml nibble-pair layout (byte j: elements j and j + 16), fifth bits into a u32. */
function packQ5Like(q: Uint8Array, out: Uint8Array, qsAt: number, qhAt: number | undefined): void {
  for (let j = 0; j < 16; j++) out[qsAt + j] = (q[j]! & 0xf) | ((q[j + 16]! & 0xf) << 4);
  if (qhAt === undefined) return;
  for (let j = 0; j < 32; j++) out[qhAt + (j >> 3)]! |= ((q[j]! >> 4) & 1) << (j & 7);
}

/**
 * quantize_row_q4_1_ref / q5_1_ref: d = (max - min) / (2^bits - 1), m = min,
 * q = trunc((x - min) / d + 0.5) (at most 15 for Q4_1).
 */
function quantizeAffine32(x: Float32Array, bits: 4 | 5): Uint8Array {
  const type = bits === 4 ? 'Q4_1' : 'Q5_1';
  const { blockBytes } = CODE_LAYOUTS[type];
  const out = new Uint8Array((x.length / 32) * blockBytes);
  const q = new Uint8Array(32);
  for (let b = 0; b < x.length / 32; b++) {
    const [at, o] = [b * 32, b * blockBytes];
    const [min, max] = minMax(x, at, 32);
    const d = f(f(max - min) / ((1 << bits) - 1));
    const id = d ? f(1 / d) : 0;
    putF16(out, o, d);
    putF16(out, o + 2, min);
    for (let j = 0; j < 32; j++) {
      const v = Math.trunc(f(f(f(x[at + j]! - min) * id) + 0.5));
      q[j] = bits === 4 ? Math.min(15, v) : v;
    }
    packQ5Like(q, out, o + (bits === 4 ? 4 : 8), bits === 4 ? undefined : o + 4);
  }
  return out;
}

/** quantize_row_q5_0_ref: d = -(signed max) / 16, q = min(31, trunc(x / d + 16.5)). */
function quantizeQ5_0(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 32) * 22);
  const q = new Uint8Array(32);
  for (let b = 0; b < x.length / 32; b++) {
    const [at, o] = [b * 32, b * 22];
    const d = f(signedMax(x, at, 32) / -16);
    const id = d ? f(1 / d) : 0;
    putF16(out, o, d);
    for (let j = 0; j < 32; j++) q[j] = Math.min(31, Math.trunc(f(f(x[at + j]! * id) + 16.5)));
    packQ5Like(q, out, o + 6, o + 2);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The K-quants' searches for a sub-block's scale (and minimum).

/**
 * make_qkx2_quants: codes 0..nmax, scale and minimum (min <= 0) for x[at, at + n) minimising
 * the weighted squared (or absolute, `mad`) error, trying nstep + 1 scales around the range's.
 * Writes the codes to L[0, n) and returns [scale, -min]. (The hottest loop of a K-quant export:
 * written out by hand, scratch arrays reused.)
 */
function makeQkx2(
  x: Float32Array, at: number, n: number, nmax: number, w: Float32Array, L: Uint8Array,
  rmin: number, rdelta: number, nstep: number, mad: boolean,
): [number, number] {
  let [min, max] = minMax(x, at, n);
  let sumW = 0;
  let sumX = 0;
  for (let i = 0; i < n; i++) {
    sumW = f(sumW + w[i]!);
    sumX = f(sumX + f(w[i]! * x[at + i]!));
  }
  if (min > 0) min = 0;
  if (max === min) {
    L.fill(0, 0, n);
    return [0, -min];
  }
  const range = f(max - min);
  const shifted = SCRATCH_SHIFTED; // x - min, the quantity every trial scale multiplies
  for (let i = 0; i < n; i++) shifted[i] = x[at + i]! - min;
  const iscale0 = f(nmax / range);
  let scale = f(1 / iscale0);
  let best = 0;
  for (let i = 0; i < n; i++) {
    let l = f(f(iscale0 * shifted[i]!) + 12582912) - 12582912;
    l = l < 0 ? 0 : l > nmax ? nmax : l;
    L[i] = l;
    const diff = f(f(f(scale * l) + min) - x[at + i]!);
    best = f(best + f(w[i]! * (mad ? Math.abs(diff) : f(diff * diff))));
  }
  const aux = SCRATCH_CODES;
  for (let is = 0; is <= nstep; is++) {
    const iscale = f(f(f(rmin + f(rdelta * is)) + nmax) / range); // rdelta is the F32 0.1f
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      let l = f(f(iscale * shifted[i]!) + 12582912) - 12582912;
      l = l < 0 ? 0 : l > nmax ? nmax : l;
      aux[i] = l;
      const wl = f(w[i]! * l);
      sumL = f(sumL + wl);
      sumL2 = f(sumL2 + f(wl * l));
      sumXL = f(sumXL + f(wl * x[at + i]!));
    }
    const D = f(f(sumW * sumL2) - f(sumL * sumL));
    if (D <= 0) continue;
    let thisScale = f(f(f(sumW * sumXL) - f(sumX * sumL)) / D);
    let thisMin = f(f(f(sumL2 * sumX) - f(sumL * sumXL)) / D);
    if (thisMin > 0) {
      thisMin = 0;
      thisScale = f(sumXL / sumL2);
    }
    let error = 0;
    for (let i = 0; i < n; i++) {
      const diff = f(f(f(thisScale * aux[i]!) + thisMin) - x[at + i]!);
      error = f(error + f(w[i]! * (mad ? Math.abs(diff) : f(diff * diff))));
    }
    if (error < best) {
      for (let i = 0; i < n; i++) L[i] = aux[i]!;
      best = error;
      [scale, min] = [thisScale, thisMin];
    }
  }
  return [scale, -min];
}

/** Scratch for makeQkx2 (sub-blocks hold at most 32 elements; single-threaded). */
const SCRATCH_SHIFTED = new Float32Array(32);
const SCRATCH_CODES = new Uint8Array(32);

/**
 * make_qx_quants with rmse_type 1 (weights x^2), as Q6_K uses it: a symmetric scale for codes
 * -nmax..nmax-1 (stored + nmax in L), the best of 19 scales around -nmax / (signed max).
 */
function makeQx(x: Float32Array, at: number, n: number, nmax: number, L: Uint8Array): number {
  const max = signedMax(x, at, n);
  if (Math.abs(max) < 1e-15) {
    L.fill(0, 0, n);
    return 0;
  }
  // sum(w x l) and sum(w l^2) for one trial scale, w = x^2; the codes go to `out` when given.
  let sumLX = 0;
  let sumL2 = 0;
  const trial = (iscale: number, out: Uint8Array | undefined): void => {
    sumLX = 0;
    sumL2 = 0;
    for (let i = 0; i < n; i++) {
      const v = x[at + i]!;
      let l = f(f(iscale * v) + 12582912) - 12582912;
      l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
      if (out) out[i] = l + nmax;
      const w = f(v * v);
      sumLX = f(sumLX + f(f(w * v) * l));
      sumL2 = f(sumL2 + f(f(w * l) * l));
    }
  };
  trial(f(-nmax / max), L);
  let scale = sumL2 ? f(sumLX / sumL2) : 0;
  let best = f(scale * sumLX);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    const iscale = f(-f(nmax + f(TENTH * is)) / max);
    trial(iscale, undefined);
    if (sumL2 > 0 && f(sumLX * sumLX) > f(best * sumL2)) {
      trial(iscale, L);
      scale = f(sumLX / sumL2);
      best = f(scale * sumLX);
    }
  }
  return scale;
}

/**
 * make_q3_quants with do_rmse: symmetric codes -nmax..nmax-1 for x[at, at + n) (stored + nmax),
 * starting from -nmax / (signed max), then up to 5 passes moving single codes where that raises
 * sum(w x l)^2 / sum(w l^2), w = x^2.
 */
function makeQ3(x: Float32Array, at: number, n: number, nmax: number, L: Int8Array): number {
  const max = signedMax(x, at, n);
  if (Math.abs(max) < 1e-15) {
    L.fill(0, 0, n);
    return 0;
  }
  const iscale = f(-nmax / max);
  let [sumLX, sumL2] = [0, 0];
  for (let i = 0; i < n; i++) {
    const v = x[at + i]!;
    const l = clamp(nearestInt(f(iscale * v)), -nmax, nmax - 1);
    L[i] = l;
    const w = f(v * v);
    sumLX = f(sumLX + f(f(w * v) * l));
    sumL2 = f(sumL2 + f(f(w * l) * l));
  }
  for (let pass = 0; pass < 5; pass++) {
    let changed = 0;
    for (let i = 0; i < n; i++) {
      const v = x[at + i]!;
      const w = f(v * v);
      let slx = f(sumLX - f(f(w * v) * L[i]!));
      if (slx <= 0) continue;
      let sl2 = f(sumL2 - f(f(w * L[i]!) * L[i]!));
      const l = clamp(nearestInt(f(f(v * sl2) / slx)), -nmax, nmax - 1);
      if (l === L[i]) continue;
      slx = f(slx + f(f(w * v) * l));
      sl2 = f(sl2 + f(f(w * l) * l));
      if (sl2 > 0 && f(f(slx * slx) * sumL2) > f(f(sumLX * sumLX) * sl2)) {
        [L[i], sumLX, sumL2] = [l, slx, sl2];
        changed++;
      }
    }
    if (!changed) break;
  }
  for (let i = 0; i < n; i++) L[i]! += nmax;
  return sumL2 > 0 ? f(sumLX / sumL2) : 0;
}

// ---------------------------------------------------------------------------------------------
// K-quant blocks (256 elements).

/** The 2-bit fields of 256 codes into 64 bytes at out[at]: element 128h + 32j + l -> bits 2j of byte 32h + l. */
function packCrumbs(L: Uint8Array, out: Uint8Array, at: number): void {
  for (let h = 0; h < 2; h++) {
    for (let l = 0; l < 32; l++) {
      const e = 128 * h + l;
      out[at + 32 * h + l] = (L[e]! & 3) | ((L[e + 32]! & 3) << 2) | ((L[e + 64]! & 3) << 4) | ((L[e + 96]! & 3) << 6);
    }
  }
}

/** The largest of values. */
const maxOf = (values: Float32Array): number => values.reduce((a, b) => Math.max(a, b), 0);

/** quantize_row_q2_K_ref: 16 sub-blocks of 16, 4-bit scales and mins under F16 d and dmin, 2-bit codes. */
function quantizeQ2_K(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 256) * 84);
  const [L, w, scales, mins] = [new Uint8Array(256), new Float32Array(16), new Float32Array(16), new Float32Array(16)];
  for (let b = 0; b < x.length / 256; b++) {
    const [at, o] = [b * 256, b * 84];
    for (let j = 0; j < 16; j++) {
      for (let l = 0; l < 16; l++) w[l] = Math.abs(x[at + 16 * j + l]!);
      [scales[j], mins[j]] = makeQkx2(x, at + 16 * j, 16, 3, w, L.subarray(16 * j), -0.5, TENTH, 15, true);
    }
    const [maxScale, maxMin] = [maxOf(scales), maxOf(mins)];
    const iscale = maxScale > 0 ? f(15 / maxScale) : 0;
    const imin = maxMin > 0 ? f(15 / maxMin) : 0;
    // As in C: the scale's byte, then the min shifted into its high nibble (both in 0..15 unless a
    // search returned a negative scale).
    for (let j = 0; j < 16; j++) out[o + j] = (nearestInt(f(iscale * scales[j]!)) & 0xff) | ((nearestInt(f(imin * mins[j]!)) << 4) & 0xff);
    const d = putF16(out, o + 80, maxScale > 0 ? f(maxScale / 15) : 0);
    const dmin = putF16(out, o + 82, maxMin > 0 ? f(maxMin / 15) : 0);
    for (let j = 0; j < 16; j++) {
      const dl = f(d * (out[o + j]! & 0xf));
      if (!dl) continue;
      const ml = f(dmin * (out[o + j]! >> 4));
      for (let l = 0; l < 16; l++) L[16 * j + l] = clamp(nearestInt(f(f(x[at + 16 * j + l]! + ml) / dl)), 0, 3);
    }
    packCrumbs(L, out, o + 16);
  }
  return out;
}

/** quantize_row_q3_K_ref: 16 sub-blocks of 16, signed 6-bit scales under an F16 d, 3-bit codes (zero point 4). */
function quantizeQ3_K(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 256) * 110);
  const [L, scales] = [new Int8Array(256), new Float32Array(16)];
  for (let b = 0; b < x.length / 256; b++) {
    const [at, o] = [b * 256, b * 110];
    let [amax, maxScale] = [0, 0];
    for (let j = 0; j < 16; j++) {
      scales[j] = makeQ3(x, at + 16 * j, 16, 4, L.subarray(16 * j));
      if (Math.abs(scales[j]!) > amax) [amax, maxScale] = [Math.abs(scales[j]!), scales[j]!];
    }
    const sc = o + 96;
    let d = 0;
    if (maxScale) {
      const iscale = f(-32 / maxScale);
      for (let j = 0; j < 16; j++) {
        const l = clamp(nearestInt(f(iscale * scales[j]!)), -32, 31) + 32;
        if (j < 8) out[sc + j] = l & 0xf;
        else out[sc + j - 8]! |= (l & 0xf) << 4;
        out[sc + 8 + (j % 4)]! |= (l >> 4) << (2 * Math.floor(j / 4));
      }
      d = putF16(out, o + 108, f(1 / iscale));
    }
    for (let j = 0; j < 16; j++) {
      const low = j < 8 ? out[sc + j]! & 0xf : out[sc + j - 8]! >> 4;
      const high = (out[sc + 8 + (j % 4)]! >> (2 * Math.floor(j / 4))) & 3;
      const dl = f(d * ((low | (high << 4)) - 32));
      if (!dl) continue;
      for (let l = 0; l < 16; l++) L[16 * j + l] = clamp(nearestInt(f(x[at + 16 * j + l]! / dl)), -4, 3) + 4;
    }
    const codes = Uint8Array.from(L);
    for (let e = 0; e < 256; e++) {
      if (codes[e]! > 3) out[o + (e % 32)]! |= 1 << Math.floor(e / 32); // hmask: bit e / 32 of byte e % 32
    }
    packCrumbs(codes, out, o + 32);
  }
  return out;
}

/**
 * quantize_row_q4_K_ref / q5_K_ref: 8 sub-blocks of 32 with weights |x| + rms(sub-block), 6-bit
 * scales and mins under F16 d and dmin, 4- or 5-bit codes.
 */
function quantizeKAffine(x: Float32Array, bits: 4 | 5): Uint8Array {
  const type: QuantType = bits === 4 ? 'Q4_K' : 'Q5_K';
  const { blockBytes } = CODE_LAYOUTS[type];
  const nmax = (1 << bits) - 1;
  const out = new Uint8Array((x.length / 256) * blockBytes);
  const [L, w, scales, mins] = [new Uint8Array(256), new Float32Array(32), new Float32Array(8), new Float32Array(8)];
  for (let b = 0; b < x.length / 256; b++) {
    const [at, o] = [b * 256, b * blockBytes];
    for (let j = 0; j < 8; j++) {
      let sumX2 = 0;
      for (let l = 0; l < 32; l++) sumX2 = f(sumX2 + f(x[at + 32 * j + l]! * x[at + 32 * j + l]!));
      const avX = f(Math.sqrt(f(sumX2 / 32)));
      for (let l = 0; l < 32; l++) w[l] = f(avX + Math.abs(x[at + 32 * j + l]!));
      [scales[j], mins[j]] = bits === 4
        ? makeQkx2(x, at + 32 * j, 32, nmax, w, L.subarray(32 * j), -1, TENTH, 20, false)
        : makeQkx2(x, at + 32 * j, 32, nmax, w, L.subarray(32 * j), -0.5, TENTH, 15, false);
    }
    const [maxScale, maxMin] = [maxOf(scales), maxOf(mins)];
    const invScale = maxScale > 0 ? f(63 / maxScale) : 0;
    const invMin = maxMin > 0 ? f(63 / maxMin) : 0;
    const sc = o + 4;
    for (let j = 0; j < 8; j++) {
      const ls = Math.min(63, nearestInt(f(invScale * scales[j]!)) & 0xff); // a uint8_t in C
      const lm = Math.min(63, nearestInt(f(invMin * mins[j]!)) & 0xff);
      if (j < 4) {
        out[sc + j] = ls;
        out[sc + j + 4] = lm;
      } else {
        out[sc + j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
        out[sc + j - 4]! |= (ls >> 4) << 6;
        out[sc + j]! |= (lm >> 4) << 6;
      }
    }
    const d = putF16(out, o, f(maxScale / 63));
    const dmin = putF16(out, o + 2, f(maxMin / 63));
    for (let j = 0; j < 8; j++) {
      const [s, m] = kScaleMin(out, sc, j);
      const dl = f(d * s);
      if (!dl) continue;
      const dm = f(dmin * m);
      for (let l = 0; l < 32; l++) L[32 * j + l] = clamp(nearestInt(f(f(x[at + 32 * j + l]! + dm) / dl)), 0, nmax);
    }
    // Group g of 64 elements: 32 bytes, low nibbles sub-block 2g, high 2g + 1; Q5_K's fifth bits
    // go to bit s of qh[l] for element l of sub-block s.
    const qs = o + (bits === 4 ? 16 : 48);
    for (let g = 0; g < 4; g++) {
      for (let l = 0; l < 32; l++) out[qs + 32 * g + l] = (L[64 * g + l]! & 0xf) | ((L[64 * g + 32 + l]! & 0xf) << 4);
    }
    if (bits === 5) {
      for (let s = 0; s < 8; s++) {
        for (let l = 0; l < 32; l++) out[o + 16 + l]! |= (L[32 * s + l]! >> 4) << s;
      }
    }
  }
  return out;
}

/** quantize_row_q6_K_ref: 16 sub-blocks of 16, int8 scales under an F16 d, 6-bit codes (zero point 32). */
function quantizeQ6_K(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 256) * 210);
  const [L, scales] = [new Uint8Array(256), new Float32Array(16)];
  for (let b = 0; b < x.length / 256; b++) {
    const [at, o] = [b * 256, b * 210];
    let [amax, maxScale] = [0, 0];
    for (let j = 0; j < 16; j++) {
      scales[j] = makeQx(x, at + 16 * j, 16, 32, L.subarray(16 * j));
      if (Math.abs(scales[j]!) > amax) [amax, maxScale] = [Math.abs(scales[j]!), scales[j]!];
    }
    if (amax < 1e-15) continue; // an all-zero block: zero bytes, d = 0
    const iscale = f(-128 / maxScale);
    const d = putF16(out, o + 208, f(1 / iscale));
    for (let j = 0; j < 16; j++) out[o + 192 + j] = Math.min(127, nearestInt(f(iscale * scales[j]!))) & 0xff;
    for (let j = 0; j < 16; j++) {
      const dl = f(d * ((out[o + 192 + j]! << 24) >> 24));
      if (!dl) continue;
      for (let l = 0; l < 16; l++) L[16 * j + l] = clamp(nearestInt(f(x[at + 16 * j + l]! / dl)), -32, 31) + 32;
    }
    // Half h: ql[64h + l] = elements l | l+64 (nibbles), ql[64h + l + 32] = l+32 | l+96,
    // qh[32h + l] = top 2 bits of l, l+32, l+64, l+96.
    for (let h = 0; h < 2; h++) {
      for (let l = 0; l < 32; l++) {
        const e = 128 * h + l;
        out[o + 64 * h + l] = (L[e]! & 0xf) | ((L[e + 64]! & 0xf) << 4);
        out[o + 64 * h + l + 32] = (L[e + 32]! & 0xf) | ((L[e + 96]! & 0xf) << 4);
        out[o + 128 + 32 * h + l] = (L[e]! >> 4) | ((L[e + 32]! >> 4) << 2) | ((L[e + 64]! >> 4) << 4) | ((L[e + 96]! >> 4) << 6);
      }
    }
  }
  return out;
}

/** The types this file writes. */
export type KQuantWritable = 'Q4_1' | 'Q5_0' | 'Q5_1' | 'Q2_K' | 'Q3_K' | 'Q4_K' | 'Q5_K' | 'Q6_K';

/** `x` (whole blocks of the type) as ggml blocks of `type`. */
export function quantizeBlocks(type: KQuantWritable, x: Float32Array): Uint8Array {
  switch (type) {
    case 'Q4_1':
      return quantizeAffine32(x, 4);
    case 'Q5_1':
      return quantizeAffine32(x, 5);
    case 'Q5_0':
      return quantizeQ5_0(x);
    case 'Q2_K':
      return quantizeQ2_K(x);
    case 'Q3_K':
      return quantizeQ3_K(x);
    case 'Q4_K':
      return quantizeKAffine(x, 4);
    case 'Q5_K':
      return quantizeKAffine(x, 5);
    case 'Q6_K':
      return quantizeQ6_K(x);
  }
}
