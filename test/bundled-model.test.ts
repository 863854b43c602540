/**
 * The committed default model and its PPD adapter, end to end: the model loads, its held-out
 * perplexity on a slice of the test split is no worse than the figure recorded beside it (the
 * card's command), and greedy PPD with the bundled adapter and trees reproduces plain greedy
 * decoding on held-out prompts while accepting several tokens per forward.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_ADAPTER, DEFAULT_MODEL } from '../src/cli/demo.ts';
import { documentsOf, tokenizeDocuments } from '../src/data/tokenize.ts';
import { perplexity } from '../src/eval/perplexity.ts';
import { startGeneration } from '../src/generate/request.ts';
import { loadModel, type LoadedModel } from '../src/checkpoint/load.ts';
import { DEFAULT_LOOKUP_TOKENS, loadPpdSetup } from '../src/ppd/setup.ts';

let loaded: LoadedModel;
const testText = readFileSync(join(DEFAULT_MODEL, '..', '..', 'data', 'corpus', 'test.txt'), 'utf8');

before(async () => {
  loaded = await loadModel(DEFAULT_MODEL);
});

after(async () => {
  await loaded.model.release();
});

test('the bundled model scores the test slice no worse than its recorded perplexity', async () => {
  const recorded = JSON.parse(readFileSync(join(DEFAULT_MODEL, 'perplexity-test-slice.json'), 'utf8'));
  const ids = Array.from(tokenizeDocuments(loaded.tokenizer!, documentsOf(testText)).subarray(0, recorded.tokens + 1));
  const result = await perplexity(loaded.model, ids, { window: recorded.window, stride: recorded.stride });
  assert.equal(result.tokens, recorded.tokens);
  assert.ok(result.perplexity <= recorded.perplexity * (1 + 1e-4), `perplexity ${result.perplexity} vs recorded ${recorded.perplexity}`);
  assert.ok(result.perplexity < 200, `perplexity ${result.perplexity}: the model has not learnt the corpus`);
});

test('greedy PPD with the bundled adapter equals plain decoding on held-out prompts, several tokens per forward', async () => {
  // The default trees (budget 8), not this machine's calibrated profile: the claim is about the adapter.
  // Prompt tokens alone first (lookup 0), then with the default context lookup as well.
  const ppd = loadPpdSetup(loaded.config, DEFAULT_ADAPTER, { trees: join(DEFAULT_ADAPTER, 'trees.json'), lookup: 0 });
  const withLookup = { ...ppd, lookup: DEFAULT_LOOKUP_TOKENS };
  let tokens = 0;
  let steps = 0;
  for (const doc of documentsOf(testText).slice(0, 60).filter((_, i) => i % 12 === 0)) {
    const prompt = doc.slice(0, 120);
    const plain = await startGeneration(loaded, { prompt, maxTokens: 48 }).complete();
    const fast = await startGeneration(loaded, { prompt, maxTokens: 48, ppd }).complete();
    assert.deepEqual(fast.ids, plain.ids, `prompt ${JSON.stringify(prompt)}`);
    const fastest = await startGeneration(loaded, { prompt, maxTokens: 48, ppd: withLookup }).complete();
    assert.deepEqual(fastest.ids, plain.ids, `prompt ${JSON.stringify(prompt)}, with context lookup`);
    tokens += fast.stats.newTokens;
    steps += fast.stats.steps;
  }
  assert.ok(tokens / steps > 1.15, `mean tokens per forward ${(tokens / steps).toFixed(2)}`);
});
