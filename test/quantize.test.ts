/**
 * Block-quantized linear weights (format/quantize.ts, MatMulNBits in llama-graph.ts):
 * - the Q8_0/Q4_0 rules on hand-computed blocks, the MatMulNBits packing, partial blocks;
 * - the layout: a quantized forward with f32 products equals the naive f32 forward over the
 *   dequantized weights, for 8 and 4 bits, partial and whole blocks, tied and untied heads;
 * - blocks a source stores are used as stored (readF32 is never asked for them), except in the
 *   prompt-training graph, which is differentiated and reads them as f32;
 * - the int8 products (the default) stay close to the f32 model, with bounds derived below;
 * - quantize (and the product kind) are part of the compile cache key.
 */
import { loadLlamaModel } from '../src/checkpoint/load.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BlockQuantized, TensorSource } from '../src/format/tensor-source.ts';
import type { LlamaConfig } from '../src/model/config.ts';
import { KVCache } from '../src/model/kv-cache.ts';
import { inferenceGraph, type QuantizedMatmul, type QuantizeOptions } from '../src/model/llama-graph.ts';
import { memorySink } from '../src/graph/builder.ts';
import { causalMask, LlamaModel, type ForwardOutput } from '../src/model/llama-model.ts';
import { dequantize, quantize, type QuantizeMode } from '../src/format/quantize.ts';
import { EMBED_TOKENS, expectedTensors, LM_HEAD } from '../src/model/weights.ts';
import { buildPromptGraph } from '../src/train/prompt-graph.ts';
import { compileGraph } from '../src/runtime/compile.ts';
import { causalMask as naiveCausalMask, embedTokens, naiveForward, type NaiveOutput } from './reference/naive-llama.ts';
import { assertClose, maxAbsDiff, memorySource, randomWeights, range, tinyConfig } from './helpers/tiny-model.ts';

// ---------------------------------------------------------------------------------------------
// The rules, by hand

/** A block of 32 values: `head` then zeros. */
const block = (head: number[]) => Float32Array.from({ length: 32 }, (_, i) => head[i] ?? 0);

test('q8: d = absmax / 127, q = round half away from zero, stored q + 128', () => {
  // absmax 7.9375 = 127/16, so d = 1/16 exactly and x/d = 16x.
  const m = quantize(block([7.9375, -7.9375, 0.03125, -0.03125, 0.1, -0.09375, 0]), 1, 32, 'q8');
  assert.equal(m.bits, 8);
  assert.equal(m.blockSize, 32);
  assert.deepEqual(Array.from(m.scales), [0.0625]);
  // 16x = 127, -127, 0.5 -> 1, -0.5 -> -1 (Math.round would give 0), 1.6 -> 2, -1.5 -> -2, 0
  assert.deepEqual(Array.from(m.data.subarray(0, 7)), [255, 1, 129, 127, 130, 126, 128]);
  assert.deepEqual(Array.from(dequantize(m).subarray(0, 7)), [7.9375, -7.9375, 0.0625, -0.0625, 0.125, -0.125, 0]);
});

test('q4: d = (signed max) / -8, q = min(15, floor(x/d + 8.5)), two per byte, low nibble first', () => {
  // Largest magnitude -2: d = 0.25, x/d = 4x.
  const neg = quantize(block([-2, 1, 0.25, 0.3, 1.75, 1.9]), 1, 32, 'q4');
  assert.deepEqual(Array.from(neg.scales), [0.25]);
  // codes: -8+8.5 -> 0, 4+8.5 -> 12, 1+8.5 -> 9, 1.2+8.5 -> 9, 7+8.5 -> 15, 7.6+8.5 -> 16 -> 15, zeros -> 8
  const codes = [0, 12, 9, 9, 15, 15, 8, 8];
  assert.deepEqual(Array.from(neg.data.subarray(0, 4)), [0 | (12 << 4), 9 | (9 << 4), 15 | (15 << 4), 8 | (8 << 4)]);
  assert.equal(neg.data.length, 16);
  assert.deepEqual(Array.from(dequantize(neg).subarray(0, 8)), codes.map((q) => 0.25 * (q - 8)));
  // Largest magnitude +2: d = -0.25; the maximum is exact, the other side stops at 7|d|.
  const pos = quantize(block([2, -1.75, -1.9, 0.5]), 1, 32, 'q4');
  assert.deepEqual(Array.from(pos.scales), [-0.25]);
  assert.deepEqual(Array.from(dequantize(pos).subarray(0, 4)), [2, -1.75, -1.75, 0.5]);
});

test('rows and blocks: [rows, blocks, bytes] order, a partial last block padded with the zero point', () => {
  const cols = 40; // one block of 32, one of 8 values padded to 32
  // Row r, column j: (j % 5 - 2) times 1 in the first block and 2 + r in the partial one.
  const w = Float32Array.from({ length: 2 * cols }, (_, i) => ((i % cols) % 5 - 2) * (i % cols < 32 ? 1 : 2 + Math.floor(i / cols)));
  for (const mode of ['q8', 'q4'] as const) {
    const m = quantize(w, 2, cols, mode);
    const bytes = mode === 'q8' ? 32 : 16;
    assert.equal(m.data.length, 2 * 2 * bytes);
    // Scales [row, block]: the partial block's scale comes from its own 8 values (absmax 6 in row 1).
    const absmax = [2, 4, 2, 6];
    assert.deepEqual(Array.from(m.scales, Math.abs), absmax.map((a) => Math.fround(a / (mode === 'q8' ? 127 : 8))));
    // Row 1, block 1 holds w[1, 32..39]; its padding reads as value 0.
    const padding = m.data.subarray(3 * bytes + (mode === 'q8' ? 8 : 4), 4 * bytes);
    assert.ok(padding.every((b) => b === (mode === 'q8' ? 128 : 0x88)), `${mode} padding`);
    assert.equal(dequantize(m).length, w.length);
  }
});

test('an all-zero block has scale 0 and dequantizes to zeros', () => {
  for (const mode of ['q8', 'q4'] as const) {
    const m = quantize(new Float32Array(64), 2, 32, mode);
    assert.ok(m.scales.every((s) => s === 0));
    assert.ok(dequantize(m).every((v) => v === 0));
  }
});

test('round-trip error: at most d/2 per value for q8; at most |d| for q4 (the clamped side)', () => {
  const rows = 8;
  const cols = 96;
  const w = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 12.9898) * 43758.5453 % 1);
  for (const mode of ['q8', 'q4'] as const) {
    const m = quantize(w, rows, cols, mode);
    const back = dequantize(m);
    for (let i = 0; i < w.length; i++) {
      const d = Math.abs(m.scales[Math.floor(i / cols) * 3 + Math.floor((i % cols) / 32)]!);
      const bound = mode === 'q8' ? d / 2 : d;
      assert.ok(Math.abs(back[i]! - w[i]!) <= bound * (1 + 1e-6), `${mode} [${i}]: ${w[i]} -> ${back[i]}`);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// The graph

const IDS = [3, 17, 8, 29, 1, 39, 12];
const newCache = (c: LlamaConfig) => new KVCache(c.numLayers, c.numKvHeads, c.headDim, 2);
/** Hidden 64, MLP 96, 2 x 32 head dims: every row a whole number of blocks. */
const ALIGNED: Partial<LlamaConfig> = { hiddenSize: 64, intermediateSize: 96, numHeads: 2, numKvHeads: 1, headDim: 32 };

/** Names of the weights the graph multiplies by: the layers' linears and the LM head. */
function linearNames(c: LlamaConfig): string[] {
  const head = c.tieWordEmbeddings ? EMBED_TOKENS : LM_HEAD;
  return [...expectedTensors(c)].filter(([name, shape]) => shape.length === 2 && (name !== EMBED_TOKENS || name === head)).map(([name]) => name);
}

/** The mode the graph quantizes a weight to: the LM head keeps 8 bits under q4. */
const modeOf = (c: LlamaConfig, name: string, mode: QuantizeMode): QuantizeMode =>
  mode === 'q4' && name === (c.tieWordEmbeddings ? EMBED_TOKENS : LM_HEAD) ? 'q8' : mode;

/** The weights with every linear replaced by its quantized form. */
function quantizedWeights(c: LlamaConfig, weights: Map<string, Float32Array>, mode: QuantizeMode): Map<string, BlockQuantized> {
  const shapes = expectedTensors(c);
  return new Map(linearNames(c).map((name) => {
    const [rows, cols] = shapes.get(name)!;
    return [name, quantize(weights.get(name)!, rows!, cols!, modeOf(c, name, mode))];
  }));
}

/** Prefill of IDS, then one more row after them with the cache: the many-row and one-row kernels. */
async function run(model: LlamaModel, c: LlamaConfig, weights: Map<string, Float32Array>): Promise<ForwardOutput[]> {
  const prefix = IDS.slice(0, -1);
  const first = await model.forward({ embeds: embedTokens(c, weights, prefix), positions: range(0, prefix.length), mask: causalMask(prefix.length, 0), cache: newCache(c) });
  const cache = newCache(c);
  cache.append(first.keys, first.values);
  const step = await model.forward({ embeds: embedTokens(c, weights, IDS.slice(-1)), positions: [prefix.length], mask: causalMask(1, prefix.length), cache });
  return [first, step];
}

/** The naive f32 forward of IDS over `weights`, with embedding rows from `embedFrom`: its last row, and the rest. */
function naive(c: LlamaConfig, weights: Map<string, Float32Array>, embedFrom: Map<string, Float32Array>): Float32Array[] {
  const out: NaiveOutput = naiveForward(c, weights, { embeds: embedTokens(c, embedFrom, IDS), positions: range(0, IDS.length), mask: naiveCausalMask(IDS.length, 0) });
  const V = c.vocabSize;
  return [out.logits.subarray(0, (IDS.length - 1) * V), out.logits.subarray((IDS.length - 1) * V)];
}

async function loadQuantized(c: LlamaConfig, weights: Map<string, Float32Array>, mode: QuantizeMode, matmul: QuantizedMatmul): Promise<LlamaModel> {
  return loadLlamaModel(c, memorySource(c, weights), { cacheDir: false, threads: 1, quantize: mode, matmul });
}

for (const [label, overrides] of [
  ['partial blocks (rows of 16 and 24)', {}],
  ['whole blocks, tied head', { ...ALIGNED, tieWordEmbeddings: true }],
] as [string, Partial<LlamaConfig>][]) {
  for (const mode of ['q8', 'q4'] as const) {
    test(`${mode}, ${label}: f32 products equal the naive forward over the dequantized weights`, async () => {
      const c = tinyConfig(overrides);
      const weights = randomWeights(c, 5);
      const dequantized = new Map(weights);
      for (const [name, m] of quantizedWeights(c, weights, mode)) dequantized.set(name, dequantize(m));
      const model = await loadQuantized(c, weights, mode, 'f32');
      // Embedding rows stay f32 (LlamaModel.embed reads the table as is, tied or not).
      const expected = naive(c, dequantized, weights);
      const got = await run(model, c, weights);
      assertClose(got[0]!.logits, expected[0]!, 2e-4, 'prefill logits');
      assertClose(got[1]!.logits, expected[1]!, 2e-4, 'step logits');
      // And the quantization did something: the f32 model's logits are farther away.
      assert.ok(maxAbsDiff(naive(c, weights, weights)[0]!, expected[0]!) > 1e-3);
      await model.release();
    });
  }
}

test('blocks a source stores are used as stored, never read as f32 and never re-quantized', async () => {
  const c = tinyConfig(ALIGNED);
  const weights = randomWeights(c, 6);
  const stored = quantizedWeights(c, weights, 'q4'); // 4-bit everywhere but the head
  const dequantized = new Map(weights);
  for (const [name, m] of stored) dequantized.set(name, dequantize(m));
  const f32Reads: string[] = [];
  const plain = memorySource(c, weights);
  const source: TensorSource = {
    ...plain,
    readF32: (name) => (f32Reads.push(name), plain.readF32(name)),
    readBlockQuantized: (name) => stored.get(name),
  };
  // Asked for q8, the stored 4-bit blocks still win: re-quantizing them would only add error.
  const model = await loadLlamaModel(c, source, { cacheDir: false, threads: 1, quantize: 'q8', matmul: 'f32' });
  assert.deepEqual(f32Reads.filter((name) => stored.has(name)), []);
  const got = await run(model, c, weights);
  const expected = naive(c, dequantized, weights);
  assertClose(got[0]!.logits, expected[0]!, 2e-4, 'prefill logits');
  assertClose(got[1]!.logits, expected[1]!, 2e-4, 'step logits');
  await model.release();
});

test('the prompt-training graph (differentiated) reads stored blocks as f32: no MatMulNBits in it', () => {
  const c = tinyConfig(ALIGNED);
  const weights = randomWeights(c, 6);
  const stored = quantizedWeights(c, weights, 'q8');
  const source: TensorSource = { ...memorySource(c, weights), readBlockQuantized: (name) => stored.get(name) };
  const bytes = buildPromptGraph(c, source, { promptTokens: 2, virtualTokens: 1, sequenceLength: 8, cuts: 3, topK: 3, head: 'residual' }, memorySink('model.onnx.data'));
  assert.ok(!Buffer.from(bytes).includes('MatMulNBits'));
});

/** ||a - b|| / ||b|| */
function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

/*
 * Bounds for the default (int8 products) against the f32 model, as the relative RMS error of
 * the logits. Rounding a weight to a block grid of step d adds an error of RMS d/sqrt(12): with
 * d = absmax/127 (q8) that is ~0.4 % of the RMS of uniform weights (absmax/sqrt(3)), with
 * d = absmax/8 (q4) ~6 %. Rounding the activations to int8 per block adds ~0.4-0.7 % per product
 * (RMS-normed rows have absmax ~2.5-3x their RMS). Three products in sequence per layer, two
 * layers and the head, and a random network that amplifies perturbations, multiply that by a few:
 * measured 2.1-2.4 % (q8) and 14-19 % (q4, mostly the 4-bit weights) on this seed. Bounds of 5 %
 * and 30 % hold that with room and still fail on a wrong layout (errors near 100 %).
 */
for (const [mode, bound] of [['q8', 0.05], ['q4', 0.3]] as const) {
  test(`${mode} with int8 products stays within ${bound * 100} % (relative RMS) of the f32 logits`, async () => {
    const c = tinyConfig(ALIGNED);
    const weights = randomWeights(c, 7);
    const f32 = await loadLlamaModel(c, memorySource(c, weights), { cacheDir: false, threads: 1 });
    const quantized = await loadQuantized(c, weights, mode, 'int8');
    const exact = await loadQuantized(c, weights, mode, 'f32');
    const [want, got, gotExact] = [await run(f32, c, weights), await run(quantized, c, weights), await run(exact, c, weights)];
    for (const row of [0, 1]) {
      const error = relativeError(got[row]!.logits, want[row]!.logits);
      assert.ok(error < bound, `${mode} ${row ? 'step' : 'prefill'}: relative error ${error.toFixed(4)}`);
      // The int8 activations alone (same weights, f32 products): measured 1.5-2.6 %.
      const activations = relativeError(got[row]!.logits, gotExact[row]!.logits);
      assert.ok(activations < 0.05, `${mode} ${row ? 'step' : 'prefill'}: int8 activations cost ${activations.toFixed(4)}`);
    }
    for (const m of [f32, quantized, exact]) await m.release();
  });
}

test('quantize and the product kind are part of the compile cache key', () => {
  const c = tinyConfig();
  const source = memorySource(c, randomWeights(c, 8), 'cache-key-test');
  const dir = mkdtempSync(join(tmpdir(), 'ppd-quant-cache-'));
  try {
    const paths = [{}, { quantize: 'q8' }, { quantize: 'q4' }, { quantize: 'q8', matmul: 'f32' }].map(
      (o) => compileGraph(inferenceGraph(c, source, o as QuantizeOptions), { cacheDir: dir }).path,
    );
    assert.equal(new Set(paths).size, paths.length, paths.join('\n'));
    assert.equal(compileGraph(inferenceGraph(c, source, { quantize: 'q4' }), { cacheDir: dir }).path, paths[2], 'the same options reuse the compiled graph');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
