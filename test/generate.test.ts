/**
 * Text generation on a tiny random model folder: stopping on EOS, stop strings, the token and
 * context limits and an abort signal; seeded sampling reproducibility; F16/BF16 checkpoints
 * against their F32 twin; the chunked prefill with trailing rows (PPD's prompt tokens).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGeneration } from '../src/generate/request.ts';
import { loadModel, type LoadedModel } from '../src/checkpoint/load.ts';
import { causalMask, maskOverCache } from '../src/model/llama-model.ts';
import { newCache, prefill, prefillWith } from '../src/decode/autoregressive.ts';
import { PREFILL_CHUNK } from '../src/decode/rows.ts';
import { writeRandomModel } from '../src/checkpoint/random-init.ts';
import { byteFallbackTokenizerConfig, byteFallbackTokenizerJson } from '../src/tokenizer/byte-tokenizer.ts';
import { BYTE_MODEL_SHAPE } from './helpers/byte-model.ts';
import { maxAbsDiff } from './helpers/tiny-model.ts';

const SHAPE = { ...BYTE_MODEL_SHAPE, max_position_embeddings: 64 }; // a short context, to reach it

let root: string;
let loaded: LoadedModel;

function makeModel(name: string, dtype: 'F32' | 'F16' | 'BF16', shape: object = SHAPE): string {
  const dir = join(root, name);
  writeRandomModel(dir, shape, { seed: 11, dtype, tokenizerJson: byteFallbackTokenizerJson() });
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(byteFallbackTokenizerConfig()));
  return dir;
}

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'ppd-generate-'));
  loaded = await loadModel(makeModel('f32', 'F32'), { cacheDir: false, threads: 1 });
});

after(async () => {
  await loaded.model.release();
  rmSync(root, { recursive: true, force: true });
});

const greedy = (prompt: string, maxTokens: number, extra = {}) =>
  startGeneration(loaded, { prompt, maxTokens, sampling: { temperature: 0 }, ...extra }).complete();

test('the token limit ends generation with finishReason length', async () => {
  const { ids, stats } = await greedy('The cat', 9);
  assert.ok(ids.length <= 9);
  if (ids.length === 9) assert.equal(stats.finishReason, 'length');
  assert.equal(stats.newTokens, ids.length);
  assert.ok(stats.promptTokens > 0 && stats.seconds > 0);
});

test('an EOS id ends generation before it is emitted', async () => {
  const reference = await greedy('Hello there', 10);
  assert.ok(reference.ids.length >= 4, 'needs a few tokens to pick an EOS from');
  const eosId = reference.ids[3]!;
  const firstAt = reference.ids.indexOf(eosId);
  const withEos = await startGeneration({ ...loaded, eosIds: [eosId] }, { prompt: 'Hello there', maxTokens: 10, sampling: { temperature: 0 } }).complete();
  assert.deepEqual(withEos.ids, reference.ids.slice(0, firstAt));
  assert.equal(withEos.stats.finishReason, 'eos');
});

test('a stop string cuts the text before it and is not emitted', async () => {
  const reference = await greedy('abc', 16);
  const text = reference.text;
  assert.ok(text.length >= 4);
  const stop = text.slice(2, 4);
  const stopped = await greedy('abc', 16, { stop: [stop] });
  assert.equal(stopped.text, text.slice(0, text.indexOf(stop)));
  assert.equal(stopped.stats.finishReason, 'stop');
});

test('streamed pieces concatenate to the final text', async () => {
  const generation = startGeneration(loaded, { prompt: 'Stream me', maxTokens: 12 });
  let text = '';
  const ids: number[] = [];
  for await (const piece of generation) {
    text += piece.text;
    ids.push(...piece.ids);
  }
  assert.equal(text, generation.result.text);
  assert.deepEqual(ids, generation.result.ids);
});

test('the context limit ends generation and an over-long prompt is refused', async () => {
  const prompt = 'x'.repeat(50); // about 51 tokens with BOS and the leading-space piece
  const { ids, stats } = await greedy(prompt, 100);
  assert.equal(stats.promptTokens + ids.length, SHAPE.max_position_embeddings);
  assert.equal(stats.finishReason, 'context');
  assert.throws(() => startGeneration(loaded, { prompt: 'y'.repeat(80), maxTokens: 4 }), /the model's context is 64/);
});

test('an abort signal stops generation', async () => {
  const controller = new AbortController();
  const generation = startGeneration(loaded, { prompt: 'Abort', maxTokens: 40, signal: controller.signal });
  let pieces = 0;
  for await (const _ of generation) if (++pieces === 3) controller.abort();
  assert.equal(generation.result.ids.length, 3);
  assert.equal(generation.result.stats.finishReason, 'aborted');
});

test('seeded sampling is reproducible and depends on the seed', async () => {
  const run = (seed: number) =>
    startGeneration(loaded, { prompt: 'Sample', maxTokens: 24, sampling: { temperature: 1.5, seed } }).complete();
  const [a, b, c] = [await run(1), await run(1), await run(2)];
  assert.deepEqual(a.ids, b.ids);
  assert.notDeepEqual(a.ids, c.ids);
});

test('bad generation requests are InputErrors', () => {
  assert.throws(() => startGeneration(loaded, { prompt: '', maxTokens: 4 }), /prompt is empty/);
  assert.throws(() => startGeneration(loaded, { prompt: 'a', maxTokens: 0 }), /max tokens must be a positive integer/);
  assert.throws(() => startGeneration(loaded, { prompt: 'a', maxTokens: 4, sampling: { temperature: -1 } }), /temperature/);
  assert.throws(() => startGeneration(loaded, { prompt: 'a', maxTokens: 4, stop: [''] }), /stop strings/);
});

for (const dtype of ['F16', 'BF16'] as const) {
  test(`a ${dtype} checkpoint loads and matches its F32 twin within ${dtype} rounding`, async () => {
    const half = await loadModel(makeModel(dtype.toLowerCase(), dtype), { cacheDir: false, threads: 1 });
    const ids = [1, 70, 80, 90, 100];
    const logits = async (m: LoadedModel) =>
      (await m.model.forward({ embeds: m.model.embed(ids), positions: [0, 1, 2, 3, 4], mask: causalMask(5, 0), cache: newCache(m.model) })).logits;
    const [full, reduced] = [await logits(loaded), await logits(half)];
    const diff = maxAbsDiff(full, reduced);
    // Weights ~N(0, 0.02) rounded to 11 (F16) or 8 (BF16) mantissa bits: small but non-zero drift.
    assert.ok(diff > 0 && diff < (dtype === 'F16' ? 1e-3 : 2e-2), `max logit difference ${diff}`);
    await half.model.release();
  });
}

test('prefill with trailing rows: the prompt logits and cache are plain prefill\'s; the trailing rows match a forward of them over that cache', async () => {
  const { model } = loaded;
  const ids = Array.from({ length: PREFILL_CHUNK + 5 }, (_, i) => 3 + ((i * 7) % 250)); // two slices
  const plainCache = newCache(model);
  const plain = await prefill(model, ids, plainCache);
  // Three trailing rows at offsets 0, 0, 1: rows 0 and 1 see themselves, row 2 sees all three.
  const trailing = { embeds: model.embed([40, 41, 42]), positionOffsets: [0, 0, 1], visibility: Uint8Array.from([1, 0, 0, 0, 1, 0, 1, 1, 1]) };
  const cache = newCache(model);
  const withRows = await prefillWith(model, ids, cache, trailing);
  assert.ok(maxAbsDiff(withRows.logits, plain) < 1e-4);
  assert.equal(cache.length, ids.length);
  assert.ok(maxAbsDiff(cache.pastKeys(1), plainCache.pastKeys(1)) < 1e-4);
  const P = ids.length;
  const alone = await model.forward({ embeds: trailing.embeds, positions: [P, P, P + 1], mask: maskOverCache(trailing.visibility, 3, P), cache: plainCache });
  assert.ok(maxAbsDiff(withRows.trailingLogits, alone.logits) < 1e-4);
  assert.equal(withRows.trailingLogits.length, 3 * model.config.vocabSize);
});
