/**
 * The ONNX forward against the naive TypeScript reference on tiny random models: full prompt,
 * token-by-token with the KV cache, a two-branch tree mask, GQA/MQA/tied variants, linear RoPE
 * scaling. Tolerances are for f32 accumulation order differences only.
 */
import { loadLlamaModel } from '../src/checkpoint/load.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LlamaConfig } from '../src/model/config.ts';
import { KVCache } from '../src/model/kv-cache.ts';
import { causalMask } from '../src/model/llama-model.ts';
import { causalMask as naiveCausalMask, embedTokens, naiveForward } from './reference/naive-llama.ts';
import { assertClose, memorySource, randomWeights, range, tinyConfig } from './helpers/tiny-model.ts';

const TOL = 2e-4;
const IDS = [3, 17, 8, 29, 1, 39, 12];

async function tinyModel(config: LlamaConfig, seed = 1) {
  const weights = randomWeights(config, seed);
  const model = await loadLlamaModel(config, memorySource(config, weights), { cacheDir: false, threads: 1 });
  return { model, weights };
}

const newCache = (c: LlamaConfig) => new KVCache(c.numLayers, c.numKvHeads, c.headDim, 2);

for (const [label, overrides] of [
  ['GQA', {}],
  ['MHA, tied embeddings', { numKvHeads: 4, tieWordEmbeddings: true }],
  ['MQA, linear rope scaling', { numKvHeads: 1, ropeScaling: { type: 'linear', factor: 2.5 }, ropeTheta: 500 }],
] as [string, Partial<LlamaConfig>][]) {
  test(`forward over a prompt equals the naive reference (${label})`, async () => {
    const config = tinyConfig(overrides);
    const { model, weights } = await tinyModel(config);
    const out = await model.forward({
      embeds: model.embed(IDS),
      positions: range(0, IDS.length),
      mask: causalMask(IDS.length, 0),
      cache: newCache(config),
    });
    const ref = naiveForward(config, weights, {
      embeds: embedTokens(config, weights, IDS),
      positions: range(0, IDS.length),
      mask: naiveCausalMask(IDS.length, 0),
    });
    assertClose(out.logits, ref.logits, TOL, 'logits');
    for (let l = 0; l < config.numLayers; l++) {
      assertClose(out.keys[l]!, ref.keys[l]!, TOL, `keys[${l}]`);
      assertClose(out.values[l]!, ref.values[l]!, TOL, `values[${l}]`);
    }
    await model.release();
  });
}

test('token-by-token with the KV cache equals the uncached forward', async () => {
  const config = tinyConfig();
  const { model } = await tinyModel(config, 2);
  const full = await model.forward({
    embeds: model.embed(IDS),
    positions: range(0, IDS.length),
    mask: causalMask(IDS.length, 0),
    cache: newCache(config),
  });
  const cache = newCache(config);
  const V = config.vocabSize;
  for (let t = 0; t < IDS.length; t++) {
    const step = await model.forward({ embeds: model.embed([IDS[t]!]), positions: [t], mask: causalMask(1, t), cache });
    assertClose(step.logits, full.logits.subarray(t * V, (t + 1) * V), TOL, `logits at ${t}`);
    cache.append(step.keys, step.values);
  }
  assert.equal(cache.length, IDS.length);
  await model.release();
});

test('a two-branch tree forward equals each branch run alone, and keeping the accepted branch\'s rows continues it exactly', async () => {
  const config = tinyConfig();
  const { model } = await tinyModel(config, 3);
  const V = config.vocabSize;
  const prefix = [5, 9, 14];
  const [a, b] = [[20, 21], [30, 31]];
  const cache = newCache(config);
  const pre = await model.forward({ embeds: model.embed(prefix), positions: [0, 1, 2], mask: causalMask(3, 0), cache });
  cache.append(pre.keys, pre.values);

  // Rows: a0 a1 b0 b1 at positions 3 4 3 4; each row sees the prefix and its own branch.
  const P = cache.length;
  const S = P + 4;
  const mask = new Uint8Array(4 * S);
  const see = (row: number, cols: number[]) => {
    mask.fill(1, row * S, row * S + P);
    for (const c of cols) mask[row * S + P + c] = 1;
  };
  see(0, [0]);
  see(1, [0, 1]);
  see(2, [2]);
  see(3, [2, 3]);
  const tree = await model.forward({ embeds: model.embed([...a, ...b]), positions: [3, 4, 3, 4], mask, cache });

  for (const [branch, rows] of [[a, [0, 1]], [b, [2, 3]]] as const) {
    const alone = newCache(config);
    alone.append(pre.keys, pre.values);
    const ref = await model.forward({ embeds: model.embed(branch), positions: [3, 4], mask: causalMask(2, P), cache: alone });
    rows.forEach((row, i) => assertClose(tree.logits.subarray(row * V, (row + 1) * V), ref.logits.subarray(i * V, (i + 1) * V), TOL, `branch row ${row}`));
  }

  // Accept branch b: keep tree rows 2 and 3 (as decoders do), then the next token must see exactly prefix + b.
  cache.append(tree.keys, tree.values, [2, 3]);
  const next = await model.forward({ embeds: model.embed([7]), positions: [5], mask: causalMask(1, 5), cache });
  const straight = newCache(config);
  const ref = await model.forward({ embeds: model.embed([...prefix, ...b, 7]), positions: range(0, 6), mask: causalMask(6, 0), cache: straight });
  assertClose(next.logits, ref.logits.subarray(5 * V, 6 * V), TOL, 'after keeping the accepted branch');
  await model.release();
});

test('bad forward inputs are InputErrors', async () => {
  const config = tinyConfig();
  const { model } = await tinyModel(config);
  assert.throws(() => model.embed([40]), /token id 40 is outside the vocabulary/);
  assert.throws(() => model.embed([-1]), /token id -1/);
  const cache = newCache(config);
  await assert.rejects(model.forward({ embeds: model.embed([1, 2]), positions: [0], mask: causalMask(1, 0), cache }), /embeds hold/);
  await assert.rejects(model.forward({ embeds: model.embed([1]), positions: [0], mask: new Uint8Array(1), cache }), /attends to nothing/);
  await assert.rejects(model.forward({ embeds: model.embed([1]), positions: [0], mask: new Uint8Array(3), cache }), /mask holds 3/);
  await model.release();
});

test('compiled graphs are cached by content and reused', async () => {
  const config = tinyConfig();
  const dir = mkdtempSync(join(tmpdir(), 'ppd-cache-'));
  try {
    const weights = randomWeights(config, 4);
    const first = await loadLlamaModel(config, memorySource(config, weights), { cacheDir: dir, threads: 1 });
    const second = await loadLlamaModel(config, memorySource(config, weights), { cacheDir: dir, threads: 1 });
    const input = () => ({ embeds: first.embed(IDS), positions: range(0, 7), mask: causalMask(7, 0), cache: newCache(config) });
    assert.deepEqual((await second.forward(input())).logits, (await first.forward(input())).logits);
    await first.release();
    await second.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
