/**
 * 16-bit float conversions between F32 and the two half formats checkpoints use:
 * IEEE 754 binary16 (F16: 1 sign, 5 exponent, 10 mantissa bits) and bfloat16 (BF16: the high
 * 16 bits of an F32). Narrowing rounds to nearest, ties to even, as PyTorch does.
 *
 * The scalar functions are the reference; the array functions are the fast paths (a lookup table
 * for F16 widening, bit shifts for BF16) and tests check them against the scalars.
 * Not a place for quantized formats.
 */

/** Value of one F16 bit pattern, written from the format's definition (subnormals, inf, NaN). */
export function f16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >>> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24; // zero or subnormal
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

// Scratch views to read an F32's bits; single-threaded, so sharing them is safe.
const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** The F16 bit pattern nearest to x (ties to even); overflow gives inf, NaN stays NaN. */
export function numberToF16Bits(x: number): number {
  f32Scratch[0] = x;
  const bits = u32Scratch[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa === 0 ? 0 : 0x200 | (mantissa >>> 13));
  const e = exponent - 127 + 15; // rebias
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal result: value = m * 2^-24, so shift the 24-bit significand right by 14 - e.
    const shift = 14 - e;
    if (shift > 24) return sign; // below half the smallest subnormal: rounds to zero
    const significand = mantissa | 0x800000;
    const m = significand >>> shift;
    return sign | roundHalfEven(m, significand & ((1 << shift) - 1), 1 << (shift - 1));
  }
  // Normal result; a carry out of the mantissa correctly bumps the exponent (up to inf).
  const half = (e << 10) | (mantissa >>> 13);
  return sign | roundHalfEven(half, mantissa & 0x1fff, 0x1000);
}

function roundHalfEven(truncated: number, remainder: number, halfway: number): number {
  if (remainder > halfway || (remainder === halfway && (truncated & 1) === 1)) return truncated + 1;
  return truncated;
}

/** Value of one BF16 bit pattern. */
export function bf16BitsToNumber(b: number): number {
  u32Scratch[0] = (b & 0xffff) << 16;
  return f32Scratch[0];
}

/** The BF16 bit pattern nearest to x (ties to even); NaN stays a quiet NaN. */
export function numberToBf16Bits(x: number): number {
  f32Scratch[0] = x;
  const bits = u32Scratch[0];
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) return (bits >>> 16) | 0x40;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

let f16Table: Float32Array | undefined; // [65536], F16 bits -> F32 value, built on first use

export function f16ToF32(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToNumber(h);
  }
  const table = f16Table;
  for (let i = 0; i < src.length; i++) dst[i] = table[src[i]];
  return dst;
}

export function bf16ToF32(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  const out = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
  return dst;
}

export function f32ToF16(src: Float32Array, dst = new Uint16Array(src.length)): Uint16Array {
  for (let i = 0; i < src.length; i++) dst[i] = numberToF16Bits(src[i]);
  return dst;
}

export function f32ToBf16(src: Float32Array, dst = new Uint16Array(src.length)): Uint16Array {
  for (let i = 0; i < src.length; i++) dst[i] = numberToBf16Bits(src[i]);
  return dst;
}
