/**
 * The whole pretraining graph (embedding lookup + per-window training forward + cross-entropy +
 * autodiff backward) against finite differences, in float64 on ONNX Runtime: directional
 * derivatives along random directions, for every weight including the embedding table, tied and
 * untied, and with the families' biases, q/k norms, Llama 3 RoPE and a sliding window. Also:
 * the float32 training loss equals the inference forward's cross-entropy window by window, so
 * training and inference compute the same model.
 */
import { loadLlamaModel } from '../src/checkpoint/load.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildPretrainGraph, GRAD_NORM_SQUARED, gradName, IDS, LOSS, PretrainSession, TARGETS } from '../src/train/training-graph.ts';
import { createSession, OrtTensor } from '../src/runtime/ort.ts';
import { Rng } from '../src/sampling/rng.ts';
import { KVCache } from '../src/model/kv-cache.ts';
import { transpose } from '../src/model/llama-graph.ts';
import { logProbability } from '../src/eval/perplexity.ts';
import { EMBED_TOKENS } from '../src/model/weights.ts';
import type { LlamaConfig } from '../src/model/config.ts';
import { memorySource, randomWeights, tinyConfig } from './helpers/tiny-model.ts';

const VARIANTS: [string, Partial<LlamaConfig>][] = [
  ['untied embeddings', {}],
  ['tied embeddings', { tieWordEmbeddings: true }],
  // The families' additions: biases on every projection, Qwen3's q/k norms, Llama 3's RoPE, a window.
  [
    'biases, q/k norms, llama3 RoPE, sliding window 2',
    { bias: { qkv: true, output: true, mlp: true }, qkNorm: true, slidingWindow: 2, ropeScaling: { type: 'llama3', factor: 4, lowFreqFactor: 1, highFreqFactor: 2, originalMaxPositionEmbeddings: 16 } },
  ],
];

for (const [variant, overrides] of VARIANTS) {
  test(`pretraining gradients equal finite differences (float64, ${variant})`, async () => {
    const config = tinyConfig(overrides);
    // Two windows of 4 tokens: attention per window, its queries in chunks.
    const layout = { windows: 2, windowTokens: 4 };
    const N = 8;
    const { model, weightShapes } = buildPretrainGraph(config, layout, 'float64');
    const dir = mkdtempSync(join(tmpdir(), 'ppd-grad-'));
    writeFileSync(join(dir, 'm.onnx'), model);
    const session = await createSession(join(dir, 'm.onnx'), { threads: 1 });
    rmSync(dir, { recursive: true, force: true });

    const rng = new Rng(3);
    const names = [...weightShapes.keys()];
    const values = names.map((name) => {
      const d = weightShapes.get(name)!;
      const count = d.reduce((a, b) => a * b, 1);
      return Float64Array.from({ length: count }, () => (d.length === 1 ? 1 + 0.2 * (rng.next() - 0.5) : (2 * (rng.next() - 0.5)) / Math.sqrt(d[0]!)));
    });
    const int64 = (xs: number[]) => BigInt64Array.from(xs.map(BigInt));
    // A repeated id (5) makes the table's gradient sum several looked-up rows.
    const feeds = (vs: Float64Array[]) => ({
      ...Object.fromEntries(names.map((name, i) => [name, new OrtTensor('float64', vs[i]!, weightShapes.get(name)!)])),
      [IDS]: new OrtTensor('int64', int64([0, 5, 2, 5, 9, 4, 5, 1]), [N]),
      [TARGETS]: new OrtTensor('int64', int64([3, 7, 1, 0, 39, 12, 5, 6]), [N, 1]),
    });
    const out = await session.run(feeds(values));
    const lossAt = async (directions: Float64Array[], t: number) =>
      Number((await session.run(feeds(values.map((v, i) => Float64Array.from(v, (x, j) => x + t * directions[i]![j]!))), [LOSS]))[LOSS]!.data[0]);

    // One direction per tensor (each weight checked on its own), then one along everything.
    const checks = [...names.map((_, only) => only), -1];
    for (const only of checks) {
      const directions = values.map((v, i) => (only === -1 || i === only ? Float64Array.from(v, () => rng.next() - 0.5) : new Float64Array(v.length)));
      let analytic = 0;
      names.forEach((name, i) => {
        const grad = out[gradName(name)]!.data as Float64Array;
        for (let j = 0; j < grad.length; j++) analytic += grad[j]! * directions[i]![j]!;
      });
      const eps = 1e-6;
      const numeric = ((await lossAt(directions, eps)) - (await lossAt(directions, -eps))) / (2 * eps);
      const what = only === -1 ? 'all weights' : names[only];
      assert.ok(Math.abs(analytic - numeric) <= 1e-6 * Math.max(1, Math.abs(numeric)), `${what}: analytic ${analytic} vs numeric ${numeric}`);
    }
    let squares = 0;
    for (const name of names) for (const x of out[gradName(name)]!.data as Float64Array) squares += x * x;
    assert.ok(Math.abs(Number(out[GRAD_NORM_SQUARED]!.data[0]) - squares) <= 1e-9 * squares, 'grad_norm_squared is the sum of squared gradients');
    await session.release();
  });
}

test('the float32 training loss equals the cross-entropy of the inference forward, window by window', async () => {
  const config = tinyConfig({ tieWordEmbeddings: true });
  const weights = randomWeights(config, 9);
  const tokens = [4, 8, 15, 16, 23, 42 % 40, 7, 1, 2, 3];
  const windows = [tokens.slice(0, 5), tokens.slice(5, 10)]; // 4 inputs + 1 target each
  const session = await PretrainSession.create(config, { windows: 2, windowTokens: 4 }, { threads: 1 });
  const graphWeights = new Map<string, Float32Array>();
  for (const [name, shape] of session.weightShapes) {
    const w = weights.get(name)!;
    graphWeights.set(name, shape.length === 2 && name !== EMBED_TOKENS ? transpose(w, shape[1]!, shape[0]!) : w);
  }
  const { loss } = await session.step({
    ids: windows.flatMap((w) => w.slice(0, 4)),
    targets: windows.flatMap((w) => w.slice(1, 5)),
    weights: graphWeights,
  });

  const model = await loadLlamaModel(config, memorySource(config, weights), { cacheDir: false, threads: 1 });
  let expected = 0;
  for (const window of windows) {
    const out = await model.forward({
      embeds: model.embed(window.slice(0, 4)),
      positions: [0, 1, 2, 3],
      mask: Uint8Array.from({ length: 16 }, (_, k) => (k % 4 <= Math.floor(k / 4) ? 1 : 0)),
      cache: new KVCache(config.numLayers, config.numKvHeads, config.headDim),
    });
    for (let t = 0; t < 4; t++) expected -= logProbability(out.logits, t * config.vocabSize, config.vocabSize, window[t + 1]!);
  }
  expected /= 8;
  assert.ok(Math.abs(loss - expected) < 1e-4, `training loss ${loss} vs inference cross-entropy ${expected}`);
  await model.release();
  await session.release();
});
