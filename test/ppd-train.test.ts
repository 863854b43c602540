/**
 * Prompt-token training on a tiny random model: teacher sequences are a text prefix and the
 * model's own greedy continuation with its distributions; the prompt graph's student logits for
 * every cut equal the inference forward of the prompt rows after that cut's prefix; a prompt head
 * adds its residual per prompt token; gradients (embeddings and head) match finite differences;
 * training lowers the held-out KL while the base weights stay byte-identical; the accuracy table
 * is well formed; adapters (with or without a head) round-trip and refuse the wrong base model.
 */
import { loadLlamaModel } from '../src/checkpoint/load.ts';
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../src/errors.ts';
import { autoregressive, newCache, prefill } from '../src/decode/autoregressive.ts';
import { ppdDecode } from '../src/ppd/decode.ts';
import { buildTreeSet, priorAccuracyTable } from '../src/ppd/tree-builder.ts';
import { take } from './helpers/decoding.ts';
import { causalMask, LlamaModel } from '../src/model/llama-model.ts';
import { argmax, Sampler } from '../src/sampling/sampler.ts';
import { PromptAdapter } from '../src/ppd/adapter.ts';
import { loadAdapter, saveAdapter, savePeftAdapter } from '../src/ppd/adapter-files.ts';
import { buildTeacherSequences, sequenceTokens, teacherIds, type TeacherSequences } from '../src/train/distill.ts';
import { promptVisibility, type AttentionVariant } from '../src/ppd/prompt-mask.ts';
import { accuracyTable, heldOutKl, promptGraphShape, PromptSession, trainPrompts } from '../src/train/train-prompts.ts';
import { PROMPT_HEAD_BIAS, PROMPT_HEAD_KINDS, PROMPT_HEAD_PARENT_WEIGHT, PROMPT_HEAD_WEIGHT, promptHeadFeeds, type PromptHeadKind } from '../src/model/prompt-head.ts';
import { Rng } from '../src/sampling/rng.ts';
import { maxAbsDiff, memorySource, randomWeights, tinyConfig } from './helpers/tiny-model.ts';

const EOS = 1;
const config = tinyConfig({ vocabSize: 24, numLayers: 2, tieWordEmbeddings: true, eosTokenIds: [EOS] });
const weights = randomWeights(config, 21);
const adapterShape = { promptTokens: 3, virtualTokens: 2 };
const teacher = { prefixLength: 5, generated: 9, topK: 6 };
let model: LlamaModel;
let trainSet: TeacherSequences;
let validSet: TeacherSequences;
const sessions = new Map<string, PromptSession>();

// A stream with structure (a noisy cycle) and documents ending in EOS.
const rng = new Rng(5);
const stream = Array.from({ length: 400 }, (_, i) => (i % 97 === 96 ? EOS : rng.next() < 0.15 ? 2 + Math.floor(rng.next() * 22) : 2 + ((i * 7) % 22)));

const fingerprint = () => createHash('sha256').update(JSON.stringify([...weights].map(([n, w]) => [n, Array.from(w)]))).digest('hex');

before(async () => {
  model = await loadLlamaModel(config, memorySource(config, weights), { cacheDir: false, threads: 1 });
  trainSet = await buildTeacherSequences(model, stream.slice(0, 300), { count: 24, ...teacher, seed: 1, eosIds: [EOS] });
  validSet = await buildTeacherSequences(model, stream.slice(300), { count: 8, ...teacher, seed: 2, eosIds: [EOS] });
});

async function sessionFor(attention: AttentionVariant, head?: PromptHeadKind): Promise<PromptSession> {
  const key = `${attention} ${head}`;
  let session = sessions.get(key);
  if (!session) {
    const shape = promptGraphShape(trainSet, { ...adapterShape, head });
    session = await PromptSession.create(model, memorySource(config, weights), trainSet, shape, attention, { cacheDir: false, threads: 1 });
    sessions.set(key, session);
  }
  return session;
}

const freshAdapter = (attention: AttentionVariant = 'ensemble', head?: PromptHeadKind) =>
  PromptAdapter.initialise(config, weights.get('model.embed_tokens.weight')!, [3, 9, 12, 4], { ...adapterShape, attention, initText: 'test', head });

/** The student logits of cut j of sequence m by the inference model: the prefix cached, the prompt rows after it, averaged per prompt token. */
async function inferenceStudent(adapter: PromptAdapter, set: TeacherSequences, m: number, j: number): Promise<Float32Array> {
  const { promptTokens: N, virtualTokens: Vt, attention } = adapter.config;
  const R = N * Vt;
  const L = set.prefixLength + j;
  const cache = newCache(model);
  await prefill(model, Array.from(sequenceTokens(set, m).subarray(0, L)), cache);
  const visibility = promptVisibility(N, Vt, attention);
  const mask = new Uint8Array(R * (L + R));
  for (let a = 0; a < R; a++) for (let b = 0; b < L + R; b++) mask[a * (L + R) + b] = b < L || visibility[a * R + b - L] ? 1 : 0;
  const out = await model.forward({ embeds: adapter.embeddings, positions: Array.from({ length: R }, (_, r) => L + Math.floor(r / Vt)), mask, cache });
  const V = config.vocabSize;
  const averaged = new Float32Array(N * V);
  for (let r = 0; r < R; r++) for (let t = 0; t < V; t++) averaged[Math.floor(r / Vt) * V + t]! += out.logits[r * V + t]! / Vt;
  return averaged;
}

test('teacher sequences: a text prefix within one document, then the model\'s greedy continuation with its distributions', async () => {
  const { prefixLength: L0, generated: G } = teacher;
  for (let m = 0; m < trainSet.count; m++) {
    const tokens = Array.from(sequenceTokens(trainSet, m));
    assert.ok(!tokens.includes(EOS), `sequence ${m} holds no end of document`);
    const prefix = tokens.slice(0, L0);
    assert.ok(stream.some((_, s) => prefix.every((id, t) => stream[s + t] === id)), `sequence ${m}: the prefix is a run of the text`);
    const out = await model.forward({ embeds: model.embed(tokens), positions: tokens.map((_, i) => i), mask: causalMask(tokens.length, 0), cache: newCache(model) });
    const V = config.vocabSize;
    for (let t = L0 - 1; t < L0 + G - 1; t++) assert.equal(tokens[t + 1], argmax(out.logits.subarray(t * V, (t + 1) * V)), `sequence ${m}, token ${t + 1} is greedy`);
    for (let r = 0; r < G - 1; r++) assert.equal(teacherIds(trainSet, m, r)[0], tokens[L0 + r + 1], `sequence ${m}: teacher row ${r}'s top id is the next token`);
  }
  await assert.rejects(buildTeacherSequences(model, [2, 3, EOS, 4, 5, EOS, 6, EOS], { count: 1, ...teacher, seed: 1, eosIds: [EOS] }), InputError);
});

test('the prompt graph computes the inference forward of each cut\'s prompt rows after its prefix', async () => {
  for (const attention of ['ensemble', 'decoder', 'encoder'] as const) {
    const adapter = freshAdapter(attention);
    const session = await sessionFor(attention);
    const student = await session.studentLogits(adapter.parameters(), trainSet, 2);
    const V = config.vocabSize;
    const N = adapterShape.promptTokens;
    for (let j = 0; j < session.cuts; j++) {
      const expected = await inferenceStudent(adapter, trainSet, 2, j);
      const diff = maxAbsDiff(student.subarray(j * N * V, (j + 1) * N * V), expected);
      assert.ok(diff < 1e-4, `${attention}, cut ${j}: ${diff}`);
    }
  }
});

test('a prompt head adds SiLU(h W_i + b_i) to prompt token i\'s hidden state: a zero head is the identity, a bias shifts logits by the table', async () => {
  const session = await sessionFor('ensemble', 'residual');
  const adapter = freshAdapter('ensemble', 'residual');
  const plain = await (await sessionFor('ensemble')).studentLogits(adapter.parameters(), trainSet, 1);
  assert.ok(maxAbsDiff(await session.studentLogits(adapter.parameters(), trainSet, 1), plain) < 1e-5, 'zero head');
  // W = 0, b_i = beta_i: h' = h + SiLU(beta_i), so logits move by SiLU(beta_i) · table row (tied head).
  const C = config.hiddenSize;
  const V = config.vocabSize;
  const N = adapterShape.promptTokens;
  const bias = adapter.head!.bias;
  const betaRng = new Rng(11);
  for (let i = 0; i < bias.length; i++) bias[i] = betaRng.next() - 0.5;
  const shifted = await session.studentLogits(adapter.parameters(), trainSet, 1);
  const table = weights.get('model.embed_tokens.weight')!;
  const silu = (x: number) => x / (1 + Math.exp(-x));
  for (let row = 0; row < session.cuts * N; row++) {
    const i = row % N;
    for (let t = 0; t < V; t++) {
      let shift = 0;
      for (let c = 0; c < C; c++) shift += silu(bias[i * C + c]!) * table[t * C + c]!;
      assert.ok(Math.abs(shifted[row * V + t]! - plain[row * V + t]! - shift) < 1e-4, `row ${row}, token ${t}`);
    }
  }
});

for (const head of PROMPT_HEAD_KINDS) test(`gradients of the embeddings and of a ${head} prompt head match finite differences`, async () => {
  const session = await sessionFor('ensemble', head);
  const adapter = freshAdapter('ensemble', head);
  const fill = new Rng(13);
  for (const p of adapter.parameters().values()) if (p !== adapter.embeddings) for (let i = 0; i < p.length; i++) p[i] = 0.3 * (fill.next() - 0.5);
  const params = adapter.parameters();
  const base = await session.run(params, trainSet, 3);
  const dirRng = new Rng(8);
  for (const name of params.keys()) {
    const p = params.get(name)!;
    const direction = Float32Array.from(p, () => dirRng.next() - 0.5);
    const analytic = base.grads.get(name)!.reduce((sum, g, i) => sum + g * direction[i]!, 0);
    const eps = 1e-2;
    const at = async (t: number) => (await session.run(new Map([...params].map(([n, q]) => [n, n === name ? Float32Array.from(q, (x, i) => x + t * direction[i]!) : q])), trainSet, 3)).kl;
    const numeric = ((await at(eps)) - (await at(-eps))) / (2 * eps);
    assert.ok(Math.abs(analytic - numeric) <= 2e-2 * Math.max(Math.abs(numeric), 1e-3), `${name}: analytic ${analytic} vs numeric ${numeric}`);
  }
});

for (const head of [undefined, ...PROMPT_HEAD_KINDS]) {
  test(`training${head ? ` with a ${head} prompt head` : ''} lowers the held-out KL and leaves the base weights byte-identical`, async () => {
    const before = fingerprint();
    const adapter = freshAdapter('ensemble', head);
    const session = await sessionFor('ensemble', head);
    const params = adapter.parameters();
    const initial = await heldOutKl(session, params, validSet);
    const history = await trainPrompts(session, params, trainSet, { set: validSet, limit: validSet.count }, { steps: 40, batch: 2, schedule: { peakLr: 5e-2, warmupSteps: 4, minLrRatio: 0.1 }, seed: 3, evalEvery: 40 });
    const final = history.at(-1)!.validKl!;
    // A tiny random model has little structure to generalise: a 10% drop on unseen sequences is
    // well beyond noise here (untrained or wrong-signed gradients raise it instead).
    assert.ok(final < 0.9 * initial, `held-out KL ${initial} -> ${final}`);
    assert.equal(fingerprint(), before);
    if (head) assert.ok(adapter.head!.weight.some((w) => w !== 0), 'the head was trained');
    if (head === 'residual-parent') assert.ok(adapter.head!.parentWeight!.some((w) => w !== 0), 'the parent weight was trained');

    const acc = await accuracyTable(session, params, validSet, 5);
    assert.equal(acc.cuts, validSet.count * session.cuts);
    assert.equal(acc.table.length, 3);
    for (const row of acc.table) {
      assert.equal(row.length, 5);
      assert.ok(row.every((a) => a >= 0 && a <= 1));
      assert.ok(row.reduce((a, b) => a + b, 0) <= 1 + 1e-9);
    }
    acc.top1StandardError.forEach((se, i) => assert.ok(Math.abs(se - Math.sqrt((acc.table[i]![0]! * (1 - acc.table[i]![0]!)) / acc.cuts)) < 1e-12));
  });
}

test('adapters round-trip, with or without a head, and refuse another base model', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ppd-adapter-'));
  try {
    for (const head of [undefined, ...PROMPT_HEAD_KINDS]) {
      const adapter = freshAdapter('ensemble', head);
      if (adapter.head) adapter.head.weight.fill(0.25);
      adapter.head?.parentWeight?.fill(-0.5);
      saveAdapter(adapter, join(dir, String(head)));
      const loaded = loadAdapter(join(dir, String(head)), config);
      assert.deepEqual(loaded.embeddings, adapter.embeddings);
      assert.deepEqual(loaded.head, adapter.head);
      assert.equal(loaded.config.head, head);
      const names = { residual: [PROMPT_HEAD_WEIGHT, PROMPT_HEAD_BIAS], 'residual-parent': [PROMPT_HEAD_WEIGHT, PROMPT_HEAD_BIAS, PROMPT_HEAD_PARENT_WEIGHT] };
      assert.deepEqual([...loaded.parameters().keys()], ['prompt_embeddings', ...(head ? names[head] : [])]);
      assert.equal(loaded.config.attention, 'ensemble');
      assert.ok(adapter.parameterShare(config).share > 0);
    }
    assert.throws(() => savePeftAdapter(freshAdapter('ensemble', 'residual'), join(dir, 'peft'), config, 'base'), /prompt head, which the reference implementation's PEFT prompt-tuning format cannot hold/);
    assert.throws(() => loadAdapter(join(dir, 'undefined'), tinyConfig({ vocabSize: 24, numLayers: 3 })), /trained for another base model/);
    assert.throws(() => loadAdapter(join(dir, 'missing'), config), /no adapter_config\.json: not an adapter folder/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

for (const head of PROMPT_HEAD_KINDS) test(`the inference graph's ${head} prompt head computes what the training graph trained`, async () => {
  const N = adapterShape.promptTokens;
  const headed = await loadLlamaModel(config, memorySource(config, weights), { cacheDir: false, threads: 1, promptHead: N });
  try {
    const adapter = freshAdapter('ensemble', head);
    const fill = new Rng(17);
    for (const p of adapter.parameters().values()) if (p !== adapter.embeddings) for (let i = 0; i < p.length; i++) p[i] = 0.4 * (fill.next() - 0.5);
    const session = await sessionFor('ensemble', head);
    const student = await session.studentLogits(adapter.parameters(), trainSet, 0);
    const { virtualTokens: Vt, attention } = adapter.config;
    const R = N * Vt;
    const C = config.hiddenSize;
    const V = config.vocabSize;
    const feeds = promptHeadFeeds(adapter.head!.weight, adapter.head!.bias, N, C, adapter.head!.parentWeight);
    for (const j of [0, 2, session.cuts - 1]) {
      // As decoding runs it: the prefix's last token in the forward (row 0), the prompt rows after it, their parent.
      const L = trainSet.prefixLength + j;
      const tokens = Array.from(sequenceTokens(trainSet, 0).subarray(0, L));
      const cache = newCache(headed);
      await prefill(headed, tokens.slice(0, -1), cache);
      const visibility = promptVisibility(N, Vt, attention);
      const T = 1 + R;
      const mask = new Uint8Array(T * (L - 1 + T)).fill(1, 0, L);
      for (let a = 0; a < R; a++) for (let b = 0; b < L - 1 + T; b++) mask[(1 + a) * (L - 1 + T) + b] = b < L || visibility[a * R + b - L] ? 1 : 0;
      const embeds = new Float32Array(T * C);
      embeds.set(headed.embed([tokens.at(-1)!]));
      embeds.set(adapter.embeddings, C);
      const rows = Int8Array.from({ length: T }, (_, r) => (r === 0 ? -1 : Math.floor((r - 1) / Vt)));
      const parents = Int32Array.from({ length: T }, (_, r) => (r === 0 ? -1 : 0));
      const positions = Array.from({ length: T }, (_, r) => (r === 0 ? L - 1 : L + Math.floor((r - 1) / Vt)));
      const out = await headed.forward({ embeds, positions, mask, cache, promptHead: { feeds, rows, parents } });
      const averaged = new Float32Array(N * V);
      for (let r = 0; r < R; r++) for (let t = 0; t < V; t++) averaged[Math.floor(r / Vt) * V + t]! += out.logits[(1 + r) * V + t]! / Vt;
      const diff = maxAbsDiff(student.subarray(j * N * V, (j + 1) * N * V), averaged);
      assert.ok(diff < 1e-4, `cut ${j}: ${diff}`);
    }
    // Rows that are no prompt token's are untouched: the headed model's plain forward equals the model's.
    const ids = Array.from(sequenceTokens(trainSet, 1));
    const plain = await model.forward({ embeds: model.embed(ids), positions: ids.map((_, i) => i), mask: causalMask(ids.length, 0), cache: newCache(model) });
    const viaHead = await headed.forward({ embeds: headed.embed(ids), positions: ids.map((_, i) => i), mask: causalMask(ids.length, 0), cache: newCache(headed) });
    assert.deepEqual(viaHead.logits, plain.logits);
    await assert.rejects(model.forward({ embeds: adapter.embeddings.subarray(0, C), positions: [0], mask: new Uint8Array([1]), cache: newCache(model), promptHead: { feeds, rows: [0], parents: [0] } }), /opened without a prompt head/);
    await assert.rejects(headed.forward({ embeds: adapter.embeddings.subarray(0, C), positions: [0], mask: new Uint8Array([1]), cache: newCache(headed), promptHead: { feeds, rows: [0], parents: [1] } }), /prompt row 0's parent is row 1, not one of the 1 rows/);
  } finally {
    await headed.release();
  }
});

test('greedy PPD with a prompt-head adapter equals greedy plain decoding, and a model opened without the head refuses it', async () => {
  const N = adapterShape.promptTokens;
  const headed = await loadLlamaModel(config, memorySource(config, weights), { cacheDir: false, threads: 1, promptHead: N });
  try {
    const adapter = freshAdapter('ensemble', 'residual-parent');
    const fill = new Rng(19);
    for (const p of [adapter.head!.weight, adapter.head!.bias, adapter.head!.parentWeight!]) for (let i = 0; i < p.length; i++) p[i] = 0.4 * (fill.next() - 0.5);
    const trees = buildTreeSet(priorAccuracyTable(N), { budget: 12, promptTokens: N, virtualTokens: adapterShape.virtualTokens, attention: 'ensemble' });
    for (const prompt of [stream.slice(0, 4), stream.slice(40, 61)]) {
      const plain = await take(autoregressive(model, prompt, new Sampler({ temperature: 0 })), 24);
      const ppd = await take(ppdDecode(headed, prompt, { adapter, trees, lookup: 4, sampler: new Sampler({ temperature: 0 }) }), 24);
      assert.deepEqual(ppd, plain, `prompt ${prompt.join(',')}`);
    }
    await assert.rejects(ppdDecode(model, stream.slice(0, 4), { adapter, trees, sampler: new Sampler({ temperature: 0 }) }).next(), /prompt head for 3 prompt tokens, and the model was opened without one/);
  } finally {
    await headed.release();
  }
});
