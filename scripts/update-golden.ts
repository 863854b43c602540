/**
 * Regenerates test/golden/bundled-greedy.json, the bundled model's exact greedy continuation of a
 * fixed prompt (test/golden.test.ts), for when the bundled model is retrained. Run on purpose:
 *
 *   npx tsx scripts/update-golden.ts [--prompt TEXT] [--max-tokens N]
 *
 * It refuses to write a continuation that passes within 1e-3 of a tie between the top two
 * logits anywhere (another CPU's rounding could flip such a step); pick another prompt then.
 */
import { parseArgs } from 'node:util';
import { writeJsonAtomic } from '../src/format/atomic.ts';
import { DEFAULT_MODEL } from '../src/cli/demo.ts';
import { loadModel } from '../src/checkpoint/load.ts';
import { promptIds as encodePrompt, startGeneration } from '../src/generate/request.ts';
import { causalMask } from '../src/model/llama-model.ts';
import { newCache } from '../src/decode/autoregressive.ts';
import { GOLDEN_FILE, REGENERATE, weightsDigest } from '../test/helpers/golden.ts';

const MIN_MARGIN = 1e-3;
const { values } = parseArgs({ options: { prompt: { type: 'string', default: "// nunjucks/src/precompile.js\n'use strict';\n\nvar fs = require('fs');\nvar path = require('path');\n" }, 'max-tokens': { type: 'string', default: '32' } } });
const prompt = values.prompt!;
const maxTokens = Number(values['max-tokens']);

const loaded = await loadModel(DEFAULT_MODEL, { threads: 1 });
const { ids, text } = await startGeneration(loaded, { prompt, maxTokens }).complete();

// Margins from one uncached forward over prompt + continuation: row t predicts token t + 1.
const promptIds = encodePrompt(loaded, prompt);
const all = [...promptIds, ...ids];
const out = await loaded.model.forward({ embeds: loaded.model.embed(all), positions: all.map((_, i) => i), mask: causalMask(all.length, 0), cache: newCache(loaded.model) });
const V = loaded.config.vocabSize;
let minMargin = Infinity;
for (let t = promptIds.length - 1; t < all.length - 1; t++) {
  const row = out.logits.subarray(t * V, (t + 1) * V);
  const sorted = Array.from(row).sort((a, b) => b - a);
  minMargin = Math.min(minMargin, sorted[0]! - sorted[1]!);
}
await loaded.model.release();
if (minMargin < MIN_MARGIN) {
  console.error(`error: the continuation passes within ${minMargin} of a tie; choose another --prompt or --max-tokens`);
  process.exit(1);
}
writeJsonAtomic(GOLDEN_FILE, { schema: 'ppd.golden/1', regenerate: REGENERATE, weightsDigest: weightsDigest(DEFAULT_MODEL), prompt, maxTokens, ids, text, minMargin });
console.log(`wrote ${GOLDEN_FILE}: ${ids.length} tokens, smallest top-two logit gap ${minMargin.toFixed(4)}\n${prompt}${text}`);
