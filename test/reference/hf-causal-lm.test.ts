/**
 * Self-checks of the family reference forward (hf-causal-lm.ts), independent of ppd's graph:
 * on a plain LLaMA config it agrees with the other reference (naive-llama.ts, written
 * separately); llama3 RoPE scaling follows transformers' three bands; rope_parameters and
 * rope_theta + rope_scaling are the same config; a sliding window of 1 makes each position see
 * only itself; Qwen3's q/k norms make the attention blind to the scale of each head's
 * projection; Qwen2 with zero biases is LLaMA.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LlamaConfig } from '../../src/model/config.ts';
import { Rng } from '../../src/sampling/rng.ts';
import { assertClose } from '../helpers/tiny-model.ts';
import { hfArchitecture, hfForward, hfTensorShapes, referenceInvFreq } from './hf-causal-lm.ts';
import { causalMask, embedTokens, naiveForward } from './naive-llama.ts';

type Json = Record<string, unknown>;

const BASE: Json = {
  vocab_size: 40,
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 6,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
};
const IDS = [3, 17, 8, 29, 1, 39, 12];

function randomHfWeights(raw: Json, seed: number): Map<string, Float32Array> {
  const rng = new Rng(seed);
  const weights = new Map<string, Float32Array>();
  for (const [name, shape] of hfTensorShapes(raw)) {
    const size = shape.reduce((a, b) => a * b, 1);
    const w = new Float32Array(size);
    const norm = name.endsWith('norm.weight');
    for (let i = 0; i < size; i++) w[i] = norm ? 1 + 0.2 * (rng.next() - 0.5) : (4 * (rng.next() - 0.5)) / Math.sqrt(shape[1] ?? shape[0]!);
    weights.set(name, w);
  }
  return weights;
}

const flat = (rows: Float64Array[]) => Float64Array.from(rows.flatMap((r) => [...r]));

test('on a plain LLaMA config it equals the separately written naive reference', () => {
  const raw = { ...BASE, model_type: 'llama' };
  const w = randomHfWeights(raw, 1);
  const config: LlamaConfig = {
    modelType: 'llama', vocabSize: 40, hiddenSize: 16, intermediateSize: 24, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 6,
    rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: { type: 'none' }, bias: { qkv: false, output: false, mlp: false }, qkNorm: false,
    tieWordEmbeddings: false, maxPositionEmbeddings: 64, eosTokenIds: [],
  };
  const naive = naiveForward(config, w, { embeds: embedTokens(config, w, IDS), positions: IDS.map((_, i) => i), mask: causalMask(IDS.length, 0) });
  assertClose(flat(hfForward(raw, w, IDS)), naive.logits, 1e-5, 'logits');
});

test('llama3 RoPE: high frequencies kept, low ones divided by factor, the band between interpolated', () => {
  const raw = { rope_theta: 500000, rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 } };
  const D = 64;
  const plain = referenceInvFreq({ rope_theta: 500000 }, D);
  const scaled = referenceInvFreq(raw, D);
  let kept = 0;
  let divided = 0;
  let between = 0;
  plain.forEach((f, i) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < 8192 / 4) (kept++, assert.equal(scaled[i], f));
    else if (wavelen > 8192) (divided++, assert.ok(Math.abs(scaled[i]! - f / 32) < 1e-18));
    else (between++, assert.ok(scaled[i]! < f && scaled[i]! > f / 32, `band ${i}`));
  });
  assert.ok(kept > 0 && divided > 0 && between > 0, `${kept} kept, ${between} between, ${divided} divided`);
  // Continuous at both edges of the band: the smooth factor is 0 and 1 there.
  const at = (wavelen: number) => referenceInvFreq({ rope_theta: 1, rope_scaling: { ...(raw.rope_scaling as Json), original_max_position_embeddings: wavelen } }, 2)[0]!;
  assert.ok(Math.abs(at(2 * Math.PI) - 1 / 32) < 1e-12 && Math.abs(at(4 * 2 * Math.PI) - 1) < 1e-12);
  // transformers 5 writes the same as rope_parameters, rope_theta inside.
  const v5 = referenceInvFreq({ rope_parameters: { ...(raw.rope_scaling as Json), rope_theta: 500000 } }, D);
  assert.deepEqual(v5, scaled);
});

test('a sliding window of 1: each position sees only itself, so earlier tokens do not matter', () => {
  const raw = { ...BASE, model_type: 'mistral', sliding_window: 1 };
  const w = randomHfWeights(raw, 2);
  const a = hfForward(raw, w, IDS);
  const b = hfForward(raw, w, [5, 5, 5, ...IDS.slice(3)]);
  for (let t = 3; t < IDS.length; t++) assertClose(a[t]!, b[t]!, 1e-12, `position ${t}`);
  // And a window as long as the sequence changes nothing.
  const full = hfForward({ ...raw, sliding_window: IDS.length }, w, IDS);
  assertClose(flat(full), flat(hfForward({ ...raw, sliding_window: null }, w, IDS)), 1e-12, 'long window');
  assert.equal(hfArchitecture({ ...raw, sliding_window: null }).window, Infinity, 'null: no window');
  const { sliding_window: _, ...noKey } = raw;
  assert.equal(hfArchitecture(noKey).window, 4096, "transformers' default");
});

test('Qwen3: q/k norms make the output blind to the scale of a head\'s q and k projections', () => {
  const raw = { ...BASE, model_type: 'qwen3', attention_bias: false };
  const w = randomHfWeights(raw, 3);
  assert.ok(w.has('model.layers.0.self_attn.q_norm.weight') && !w.has('model.layers.0.self_attn.q_proj.bias'));
  const before = hfForward(raw, w, IDS);
  const scaled = new Map(w);
  const D = 6;
  for (const [name, heads] of [['model.layers.1.self_attn.q_proj.weight', 4], ['model.layers.0.self_attn.k_proj.weight', 2]] as const) {
    const m = Float32Array.from(w.get(name)!);
    for (let h = 0; h < heads; h++) for (let i = h * D * 16; i < (h + 1) * D * 16; i++) m[i]! *= 1 + h; // head h times 1+h
    scaled.set(name, m);
  }
  assertClose(flat(hfForward(raw, scaled, IDS)), flat(before), 1e-4, 'logits'); // not exact: rms_norm_eps
  // Without the norms (LLaMA), the same change changes the output.
  const llama = { ...BASE, model_type: 'llama' };
  const lw = new Map([...w].filter(([n]) => !n.includes('_norm.weight') || n.includes('layernorm')));
  const changed = new Map(lw);
  changed.set('model.layers.1.self_attn.q_proj.weight', scaled.get('model.layers.1.self_attn.q_proj.weight')!);
  assert.ok(Math.abs(hfForward(llama, lw, IDS)[6]![0]! - hfForward(llama, changed, IDS)[6]![0]!) > 1e-2);
});

test('Qwen2 carries q/k/v biases (not o); with zero biases it is LLaMA', () => {
  const raw = { ...BASE, model_type: 'qwen2' };
  const shapes = hfTensorShapes(raw);
  assert.deepEqual(shapes.get('model.layers.0.self_attn.q_proj.bias'), [24]);
  assert.deepEqual(shapes.get('model.layers.0.self_attn.k_proj.bias'), [12]);
  assert.equal(shapes.has('model.layers.0.self_attn.o_proj.bias'), false);
  const w = randomHfWeights(raw, 4);
  const zero = new Map([...w].map(([n, t]) => [n, n.endsWith('.bias') ? new Float32Array(t.length) : t]));
  const llama = new Map([...w].filter(([n]) => !n.endsWith('.bias')));
  assertClose(flat(hfForward(raw, zero, IDS)), flat(hfForward({ ...BASE, model_type: 'llama' }, llama, IDS)), 1e-12, 'logits');
  assert.ok(Math.abs(hfForward(raw, w, IDS)[0]![0]! - hfForward(raw, zero, IDS)[0]![0]!) > 1e-6, 'the biases matter');
  // LLaMA's own flags: attention_bias puts biases on all four projections, mlp_bias on the MLP.
  const llamaBiased = hfTensorShapes({ ...BASE, model_type: 'llama', attention_bias: true, mlp_bias: true });
  for (const part of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) assert.ok(llamaBiased.has(`model.layers.0.self_attn.${part}.bias`), part);
  assert.deepEqual(llamaBiased.get('model.layers.0.mlp.down_proj.bias'), [16]);
});
