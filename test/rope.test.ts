/**
 * RoPE frequencies (src/model/rope.ts) against the reference's reading of transformers
 * (test/reference/hf-causal-lm.ts), and Llama 3's parameters recovered from the rope_freqs
 * factors llama.cpp's converter writes (computed here as convert_hf_to_gguf.py does, in f32).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { llama3FromFactors, ropeDivisors, ropeInverseFrequencies, type RopeScaling } from '../src/model/rope.ts';
import { referenceInvFreq } from './reference/hf-causal-lm.ts';

const LLAMA32: RopeScaling = { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };
const LLAMA32_JSON = { rope_theta: 500000, rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 } };

test('inverse frequencies equal the reference for none, linear and llama3 scaling', () => {
  const cases: [RopeScaling, number, Record<string, unknown>][] = [
    [{ type: 'none' }, 10000, { rope_theta: 10000 }],
    [{ type: 'linear', factor: 2.5 }, 500, { rope_theta: 500, rope_scaling: { type: 'linear', factor: 2.5 } }],
    [LLAMA32, 500000, LLAMA32_JSON],
  ];
  for (const [scaling, theta, json] of cases) {
    for (const D of [8, 64, 128]) {
      const ours = ropeInverseFrequencies(D, theta, scaling);
      const ref = referenceInvFreq(json, D);
      ours.forEach((f, i) => assert.ok(Math.abs(f - ref[i]!) <= 1e-15 + 1e-12 * ref[i]!, `${scaling.type} D=${D} i=${i}: ${f} vs ${ref[i]}`));
    }
  }
});

/** convert_hf_to_gguf.py's rope_freqs for llama3 scaling: freqs in f32, the bands compared in f32. */
function converterFactors(D: number, theta: number, s: Extract<RopeScaling, { type: 'llama3' }>): number[] {
  const f32 = Math.fround;
  return Array.from({ length: D / 2 }, (_, i) => {
    const freq = f32(1 / f32(Math.pow(theta, f32((2 * i) / D))));
    const wavelen = f32((2 * Math.PI) / freq);
    if (wavelen < s.originalMaxPositionEmbeddings / s.highFreqFactor) return 1;
    if (wavelen > s.originalMaxPositionEmbeddings / s.lowFreqFactor) return s.factor;
    const smooth = f32((s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor));
    return f32(1 / ((1 - smooth) / s.factor + smooth));
  });
}

test('Llama 3 parameters come back from the factors llama.cpp\'s converter writes', () => {
  for (const [D, theta, scaling] of [
    [64, 500000, LLAMA32],
    [128, 500000, { ...LLAMA32, factor: 8 }], // Llama 3.1 8B
    [32, 10000, { type: 'llama3', factor: 4, lowFreqFactor: 1, highFreqFactor: 2, originalMaxPositionEmbeddings: 64 }],
  ] as const) {
    const factors = converterFactors(D, theta, scaling);
    assert.deepEqual(llama3FromFactors(D, theta, factors), scaling, `D=${D}`);
    // The graph's divisors from those factors are the converter's own to f32 precision.
    ropeDivisors(D, theta, scaling).forEach((d, i) => assert.ok(Math.abs(d - factors[i]!) < 1e-5 * d));
  }
  // Too few frequencies in the interpolated band to tell, or not llama3's shape: no parameters.
  assert.equal(llama3FromFactors(8, 10000, converterFactors(8, 10000, LLAMA32)), undefined);
  assert.equal(llama3FromFactors(8, 10000, [1, 2, 3, 4]), undefined);
  assert.equal(llama3FromFactors(8, 10000, [1, 1, 1, 1]), undefined);
});
