/**
 * Continuous batching, layer by layer, on tiny random models:
 * - the paged store (model/kv-pages.ts): pages handed out lowest first, rows where the sequence
 *   put them, truncation and release giving pages back, growth keeping every row;
 * - one batched forward (decode/batch.ts) over a prompt chunk, a plain step and a tree step of
 *   three sequences equals each run alone, and the kept rows continue each sequence exactly;
 *   with an adapter's prompt head, its rows are merged row for row (plans with and without);
 * - the row budget (generate/row-budget.ts): whole trees while the forward's latency is flat,
 *   one row each when it is steep, smaller trees per sequence as sequences are added;
 * - the scheduler (generate/scheduler.ts): concurrent generations, plain and PPD, short prompts
 *   and prompts longer than a prefill chunk, joining at different times, give exactly the greedy
 *   text each gives alone (also with a prompt-head adapter), and seeded sampling the same text alone, batched, with PPD or without;
 *   a generation that stops early leaves and gives its pages back; a failing forward (or a step
 *   that cannot be planned) fails the generations in it and the next ones run.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadLlamaModel, loadModel, type LoadedModel } from '../src/checkpoint/load.ts';
import { forwardBatch } from '../src/decode/batch.ts';
import { LatencyCurve } from '../src/decode/latency.ts';
import { forwardRows, prefillChunk, type RowsPlan } from '../src/decode/rows.ts';
import type { GenerationResult } from '../src/generate/generate.ts';
import { generationFromIds, promptIds } from '../src/generate/request.ts';
import { allocateRows } from '../src/generate/row-budget.ts';
import { BatchScheduler, type ForwardStep } from '../src/generate/scheduler.ts';
import { KVCache } from '../src/model/kv-cache.ts';
import { KVPages, PAGE_ROWS } from '../src/model/kv-pages.ts';
import { promptHeadFeeds } from '../src/model/prompt-head.ts';
import { Rng } from '../src/sampling/rng.ts';
import { argmax } from '../src/sampling/sampler.ts';
import { PromptAdapter } from '../src/ppd/adapter.ts';
import type { PpdSetup } from '../src/ppd/setup.ts';
import { assertClose, maxAbsDiff, memorySource, randomWeights, tinyConfig } from './helpers/tiny-model.ts';
import { TEST_LATENCY, tinyPpdSetup, writeTinyModel } from './helpers/tiny-server.ts';

const TOL = 2e-4;

describe('paged store', () => {
  const rowSize = 2 * 3; // K = 2, D = 3
  /** One forward's worth of keys/values for `n` rows: row r of layer l holds the value base + r + l/10 everywhere. */
  const rows = (n: number, base: number) => {
    const make = (l: number, sign: number) => Float32Array.from({ length: n * rowSize }, (_, i) => sign * (base + Math.floor(i / rowSize) + l / 10));
    return { keys: [make(0, 1), make(1, 1)], values: [make(0, -1), make(1, -1)] };
  };

  test('sequences take pages lowest first, keep their rows in order, and give pages back', () => {
    const store = new KVPages(2, 2, 3, 2);
    const a = store.sequence();
    const b = store.sequence();
    const reference = new KVCache(2, 2, 3);
    const ra = rows(PAGE_ROWS + 3, 100);
    a.append(ra.keys, ra.values);
    reference.append(ra.keys, ra.values);
    const rb = rows(5, 500);
    b.append(rb.keys, rb.values, [4, 0, 2]);
    assert.deepEqual([...a.storeRows()].slice(0, 2), [0, 1]);
    assert.equal(a.storeRows()[PAGE_ROWS], PAGE_ROWS); // a's second page is page 1
    assert.equal(b.storeRows()[0], 2 * PAGE_ROWS); // b's first page is page 2
    assert.equal(store.length, 3 * PAGE_ROWS);
    // The store grew (2 pages at first) without losing a row; each sequence reads back what it put.
    assert.ok(store.pages >= 3);
    for (const layer of [0, 1]) {
      assert.deepEqual(a.pastKeys(layer), reference.pastKeys(layer));
      assert.deepEqual(a.pastValues(layer), reference.pastValues(layer));
      assert.deepEqual([...b.pastKeys(layer)].filter((_, i) => i % rowSize === 0), [504, 500, 502].map((v) => Math.fround(v + layer / 10)));
    }
    // The store's past is every page up to the last in use, rows where storeRows says.
    const past = store.pastKeys(1);
    b.storeRows().forEach((row, i) => assert.equal(past[row * rowSize], b.pastKeys(1)[i * rowSize]));

    a.truncate(PAGE_ROWS - 1); // gives page 1 back
    assert.equal(a.length, PAGE_ROWS - 1);
    const c = store.sequence();
    const rc = rows(1, 900);
    c.append(rc.keys, rc.values);
    assert.equal(c.storeRows()[0], PAGE_ROWS); // the freed page is the lowest free one
    b.release();
    c.release();
    assert.equal(store.length, PAGE_ROWS); // only a's first page is in use
    a.release();
    assert.equal(store.length, 0);
    assert.throws(() => a.append(ra.keys, ra.values), /after release/);
  });
});

describe('one forward for several sequences', () => {
  const config = tinyConfig({ vocabSize: 40 });
  let model: Awaited<ReturnType<typeof loadLlamaModel>>;
  before(async () => {
    model = await loadLlamaModel(config, memorySource(config, randomWeights(config, 5)), { cacheDir: false, threads: 1 });
  });
  after(() => model.release());

  test('a prompt chunk, a plain step and a tree step in one forward equal each run alone; kept rows continue each sequence', async () => {
    const V = config.vocabSize;
    const store = new KVPages(config.numLayers, config.numKvHeads, config.headDim, 1);
    const prompts = [[3, 9, 1, 22, 7], [5, 5, 30, 12, 2, 8, 19], [11, 4]];
    // Sequences 1 and 2 hold their prompts already (prefilled alone, then copied into pages);
    // sequence 0 is new: its prompt is this step's chunk.
    const seqs = prompts.map(() => store.sequence());
    const alone = prompts.map(() => new KVCache(config.numLayers, config.numKvHeads, config.headDim));
    for (const s of [1, 2]) {
      const chunk = prefillChunk(model, prompts[s]!, 0);
      const out = await forwardRows(model, alone[s]!, chunk.rows);
      alone[s]!.append(out.keys, out.values);
      seqs[s]!.append(out.keys, out.values);
    }
    const plans: RowsPlan[] = [
      prefillChunk(model, prompts[0]!, 0).rows,
      { embeds: model.embed([17]), positionOffsets: Int32Array.of(0), block: Uint8Array.of(1) },
      // Two branches of two tokens: rows (a0, a1, b0, b1) at offsets (0, 1, 0, 1).
      { embeds: model.embed([6, 7, 8, 9]), positionOffsets: Int32Array.of(0, 1, 0, 1), block: Uint8Array.of(1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1) },
    ];
    const batched = await forwardBatch(model, store, plans.map((plan, s) => ({ plan, past: seqs[s]!.storeRows() })));
    for (const [s, plan] of plans.entries()) {
      const ref = await forwardRows(model, alone[s]!, plan);
      assertClose(batched[s]!.logits, ref.logits, TOL, `sequence ${s} logits`);
      for (let r = 0; r < plan.positionOffsets.length; r++) {
        assert.equal(argmax(batched[s]!.logits.subarray(r * V, (r + 1) * V)), argmax(ref.logits.subarray(r * V, (r + 1) * V)), `sequence ${s} row ${r}`);
      }
      for (let l = 0; l < config.numLayers; l++) assertClose(batched[s]!.keys[l]!, ref.keys[l]!, TOL, `sequence ${s} keys ${l}`);
    }
    // Keep: all of sequence 0's prompt, the plain row, branch b of the tree; then one more step each.
    const keep = [undefined, undefined, [2, 3]];
    batched.forEach((out, s) => seqs[s]!.append(out.keys, out.values, keep[s]));
    const refs = await Promise.all(
      prompts.map(async (_, s) => {
        const ref = await forwardRows(model, alone[s]!, plans[s]!);
        alone[s]!.append(ref.keys, ref.values, keep[s]);
        return forwardRows(model, alone[s]!, { embeds: model.embed([13]), positionOffsets: Int32Array.of(0), block: Uint8Array.of(1) });
      }),
    );
    const next = await forwardBatch(model, store, seqs.map((seq) => ({ plan: { embeds: model.embed([13]), positionOffsets: Int32Array.of(0), block: Uint8Array.of(1) }, past: seq.storeRows() })));
    next.forEach((out, s) => assertClose(out.logits, refs[s]!.logits, TOL, `sequence ${s}, next step`));
  });
});

describe('one forward for several sequences, with a prompt head', () => {
  const config = tinyConfig({ vocabSize: 40 });
  const N = 2;
  let headed: Awaited<ReturnType<typeof loadLlamaModel>>;
  before(async () => {
    headed = await loadLlamaModel(config, memorySource(config, randomWeights(config, 5)), { cacheDir: false, threads: 1, promptHead: N });
  });
  after(() => headed.release());

  test('the plans\' prompt-head rows and parents are merged row for row (-1 for plans without one): each sequence gets what it gets alone', async () => {
    const C = config.hiddenSize;
    const rng = new Rng(3);
    const random = (n: number) => Float32Array.from({ length: n }, () => rng.next() - 0.5);
    // A head that reads the parent row too: a parent left at its plan's own index would read another sequence's row.
    const feeds = promptHeadFeeds(random(N * C * C), random(N * C), N, C, random(N * C * C));
    const store = new KVPages(config.numLayers, config.numKvHeads, config.headDim, 1);
    const prompts = [[3, 9, 1], [5, 5, 30, 12], [11, 4, 8, 2, 7]];
    const seqs = prompts.map(() => store.sequence());
    const alone = prompts.map(() => new KVCache(config.numLayers, config.numKvHeads, config.headDim));
    for (const [s, ids] of prompts.entries()) {
      const out = await forwardRows(headed, alone[s]!, prefillChunk(headed, ids, 0).rows);
      alone[s]!.append(out.keys, out.values);
      seqs[s]!.append(out.keys, out.values);
    }
    // A token row that sees two prompt rows' worth of random embeddings: rows (token, prompt 0, prompt 1).
    const headPlan = (token: number, rows: number[]): RowsPlan => {
      const embeds = new Float32Array(3 * C);
      embeds.set(headed.embed([token]), 0);
      embeds.set(random(2 * C), C);
      return { embeds, positionOffsets: Int32Array.of(0, 1, 2), block: Uint8Array.of(1, 0, 0, 1, 1, 0, 1, 0, 1), promptHead: { feeds, rows, parents: [-1, 0, 0] } };
    };
    const plans: RowsPlan[] = [headPlan(6, [-1, 0, 1]), { embeds: headed.embed([17]), positionOffsets: Int32Array.of(0), block: Uint8Array.of(1) }, headPlan(9, [-1, 1, 0])];
    const batched = await forwardBatch(headed, store, plans.map((plan, s) => ({ plan, past: seqs[s]!.storeRows() })));
    for (const [s, plan] of plans.entries()) {
      const ref = await forwardRows(headed, alone[s]!, plan);
      assertClose(batched[s]!.logits, ref.logits, TOL, `sequence ${s} logits`);
      if (plan.promptHead) {
        // The head moves the prompt rows' logits: dropping it in the merge would be seen.
        const { promptHead: _, ...without } = plan;
        const bare = await forwardRows(headed, alone[s]!, without);
        assert.ok(maxAbsDiff(bare.logits, ref.logits) > 100 * TOL, `sequence ${s}: the head changes its prompt rows`);
      }
    }
    const other = { ...plans[2]!, promptHead: { feeds: promptHeadFeeds(random(N * C * C), random(N * C), N, C), rows: [-1, 0, 1], parents: [-1, 0, 0] } };
    await assert.rejects(forwardBatch(headed, store, [plans[0]!, other].map((plan, s) => ({ plan, past: seqs[s]!.storeRows() }))), /different prompt heads/);
  });
});

describe('row budget', () => {
  // A tree whose rows buy expected tokens at a falling rate, and a plain sequence.
  const tree = [
    { rows: 1, expectedTokens: 1 },
    { rows: 4, expectedTokens: 1.6 },
    { rows: 8, expectedTokens: 1.9 },
    { rows: 16, expectedTokens: 2.1 },
  ];

  test('flat latency: whole trees; steep latency: one row each; never past maxRows', () => {
    const flat = new LatencyCurve([{ rows: 1, ms: 1 }, { rows: 256, ms: 1.01 }]);
    const steep = new LatencyCurve([{ rows: 1, ms: 1 }, { rows: 2, ms: 2 }, { rows: 256, ms: 256 }]);
    assert.deepEqual(allocateRows([tree, tree], flat), [16, 16]);
    assert.deepEqual(allocateRows([tree, tree, [{ rows: 1, expectedTokens: 1 }]], steep), [1, 1, 1]);
    assert.deepEqual(allocateRows([tree, tree], flat, 0, 20), [8, 8]); // 3.8 expected tokens; 16 + 4 rows would give 3.7
    // Rows already taken by prefill count against the budget.
    assert.deepEqual(allocateRows([tree], flat, 250, 256), [4]);
  });

  test('as sequences are added, each one\'s tree shrinks, down to plain decoding', () => {
    // L(n) shaped like a small model on a CPU: flat to 4 rows, then about linear.
    const latency = new LatencyCurve([{ rows: 1, ms: 2 }, { rows: 4, ms: 2.2 }, { rows: 8, ms: 3.4 }, { rows: 16, ms: 5.5 }, { rows: 64, ms: 16 }, { rows: 256, ms: 70 }]);
    const perSequence = [1, 2, 4, 8, 16].map((B) => Math.max(...allocateRows(Array.from({ length: B }, () => tree), latency)));
    for (let i = 1; i < perSequence.length; i++) assert.ok(perSequence[i]! <= perSequence[i - 1]!, `rows per sequence ${perSequence.join(', ')}`);
    assert.ok(perSequence[0]! > 1, `one sequence gets a tree: ${perSequence.join(', ')}`);
    assert.equal(perSequence.at(-1), 1, `sixteen decode plainly: ${perSequence.join(', ')}`);
  });

  test('options below the hull are skipped: rows that buy less than cheaper ones never come first', () => {
    const flatish = new LatencyCurve([{ rows: 1, ms: 1 }, { rows: 8, ms: 1.05 }, { rows: 64, ms: 8 }]);
    const bumpy = [
      { rows: 1, expectedTokens: 1 },
      { rows: 2, expectedTokens: 1.05 }, // below the line from 1 to 3 rows
      { rows: 3, expectedTokens: 1.9 },
    ];
    assert.deepEqual(allocateRows([bumpy], flatish), [3]);
  });
});

describe('scheduler', () => {
  let root: string;
  let loaded: LoadedModel;
  let ppd: PpdSetup;
  const steps: ForwardStep[] = [];
  let batch: BatchScheduler;
  // A made-up latency curve: batching pays, trees shrink as the batch grows.
  const latency = TEST_LATENCY;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'ppd-batch-'));
    loaded = await loadModel(writeTinyModel(join(root, 'tiny')), { cacheDir: false, threads: 1 });
    ppd = { ...tinyPpdSetup(loaded), lookup: 4 };
    batch = new BatchScheduler(loaded.model, { latency, maxRows: 64, onForward: (s) => steps.push(s) });
  });
  after(async () => {
    await loaded.model.release();
    rmSync(root, { recursive: true, force: true });
  });

  // Prompts of the byte tokenizer: the long ones need several prefill chunks beside the others.
  const PROMPTS = ['The cat sat', 'Hello there, how are you today?', 'abab abab abab abab', 'z'.repeat(150), 'Once upon a time', `A list: ${'one two three, '.repeat(6)}`];
  const generate = (prompt: string, i: number, extra: object) =>
    generationFromIds(loaded, promptIds(loaded, prompt), { maxTokens: 24 + i, ppd: i % 2 === 1 ? ppd : undefined, ...extra }).complete();

  test('concurrent greedy generations, plain and PPD, give exactly the text each gives alone', async () => {
    const alone: GenerationResult[] = [];
    for (const [i, p] of PROMPTS.entries()) alone.push(await generate(p, i, { sampling: { temperature: 0 } }));
    steps.length = 0;
    // Half start together, the rest join while they decode.
    const first = PROMPTS.slice(0, 3).map((p, i) => generate(p, i, { sampling: { temperature: 0 }, batch }));
    await new Promise((resolve) => setTimeout(resolve, 5));
    const later = PROMPTS.slice(3).map((p, i) => generate(p, i + 3, { sampling: { temperature: 0 }, batch }));
    const batched = await Promise.all([...first, ...later]);
    batched.forEach((r, i) => {
      assert.deepEqual(r.ids, alone[i]!.ids, `prompt ${i}`);
      assert.equal(r.stats.finishReason, alone[i]!.stats.finishReason);
    });
    assert.ok(steps.some((s) => s.sequences >= 3), 'forwards were shared');
    assert.ok(steps.some((s) => s.prefillRows > 0 && s.sequences > 1), 'prompts were prefilled beside decoding sequences');
    assert.ok(steps.every((s) => s.rows <= 64 + ppd.adapter.promptTokens), 'no forward past the row limit');
    assert.equal(batch.size, 0, 'every sequence left');
  });

  test('with a prompt-head adapter, concurrent greedy PPD and plain generations give exactly the text each gives alone', async () => {
    const headed = await loadModel(join(root, 'tiny'), { cacheDir: false, threads: 1, promptHead: 3 });
    try {
      const adapter = PromptAdapter.initialise(headed.config, (ids) => headed.model.embed(ids), [70, 80], { promptTokens: 3, virtualTokens: 1, attention: 'ensemble', initText: 't', head: 'residual-parent' });
      const rng = new Rng(9);
      for (const p of [adapter.head!.weight, adapter.head!.bias, adapter.head!.parentWeight!]) for (let i = 0; i < p.length; i++) p[i] = 0.4 * (rng.next() - 0.5);
      const headPpd: PpdSetup = { ...ppd, adapter };
      const headBatch = new BatchScheduler(headed.model, { latency, maxRows: 64 });
      const run = (prompt: string, i: number, inBatch: boolean) =>
        generationFromIds(headed, promptIds(headed, prompt), { maxTokens: 20, ppd: i % 2 === 0 ? headPpd : undefined, sampling: { temperature: 0 }, batch: inBatch ? headBatch : undefined }).complete();
      const alone: GenerationResult[] = [];
      for (const [i, p] of PROMPTS.entries()) alone.push(await run(p, i, false));
      const batched = await Promise.all(PROMPTS.map((p, i) => run(p, i, true)));
      batched.forEach((r, i) => assert.deepEqual(r.ids, alone[i]!.ids, `prompt ${i}`));
    } finally {
      await headed.model.release();
    }
  });

  test('seeded sampling gives the same text alone, batched, with PPD or without', async () => {
    for (const sampling of [{ temperature: 1 }, { temperature: 0.8, topP: 0.9, topK: 20 }]) {
      const seeded = (i: number, usePpd: boolean, batched: boolean) =>
        generationFromIds(loaded, promptIds(loaded, PROMPTS[i]!), { maxTokens: 20, sampling: { ...sampling, seed: 40 + i }, ppd: usePpd ? ppd : undefined, batch: batched ? batch : undefined }).complete();
      const plainAlone = await Promise.all(PROMPTS.map((_, i) => seeded(i, false, false)));
      const ppdAlone = await Promise.all(PROMPTS.map((_, i) => seeded(i, true, false)));
      const mixedBatch = await Promise.all(PROMPTS.map((_, i) => seeded(i, i % 2 === 0, true)));
      PROMPTS.forEach((_, i) => {
        assert.deepEqual(ppdAlone[i]!.ids, plainAlone[i]!.ids, `prompt ${i}: PPD alone vs plain alone`);
        assert.deepEqual(mixedBatch[i]!.ids, plainAlone[i]!.ids, `prompt ${i}: batched vs alone`);
      });
    }
  });

  test('a generation that stops early leaves at the next step and gives its pages back', async () => {
    const controller = new AbortController();
    const long = generationFromIds(loaded, promptIds(loaded, 'Go on and on'), { maxTokens: 200, sampling: { temperature: 0 }, batch, signal: controller.signal });
    const other = generate('Another one', 0, { sampling: { temperature: 0 }, batch });
    let pieces = 0;
    for await (const _ of long) if (++pieces === 5) controller.abort();
    assert.equal(long.result.stats.finishReason, 'aborted');
    await other;
    assert.equal(batch.size, 0);
    assert.equal(batch.storeRows, 0, 'no page stays taken');
  });

  test('a forward that fails fails the generations in it; the next ones run', async () => {
    const forward = loaded.model.forward;
    let calls = 0;
    loaded.model.forward = async function (this: typeof loaded.model, input) {
      if (++calls === 3) throw new Error('kernel exploded');
      return forward.call(this, input);
    };
    try {
      const outcomes = await Promise.allSettled(PROMPTS.slice(0, 3).map((p, i) => generate(p, i, { sampling: { temperature: 0 }, batch })));
      assert.ok(outcomes.some((o) => o.status === 'rejected' && /kernel exploded/.test(String(o.reason))));
    } finally {
      loaded.model.forward = forward;
    }
    const after = await generate(PROMPTS[0]!, 0, { sampling: { temperature: 0 }, batch });
    const alone = await generate(PROMPTS[0]!, 0, { sampling: { temperature: 0 } });
    assert.deepEqual(after.ids, alone.ids);
    assert.equal(batch.size, 0);
  });

  test('a step that cannot be planned fails its generations instead of leaving them waiting; the next ones run', async () => {
    const embed = loaded.model.embed;
    let calls = 0;
    loaded.model.embed = function (this: typeof loaded.model, ids) {
      if (++calls === 4) throw new Error('embedding table gone');
      return embed.call(this, ids);
    };
    try {
      const outcomes = await Promise.allSettled(PROMPTS.slice(0, 2).map((p) => generate(p, 0, { sampling: { temperature: 0 }, batch })));
      assert.ok(outcomes.some((o) => o.status === 'rejected' && /embedding table gone/.test(String(o.reason))));
    } finally {
      loaded.model.embed = embed;
    }
    const after = await generate(PROMPTS[1]!, 1, { sampling: { temperature: 0 }, batch });
    const alone = await generate(PROMPTS[1]!, 1, { sampling: { temperature: 0 } });
    assert.deepEqual(after.ids, alone.ids);
    assert.equal(batch.size, 0);
  });
});
