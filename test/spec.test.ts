/**
 * Speculative decoding (src/spec/) on tiny random models against plain decoding of the target:
 * - greedy SD emits exactly the target's greedy tokens, for many prompts, with a different
 *   draft (acceptance low, rollbacks constant) and with the draft decoding through PPD;
 * - a draft identical to the target has every drafted token accepted (and the draft length
 *   grows to its bound);
 * - the drafters keep their cache consistent: after arbitrary rollbacks and catch-ups each
 *   proposal is exactly the draft's own greedy continuation computed from scratch;
 * - speculative sampling preserves the target's distribution: one verification step against
 *   the exact distribution, and the first three tokens of whole runs (plain and PPD drafts)
 *   against exact enumeration of the target (chi-square, fixed seeds).
 * The vocabulary check and the CLI are in spec-cli.test.ts.
 */
import { loadLlamaModel } from '../src/checkpoint/load.ts';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { autoregressive, newCache, prefill } from '../src/decode/autoregressive.ts';
import type { LlamaConfig } from '../src/model/config.ts';
import { causalMask, LlamaModel } from '../src/model/llama-model.ts';
import { PromptAdapter } from '../src/ppd/adapter.ts';
import type { PpdSetup } from '../src/ppd/setup.ts';
import { buildTreeSet } from '../src/ppd/tree-builder.ts';
import { Rng } from '../src/sampling/rng.ts';
import { Sampler, sampleFrom, toProbabilities } from '../src/sampling/sampler.ts';
import { DraftLength } from '../src/decode/draft-length.ts';
import { AutoregressiveDrafter, PpdDrafter, type Drafter } from '../src/spec/drafter.ts';
import type { DraftSetup } from '../src/spec/setup.ts';
import { speculativeDecode, type SpeculativeStep } from '../src/spec/speculative.ts';
import { verifySpeculative } from '../src/spec/speculative-sampling.ts';
import { chiSquare, take } from './helpers/decoding.ts';
import { memorySource, randomWeights, tinyConfig } from './helpers/tiny-model.ts';

/** A made-up accuracy table for the draft's trees (random adapters guess poorly anyway). */
const ACC = [0, 1, 2].map((i) => Array.from({ length: 4 }, (_, k) => 0.45 * Math.pow(0.5, k) * Math.pow(0.8, i)));

async function load(c: LlamaConfig, seed: number): Promise<{ model: LlamaModel; embeddings: Float32Array }> {
  const w = randomWeights(c, seed);
  return { model: await loadLlamaModel(c, memorySource(c, w), { cacheDir: false, threads: 1 }), embeddings: w.get('model.embed_tokens.weight')! };
}

function ppdSetup(c: LlamaConfig, embeddings: Float32Array, promptTokens: number, budget: number): PpdSetup {
  const adapter = PromptAdapter.initialise(c, embeddings, [5, 6, 7], { promptTokens, virtualTokens: 1, attention: 'ensemble', initText: 't' });
  const trees = buildTreeSet(ACC.slice(0, promptTokens), { budget, promptTokens, virtualTokens: 1 });
  return { adapter, trees, verification: 'rejection' };
}

// Target: V = 40. Draft: the same vocabulary, a different (smaller) shape and other weights.
const targetConfig = tinyConfig({ vocabSize: 40 });
const draftConfig = tinyConfig({ vocabSize: 40, hiddenSize: 8, numHeads: 2, numKvHeads: 1, headDim: 4, intermediateSize: 16, numLayers: 1 });
let target: LlamaModel;
let draft: LlamaModel;
let draftPpd: PpdSetup;
let targetPpd: PpdSetup;

before(async () => {
  target = (await load(targetConfig, 31)).model;
  const d = await load(draftConfig, 8);
  draft = d.model;
  draftPpd = ppdSetup(draftConfig, d.embeddings, 3, 8);
  targetPpd = ppdSetup(targetConfig, randomWeights(targetConfig, 31).get('model.embed_tokens.weight')!, 3, 8);
});

after(async () => {
  await target.release();
  await draft.release();
});

const randomPrompt = (rng: Rng, V: number) => Array.from({ length: 2 + Math.floor(rng.next() * 10) }, () => Math.floor(rng.next() * V));

for (const [label, withPpd] of [
  ['plain draft', false],
  ['draft decoding with PPD', true],
] as const) {
  test(`greedy SD equals greedy decoding of the target token for token (different draft, ${label})`, async () => {
    const rng = new Rng(withPpd ? 2 : 1);
    let drafted = 0;
    let accepted = 0;
    for (let p = 0; p < 25; p++) {
      const prompt = randomPrompt(rng, 40);
      const plain = await take(autoregressive(target, prompt, new Sampler({ temperature: 0 })), 30);
      const setup: DraftSetup = { dir: 'draft', model: draft, ppd: withPpd ? draftPpd : undefined, draftTokens: 1 + (p % 5) };
      const onStep = (s: SpeculativeStep) => ((drafted += s.drafted), (accepted += s.accepted));
      const sd = await take(speculativeDecode(target, prompt, { draft: setup, sampler: new Sampler({ temperature: 0 }), onStep }), 30);
      assert.deepEqual(sd, plain, `prompt ${prompt.join(',')}`);
    }
    // A different random draft: some tokens accepted, many rejected (rollbacks exercised).
    assert.ok(accepted > 0 && accepted < drafted, `accepted ${accepted} of ${drafted}`);
  });

  test(`a draft identical to the target is always fully accepted (${label})`, async () => {
    const rng = new Rng(withPpd ? 4 : 3);
    for (let p = 0; p < 8; p++) {
      const prompt = randomPrompt(rng, 40);
      const steps: SpeculativeStep[] = [];
      const setup: DraftSetup = { dir: 'target', model: target, ppd: withPpd ? targetPpd : undefined, draftTokens: 4 };
      const sd = await take(speculativeDecode(target, prompt, { draft: setup, sampler: new Sampler({ temperature: 0 }), onStep: (s) => steps.push(s) }), 40);
      const plain = await take(autoregressive(target, prompt, new Sampler({ temperature: 0 })), 40);
      assert.deepEqual(sd, plain);
      for (const s of steps.slice(1)) assert.equal(s.accepted, s.drafted, `prompt ${prompt.join(',')}: step accepted ${s.accepted} of ${s.drafted}`);
      // 40 tokens: 1 from the prompt's forward, then 5 per step (4 drafted + the bonus).
      assert.equal(steps.length, 1 + Math.ceil(39 / 5));
    }
  });
}

test('drafters stay consistent across rollbacks: each proposal is the draft greedy continuation from scratch', async () => {
  const rng = new Rng(11);
  for (const make of [() => new AutoregressiveDrafter(draft, new Sampler({ temperature: 0 })), () => new PpdDrafter(draft, draftPpd, new Sampler({ temperature: 0 }))]) {
    const drafter: Drafter = make();
    const sequence = randomPrompt(rng, 40);
    for (let round = 0; round < 15; round++) {
      const k = 1 + Math.floor(rng.next() * 5);
      const proposal = await drafter.propose(sequence, k);
      const expected = await take(autoregressive(draft, sequence, new Sampler({ temperature: 0 })), k);
      assert.deepEqual(proposal.tokens, expected, `round ${round}, k ${k}`);
      assert.equal(proposal.probs, undefined);
      // The target keeps a random prefix of the proposal and adds a token of its own.
      const kept = Math.floor(rng.next() * (k + 1));
      sequence.push(...proposal.tokens.slice(0, kept), Math.floor(rng.next() * 40));
    }
  }
});

test('draft length: grows after full acceptance, shrinks after an early rejection, stays in 1..K', () => {
  const length = new DraftLength(4);
  assert.equal(length.current, 4);
  length.update(4, 4);
  assert.equal(length.current, 4);
  length.update(0, 4);
  assert.equal(length.current, 3);
  length.update(2, 3); // rejected at the last drafted token: unchanged
  assert.equal(length.current, 3);
  for (let i = 0; i < 5; i++) length.update(0, length.current);
  assert.equal(length.current, 1);
  length.update(1, 1);
  assert.equal(length.current, 2);
  assert.throws(() => new DraftLength(0), /draft tokens must be an integer >= 1/);
});

// Fixed seeds, so each statistic is one fixed number. The bar, df + 4·sqrt(2·df), is the
// normal approximation's p ≈ 3e-5 point of chi-square(df) (the real tail is somewhat heavier
// for small df): beyond chance for a right sampler, and low enough to catch a draft
// distribution attached to the wrong token (that gives about 2·df in the three-token test).
const assertChi = ({ chi, cells }: { chi: number; cells: number }) => {
  const df = cells - 1;
  assert.ok(chi < df + 4 * Math.sqrt(2 * df), `chi-square ${chi.toFixed(1)} over ${cells} cells (df ${df})`);
};

test('one speculative sampling step emits tokens distributed as the target p, for sampled and one-hot drafts', () => {
  const p = [0.05, 0.3, 0.1, 0.25, 0.2, 0.1];
  const logits = Float32Array.from(p, Math.log);
  const sampling = { temperature: 1, topK: 0, topP: 1, seed: 0 };
  const target = toProbabilities(logits, sampling);
  for (const q of [
    [0.4, 0.05, 0.3, 0.05, 0.1, 0.1], // far from p: many rejections
    [0, 0, 0, 1, 0, 0], // a deterministic proposal
  ]) {
    const draftProbs = Float32Array.from(q);
    const rng = new Rng(99);
    const runs = 20000;
    const counts = new Array<number>(6).fill(0);
    for (let r = 0; r < runs; r++) {
      const x = sampleFrom(draftProbs, rng);
      const verdict = verifySpeculative([x], [draftProbs], () => logits, sampling, rng);
      // k = 1: the emitted first token is x if accepted, else the residual draw.
      counts[verdict.acceptedNodes.length === 2 ? x : verdict.bonusToken]!++;
    }
    assertChi(chiSquare(counts, Array.from(target), runs));
  }
});

test('speculative sampling keeps the target distribution: first three tokens match exact enumeration', async () => {
  const V = 5;
  const small = tinyConfig({ vocabSize: V, hiddenSize: 8, numHeads: 2, numKvHeads: 1, headDim: 4, intermediateSize: 16 });
  const smallDraft = tinyConfig({ vocabSize: V, hiddenSize: 8, numHeads: 2, numKvHeads: 1, headDim: 4, intermediateSize: 12, numLayers: 1 });
  const t = await load(small, 77);
  const d = await load(smallDraft, 5);
  const sampling = { temperature: 1, topK: 0, topP: 1, seed: 0 };
  const prompt = [1, 3, 0];

  // Exact: p(a) p(b | a) p(c | a, b) from the target's own logits, one uncached forward per (a, b).
  const first = toProbabilities(await prefill(t.model, prompt, newCache(t.model)), sampling);
  const exact: number[] = [];
  for (let a = 0; a < V; a++) {
    for (let b = 0; b < V; b++) {
      const ids = [...prompt, a, b];
      const out = await t.model.forward({ embeds: t.model.embed(ids), positions: ids.map((_, i) => i), mask: causalMask(ids.length, 0), cache: newCache(t.model) });
      const second = toProbabilities(out.logits.subarray(3 * V, 4 * V), sampling);
      const third = toProbabilities(out.logits.subarray(4 * V, 5 * V), sampling);
      for (let c = 0; c < V; c++) exact.push(first[a]! * second[b]! * third[c]!);
    }
  }

  const runs = 2500;
  for (const ppd of [undefined, ppdSetup(smallDraft, d.embeddings, 2, 12)]) {
    // K = 2 (3 with PPD): the first step drafts tokens 2.. (with PPD: the catch-up forward gives
    // one, a PPD step the others; its tree holds most of the 5 tokens, so guesses often pass).
    const setup: DraftSetup = { dir: 'draft', model: d.model, ppd, draftTokens: ppd ? 3 : 2 };
    const counts = new Array<number>(V ** 3).fill(0);
    const sampler = new Sampler({ ...sampling, seed: ppd ? 54321 : 12345 });
    let drafted = 0;
    let accepted = 0;
    for (let r = 0; r < runs; r++) {
      const onStep = (s: SpeculativeStep) => ((drafted += s.drafted), (accepted += s.accepted));
      const [a, b, c] = await take(speculativeDecode(t.model, prompt, { draft: setup, sampler, onStep }), 3);
      counts[(a! * V + b!) * V + c!]!++;
    }
    assert.ok(accepted > 0 && accepted < drafted, `accepted ${accepted} of ${drafted}`);
    assertChi(chiSquare(counts, exact, runs));
  }
  await t.model.release();
  await d.model.release();
});
