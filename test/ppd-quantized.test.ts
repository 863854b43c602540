/**
 * Identical output on quantized weights: a tree row's logits equal, bit for bit, those of the
 * same token decoded alone after its accepted prefix, with int8-quantized activations (--quantize
 * q8, MatMulNBits accuracy level 4), where one ulp of difference in attention becomes whole
 * quantization steps (docs/ARCHITECTURE.md, "Identical output"). The tree puts masked siblings
 * between a row and its parent, which moves the row's terms to other SIMD lanes of the softmax sum.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadLlamaModel } from '../src/checkpoint/load.ts';
import { newCache, prefill } from '../src/decode/autoregressive.ts';
import { causalMask, maskOverCache } from '../src/model/llama-model.ts';
import { memorySource, randomWeights, tinyConfig } from './helpers/tiny-model.ts';

for (const kvHeads of [2, 4]) test(`q8 weights, ${4 / kvHeads} query heads per kv head: a tree row after masked siblings has exactly the logits of one-row decoding`, async () => {
  const config = tinyConfig({ vocabSize: 512, hiddenSize: 256, intermediateSize: 512, numLayers: 2, numHeads: 4, numKvHeads: kvHeads, headDim: 64, maxPositionEmbeddings: 256 });
  const model = await loadLlamaModel(config, memorySource(config, randomWeights(config, 11), 'ppd-quantized'), { cacheDir: false, threads: 2, quantize: 'q8' });
  const V = config.vocabSize;
  try {
    let rowsChecked = 0;
    for (let trial = 0; trial < 12; trial++) {
      const context = Array.from({ length: 17 + 5 * trial }, (_, i) => (i * 131 + trial * 29 + 7) % V);
      const cache = newCache(model);
      await prefill(model, context, cache);
      const P = cache.length;
      // Step rows: root, then 9 children of the root; child r sees the root and itself only.
      const R = 10;
      const tokens = Array.from({ length: R }, (_, r) => (trial * 53 + r * 97 + 1) % V);
      const block = new Uint8Array(R * R);
      for (let r = 0; r < R; r++) block[r * R] = block[r * R + r] = 1;
      const tree = await model.forward({ embeds: model.embed(tokens), positions: tokens.map((_, r) => P + (r === 0 ? 0 : 1)), mask: maskOverCache(block, R, P), cache });

      // Plain decoding: the root alone, kept, then each child alone after it.
      const root = await model.forward({ embeds: model.embed([tokens[0]!]), positions: [P], mask: causalMask(1, P), cache });
      assert.deepEqual(tree.logits.subarray(0, V), root.logits, `trial ${trial}: root row`);
      cache.append(root.keys, root.values);
      for (let r = 1; r < R; r++) {
        const alone = await model.forward({ embeds: model.embed([tokens[r]!]), positions: [P + 1], mask: causalMask(1, P + 1), cache });
        const row = tree.logits.subarray(r * V, (r + 1) * V);
        const worst = row.reduce((m, x, v) => Math.max(m, Math.abs(x - alone.logits[v]!)), 0);
        assert.equal(worst, 0, `trial ${trial}, child row ${r}: logits differ from one-row decoding by up to ${worst}`);
        rowsChecked++;
      }
    }
    assert.equal(rowsChecked, 12 * 9);
  } finally {
    await model.release();
  }
});
