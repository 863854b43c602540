/**
 * The committed default model and its PPD adapter, end to end: the model loads, its held-out
 * perplexity on a slice of the test split is no worse than the figure recorded beside it (the
 * card's command), and greedy PPD with the bundled adapter and trees reproduces plain greedy
 * decoding on held-out prompts while accepting several tokens per forward, and its greedy text
 * loops no more than measured (a regression gate on repetition, below issue 18's target).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_ADAPTER, DEFAULT_MODEL } from '../src/cli/demo.ts';
import { bundledHeldOutFor } from '../src/data/bundled-corpora.ts';
import { promptHeadOf } from '../src/ppd/adapter-files.ts';
import { documentsOf, tokenizeDocuments } from '../src/data/tokenize.ts';
import { perplexity } from '../src/eval/perplexity.ts';
import { distinctNgramShare } from '../src/eval/repetition.ts';
import { startGeneration } from '../src/generate/request.ts';
import { loadModel, type LoadedModel } from '../src/checkpoint/load.ts';
import { DEFAULT_LOOKUP_TOKENS, loadPpdSetup } from '../src/ppd/setup.ts';

let loaded: LoadedModel;
/** Median share of distinct 4-grams in 128 greedy tokens below which the gate fails. */
const MIN_DISTINCT_4GRAMS = 0.08;
/** The test split of the corpus the bundled model's tokenizer was made for. */
let testText: string;

/** `count` held-out document openings spread over the test split (its documents come grouped by package). */
function heldOutPrompts(count: number, chars: number): string[] {
  const docs = documentsOf(testText);
  return Array.from({ length: count }, (_, i) => docs[Math.floor((i * docs.length) / count)]!.slice(0, chars));
}

before(async () => {
  loaded = await loadModel(DEFAULT_MODEL, { promptHead: promptHeadOf(DEFAULT_ADAPTER) });
  const heldOut = bundledHeldOutFor(loaded.tokenizer!);
  assert.ok(heldOut, 'the bundled model reads one of the corpora here');
  testText = readFileSync(heldOut, 'utf8');
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
  for (const prompt of heldOutPrompts(5, 160)) {
    const plain = await startGeneration(loaded, { prompt, maxTokens: 48 }).complete();
    const fast = await startGeneration(loaded, { prompt, maxTokens: 48, ppd }).complete();
    assert.deepEqual(fast.ids, plain.ids, `prompt ${JSON.stringify(prompt)}`);
    const fastest = await startGeneration(loaded, { prompt, maxTokens: 48, ppd: withLookup }).complete();
    assert.deepEqual(fastest.ids, plain.ids, `prompt ${JSON.stringify(prompt)}, with context lookup`);
    tokens += fast.stats.newTokens;
    steps += fast.stats.steps;
  }
  // 1.13 measured with the 14.3M-token model's adapter (the prompt's forward, one token, counted);
  // an adapter whose guesses never land gives 1.00.
  assert.ok(tokens / steps > 1.08, `mean tokens per forward ${(tokens / steps).toFixed(2)}`);
});

test('greedy continuations of held-out prompts do not loop (distinct 4-grams)', async () => {
  // issue 18's target is a median of at least 80 % distinct 4-grams over 128 new tokens; today's
  // bundled model (20.5M training tokens) reaches 10 % here (0.10 / 0.02 / 0.06 / 1.00, the last an
  // immediate EOS) and 13 % over bench:ppd's 16 prompts, so the gate sits just below that: it
  // catches a model that loops more, not the target. (Before it, the 14.3M-token model reached 18 %
  // here and the 6.1M-token model 33 %: longer training made greedy text repeat more, while test
  // perplexity fell from 136 to 47 to 34; docs/bench/training-curve.md.)
  const shares: number[] = [];
  for (const prompt of heldOutPrompts(4, 200)) {
    const { ids } = await startGeneration(loaded, { prompt, maxTokens: 128 }).complete();
    shares.push(distinctNgramShare(ids, 4));
  }
  const median = [...shares].sort((a, b) => a - b)[Math.floor(shares.length / 2)]!;
  assert.ok(median >= MIN_DISTINCT_4GRAMS, `median distinct 4-gram share ${median.toFixed(2)} (each: ${shares.map((x) => x.toFixed(2)).join(', ')})`);
});
