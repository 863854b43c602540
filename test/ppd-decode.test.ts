/**
 * PPD decoding on tiny random models against plain decoding of the same model:
 * - greedy PPD emits exactly the greedy autoregressive tokens, for 60 prompts, several trees
 *   (chains, wide and deep, V = 1 and 2, every attention variant), with chains drafted by the
 *   context lookup and by a static n-gram table, including across EOS, stop strings and the
 *   token limit when run through `Generation`, and when its calls are driven one by one under a
 *   changing row budget (as a batching scheduler does);
 * - sampled PPD with coupled verification (the default) emits exactly the tokens plain sampling
 *   with the same seed emits, so it has the model's distribution and reproduces seeds;
 * - sampled PPD (rejection verification) has the model's own sampling distribution: the joint
 *   distribution of the first two tokens matches exact enumeration (chi-square, fixed seed),
 *   without and with a drafted chain, and its first tree steps do accept guesses.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { autoregressive, newCache, prefill } from '../src/decode/autoregressive.ts';
import { forwardRows } from '../src/decode/rows.ts';
import { Generation } from '../src/generate/generate.ts';
import { loadModel, type LoadedModel, loadLlamaModel } from '../src/checkpoint/load.ts';
import { causalMask, LlamaModel } from '../src/model/llama-model.ts';
import { PromptAdapter } from '../src/ppd/adapter.ts';
import { PpdDecoder, ppdDecode } from '../src/ppd/decode.ts';
import type { DraftOutcome } from '../src/ppd/draft.ts';
import { buildTreeSet } from '../src/ppd/tree-builder.ts';
import { countNgrams, NgramTable, type NgramBinding } from '../src/ppd/ngram-table.ts';
import { loadNgramTable, saveNgramTable } from '../src/ppd/ngram-files.ts';
import { Rng } from '../src/sampling/rng.ts';
import { Sampler, toProbabilities } from '../src/sampling/sampler.ts';
import { BYTE_MODEL_SHAPE, writeByteModel } from './helpers/byte-model.ts';
import { chiSquare, take } from './helpers/decoding.ts';
import { memorySource, randomWeights, tinyConfig } from './helpers/tiny-model.ts';

/** A made-up accuracy table: rank k at position i right with probability ~ 0.5^(k+1) * 0.8^i. */
const ACC = [0, 1, 2].map((i) => Array.from({ length: 6 }, (_, k) => 0.45 * Math.pow(0.5, k) * Math.pow(0.8, i)));

const config = tinyConfig({ vocabSize: 40 });
const weights = randomWeights(config, 31);
let model: LlamaModel;

before(async () => {
  model = await loadLlamaModel(config, memorySource(config, weights), { cacheDir: false, threads: 1 });
});

const table = () => weights.get('model.embed_tokens.weight')!;

/**
 * A static n-gram table of `model`'s own greedy continuations of `count` random prompts (as
 * `ppd ngram build` makes one), through the file format.
 */
async function ownTable(model: LlamaModel, count: number, seed: number, vocab: number): Promise<NgramTable> {
  const rng = new Rng(seed);
  const sequences = [];
  for (let p = 0; p < count; p++) {
    const prompt = Array.from({ length: 2 + Math.floor(rng.next() * 6) }, () => Math.floor(rng.next() * vocab));
    sequences.push({ ids: [...prompt, ...(await take(autoregressive(model, prompt, new Sampler({ temperature: 0 })), 24))], countFrom: prompt.length });
  }
  const binding: NgramBinding = { vocabSize: vocab, tokenizer: '0000000000000000', configHash: 'test' };
  const dir = mkdtempSync(join(tmpdir(), 'ppd-decode-ngram-'));
  try {
    const path = join(dir, 'ngram.bin');
    saveNgramTable(path, NgramTable.encode(countNgrams(sequences, { maxNgram: 4, minCount: 2, topK: 4 }), { binding, minCount: 2, topK: 4, source: {}, created: new Date(0).toISOString() }));
    return loadNgramTable(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Greedy PPD against greedy plain decoding of `m` on `prompts` random prompts, 30 tokens each;
 * returns the mean tokens per step. `lookup`: context-lookup tokens per step (0 = none); `ngram`:
 * a static n-gram table drafting up to 6 tokens per step.
 */
async function assertGreedyPpdMatches(m: LlamaModel, budget: number, V: 1 | 2, attention: 'ensemble' | 'decoder' | 'encoder', prompts: number, lookup = 0, ngram?: NgramTable): Promise<number> {
  const adapter = PromptAdapter.initialise(config, table(), [5, 6, 7], { promptTokens: 3, virtualTokens: V, attention, initText: 't' });
  const trees = buildTreeSet(ACC, { budget, promptTokens: 3, virtualTokens: V, attention });
  const rng = new Rng(budget);
  let steps = 0;
  let produced = 0;
  for (let p = 0; p < prompts; p++) {
    const prompt = Array.from({ length: 2 + Math.floor(rng.next() * 10) }, () => Math.floor(rng.next() * 40));
    const plain = await take(autoregressive(m, prompt, new Sampler({ temperature: 0 })), 30);
    const ppd = await take(ppdDecode(m, prompt, { adapter, trees, lookup, ngram: ngram && { table: ngram, tokens: 6 }, sampler: new Sampler({ temperature: 0 }), onStep: (n) => ((steps += 1), (produced += n)) }), 30);
    assert.deepEqual(ppd, plain, `prompt ${prompt.join(',')}`);
  }
  // The trees must really be exercised: several tokens accepted in some steps.
  if (budget > 1 || lookup > 0 || ngram) assert.ok(produced / steps > 1.05, `mean tokens per step ${produced / steps}`);
  return produced / steps;
}

for (const [label, budget, V, attention] of [
  ['chain-like small tree', 4, 1, 'ensemble'],
  ['wide tree', 16, 1, 'ensemble'],
  ['deep tree, two virtual tokens, decoder attention', 24, 2, 'decoder'],
  ['encoder attention', 12, 2, 'encoder'],
] as const) {
  test(`greedy PPD equals greedy decoding token for token (${label})`, async () => {
    await assertGreedyPpdMatches(model, budget, V, attention, label === 'wide tree' ? 30 : 10);
  });
}

test('greedy PPD with a context-lookup chain equals greedy decoding, and the chain adds accepted tokens', async () => {
  // The tiny random model's greedy text falls into loops, which the lookup proposes.
  for (const [budget, V, attention] of [[1, 1, 'ensemble'], [8, 1, 'ensemble'], [16, 2, 'decoder']] as const) {
    const without = await assertGreedyPpdMatches(model, budget, V, attention, 12);
    const withLookup = await assertGreedyPpdMatches(model, budget, V, attention, 12, 6);
    assert.ok(withLookup > without + 0.05, `budget ${budget}: ${withLookup.toFixed(2)} tokens/step with lookup, ${without.toFixed(2)} without`);
  }
});

test('greedy PPD with a static n-gram table of the model\'s own generations equals greedy decoding, and the table adds accepted tokens', async () => {
  const table = await ownTable(model, 40, 77, 40);
  for (const [budget, V, attention] of [[1, 1, 'ensemble'], [8, 1, 'ensemble'], [16, 2, 'decoder']] as const) {
    const without = await assertGreedyPpdMatches(model, budget, V, attention, 8);
    const withTable = await assertGreedyPpdMatches(model, budget, V, attention, 8, 0, table);
    assert.ok(withTable > without + 0.05, `budget ${budget}: ${withTable.toFixed(2)} tokens/step with the table, ${without.toFixed(2)} without`);
    await assertGreedyPpdMatches(model, budget, V, attention, 4, 6, table); // beside the context lookup
  }
});

test('driven call by call under a row budget, as a batching scheduler would, greedy PPD still equals greedy decoding', async () => {
  // Budgets cycle through 1 (the root alone), 2, 3 (small trees, a short lookup chain) and no limit.
  const adapter = PromptAdapter.initialise(config, table(), [5, 6, 7], { promptTokens: 3, virtualTokens: 1, attention: 'ensemble', initText: 't' });
  const trees = buildTreeSet(ACC, { budget: 12, promptTokens: 3, virtualTokens: 1, attention: 'ensemble' });
  const rng = new Rng(5);
  const budgets = [1, 2, 3, Infinity];
  let steps = 0;
  let produced = 0;
  for (let p = 0; p < 8; p++) {
    const prompt = Array.from({ length: 2 + Math.floor(rng.next() * 10) }, () => Math.floor(rng.next() * 40));
    const plain = await take(autoregressive(model, prompt, new Sampler({ temperature: 0 })), 30);
    const sampler = new Sampler({ temperature: 0 });
    const cache = newCache(model);
    const decoder = new PpdDecoder(model, { adapter, trees, sampler, lookup: 4 }, cache);
    let chunk = decoder.planPrefill(prompt, 0);
    let first = decoder.keepPrefill(prompt, chunk, await forwardRows(model, cache, chunk.rows));
    for (; !first; first = decoder.keepPrefill(prompt, chunk, await forwardRows(model, cache, chunk.rows))) chunk = decoder.planPrefill(prompt, chunk.end);
    const out = [sampler.sample(first.logits)];
    let guesses = first.guesses;
    while (out.length < 30) {
      const budget = budgets[steps % budgets.length]!;
      const proposal = decoder.propose(out.at(-1)!, guesses, budget);
      const rows = decoder.buildInput(proposal);
      assert.ok(rows.positionOffsets.length <= budget, `${rows.positionOffsets.length} rows over a budget of ${budget}`);
      const forward = await forwardRows(model, cache, rows);
      const step = decoder.keep(proposal, decoder.verify(proposal, forward.logits), forward);
      out.push(...step.tokens);
      guesses = step.guesses;
      steps++;
      produced += step.tokens.length;
    }
    assert.deepEqual(out.slice(0, 30), plain, `prompt ${prompt.join(',')}`);
  }
  assert.ok(produced / steps > 1.05, `mean tokens per step ${produced / steps}`);
  assert.throws(() => new PpdDecoder(model, { adapter, trees, sampler: new Sampler({ temperature: 0 }) }).propose(1, [], 0), /at least one row/);
});

test('greedy PPD equals greedy decoding with 4-bit weights and int8 products (rows are quantized one by one)', async () => {
  const quantized = await loadLlamaModel(config, memorySource(config, weights), { cacheDir: false, threads: 1, quantize: 'q4' });
  try {
    await assertGreedyPpdMatches(quantized, 16, 1, 'ensemble', 10);
  } finally {
    await quantized.release();
  }
});

let root: string;
let loaded: LoadedModel;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'ppd-decode-'));
  writeByteModel(root, { ...BYTE_MODEL_SHAPE, max_position_embeddings: 96 }, 4);
  loaded = await loadModel(root, { cacheDir: false, threads: 1 });
});

after(async () => {
  await loaded.model.release();
  await model.release();
  rmSync(root, { recursive: true, force: true });
});

test('through Generation, greedy PPD stops exactly like plain decoding at EOS, stop strings and limits', async () => {
  const adapter = PromptAdapter.initialise(loaded.config, (ids) => loaded.model.embed(ids), [70, 80], { promptTokens: 3, virtualTokens: 1, attention: 'ensemble', initText: 't' });
  const trees = buildTreeSet(ACC, { budget: 12, promptTokens: 3, virtualTokens: 1 });
  const tokenizer = loaded.tokenizer!;
  const rng = new Rng(9);
  for (let p = 0; p < 20; p++) {
    const ids = tokenizer.encode(`prompt ${p} ${'ab'.repeat(1 + (p % 5))}`);
    const reference = await new Generation(autoregressive(loaded.model, ids, new Sampler({ temperature: 0 })), tokenizer, ids.length, { maxTokens: 40, contextLength: 96, eosIds: [2] }).complete();
    // Stop on a token the reference produces mid-run, on a piece of its text, or on the limit.
    const limits = [
      { maxTokens: 40, contextLength: 96, eosIds: [reference.ids[Math.floor(rng.next() * reference.ids.length)]!] },
      { maxTokens: 40, contextLength: 96, eosIds: [2], stop: [reference.text.slice(5, 7) || 'zz'] },
      { maxTokens: 1 + Math.floor(rng.next() * 20), contextLength: 96, eosIds: [2] },
    ];
    for (const limit of limits) {
      const plain = await new Generation(autoregressive(loaded.model, ids, new Sampler({ temperature: 0 })), tokenizer, ids.length, limit).complete();
      for (const lookup of [0, 5]) {
        const ppd = await new Generation(ppdDecode(loaded.model, ids, { adapter, trees, lookup, sampler: new Sampler({ temperature: 0 }) }), tokenizer, ids.length, limit).complete();
        assert.deepEqual(ppd.ids, plain.ids, `lookup ${lookup}`);
        assert.equal(ppd.text, plain.text);
        assert.equal(ppd.stats.finishReason, plain.stats.finishReason);
      }
    }
  }
});

test('coupled verification: sampled PPD emits exactly plain sampling\'s tokens for the same seed (trees, lookup, top-k/top-p), accepting guesses', async () => {
  // The exactness of the distribution follows: plain sampling draws token i from the model's
  // distribution with the i-th number of the seed's stream; coupled PPD emits the same tokens.
  const adapter = PromptAdapter.initialise(config, table(), [5, 6, 7], { promptTokens: 3, virtualTokens: 1, attention: 'ensemble', initText: 't' });
  const trees = buildTreeSet(ACC, { budget: 12, promptTokens: 3, virtualTokens: 1, attention: 'ensemble' });
  const rng = new Rng(17);
  let steps = 0;
  let produced = 0;
  for (const [p, sampling] of [{ temperature: 1 }, { temperature: 0.7 }, { temperature: 1, topK: 5 }, { temperature: 1.2, topP: 0.8 }].flatMap((s) => [0, 1, 2].map((p) => [p, s] as const))) {
    const prompt = Array.from({ length: 2 + Math.floor(rng.next() * 8) }, () => Math.floor(rng.next() * 40));
    const seed = 1000 + p;
    const plain = await take(autoregressive(model, prompt, new Sampler({ ...sampling, seed })), 30);
    for (const lookup of [0, 4]) {
      const onStep = (n: number) => ((steps += 1), (produced += n));
      const ppd = await take(ppdDecode(model, prompt, { adapter, trees, lookup, sampler: new Sampler({ ...sampling, seed }), verification: 'coupled', onStep }), 30);
      assert.deepEqual(ppd, plain, `prompt ${prompt.join(',')}, ${JSON.stringify(sampling)}, lookup ${lookup}`);
    }
  }
  assert.ok(produced / steps > 1.05, `mean tokens per step ${produced / steps}: guesses must be accepted`);
});

test('sampled PPD keeps the model distribution: first two tokens match exact enumeration', async () => {
  const small = tinyConfig({ vocabSize: 5, hiddenSize: 8, numHeads: 2, numKvHeads: 1, headDim: 4, intermediateSize: 16 });
  const w = randomWeights(small, 77);
  const m = await loadLlamaModel(small, memorySource(small, w), { cacheDir: false, threads: 1 });
  const adapter = PromptAdapter.initialise(small, w.get('model.embed_tokens.weight')!, [1, 2, 3], { promptTokens: 2, virtualTokens: 1, attention: 'ensemble', initText: 't' });
  const trees = buildTreeSet([[0.4, 0.3, 0.2], [0.3, 0.3, 0.2]], { budget: 8, promptTokens: 2, virtualTokens: 1 });
  const sampling = { temperature: 1, topK: 0, topP: 1, seed: 0 };
  const prompt = [1, 3, 0];

  // Exact: p(a) p(b | a) from the model's own logits.
  const cache = newCache(m);
  const first = toProbabilities(await prefill(m, prompt, cache), sampling);
  const exact: number[] = [];
  for (let a = 0; a < 5; a++) {
    const out = await m.forward({ embeds: m.embed([...prompt, a]), positions: [0, 1, 2, 3], mask: causalMask(4, 0), cache: newCache(m) });
    const second = toProbabilities(out.logits.subarray(3 * 5, 4 * 5), sampling);
    for (let b = 0; b < 5; b++) exact.push(first[a]! * second[b]!);
  }

  const runs = 3000;
  // Without and with a drafted chain: by context lookup (the prompt's tokens recur in a 5-token
  // vocabulary, so the chain is proposed at every step and sits beside the tree's guesses), and
  // by a static n-gram table of the model's greedy text alone.
  const table = await ownTable(m, 30, 5, 5);
  for (const [lookup, ngram] of [[0, undefined], [3, undefined], [0, table]] as const) {
    const counts = new Array<number>(25).fill(0);
    const sampler = new Sampler({ ...sampling, seed: 12345 });
    let stepsAccepting = 0; // first tree steps that accepted at least one guess
    const drafts = { steps: 0, accepted: 0 }; // steps whose chain came from the table, and its tokens accepted
    const onDraft = (d: DraftOutcome) => d.source === 'ngram' && ((drafts.steps += 1), (drafts.accepted += d.accepted));
    for (let r = 0; r < runs; r++) {
      const produced: number[] = [];
      const onStep = (n: number) => produced.push(n);
      const [a, b] = await take(ppdDecode(m, prompt, { adapter, trees, sampler, lookup, ngram: ngram && { table: ngram, tokens: 3 }, verification: 'rejection', onStep, onDraft }), 2);
      counts[a! * 5 + b!]!++;
      if (produced[1]! > 1) stepsAccepting++;
    }
    // The verifier must really accept guesses (a verifier that rejects everything would also
    // sample the model's distribution, through its bonus tokens alone): with 5 tokens and top-3
    // guesses, a good share of first steps accept one.
    assert.ok(stepsAccepting > runs / 10, `lookup ${lookup}: ${stepsAccepting} of ${runs} first steps accepted a guess`);
    // With the table: its chain is really drafted and verified (and sometimes accepted).
    if (ngram) assert.ok(drafts.steps > runs / 4 && drafts.accepted > runs / 20, `table chains: ${drafts.steps} steps, ${drafts.accepted} tokens accepted`);
    // Chi-square over cells with enough expected mass (rare cells pooled into one).
    const { chi, cells } = chiSquare(counts, exact, runs);
    // Fixed seed, so the statistic is one fixed number; 3x the degrees of freedom is far beyond
    // chance for a right sampler (p < 1e-6 for df >= 10) and far below what a biased one gives.
    assert.ok(chi < 3 * (cells - 1), `lookup ${lookup}${ngram ? ', n-gram table' : ''}: chi-square ${chi.toFixed(1)} over ${cells} cells`);
  }
  await m.release();
});
