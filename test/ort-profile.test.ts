/**
 * ONNX Runtime's profile summed (src/report/ort-profile.ts): the grouping rule on a made-up
 * trace, and a real profile of a tiny model's forwards, whose groups must account for every
 * kernel ORT ran.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadLlamaModel } from '../src/checkpoint/load.ts';
import { causalMask } from '../src/model/llama-model.ts';
import { KVCache } from '../src/model/kv-cache.ts';
import { opAndShapes, sumKernels, type TraceEvent } from '../src/report/ort-profile.ts';
import { memorySource, randomWeights, tinyConfig } from './helpers/tiny-model.ts';

const run = (ts: number, dur: number): TraceEvent => ({ cat: 'Session', name: 'model_run', ts, dur });
const kernel = (ts: number, dur: number, op: string, shapes: number[][] = []): TraceEvent => ({
  cat: 'Node',
  name: `${op}_${ts}_kernel_time`,
  ts,
  dur,
  args: { op_name: op, input_type_shape: shapes.map((s) => ({ float: s })) },
});

test('sumKernels: warm-up runs left out, kernels outside runs ignored, per-run means by key, shares of the kernel time', () => {
  const events = [
    run(0, 100), kernel(10, 50, 'MatMul', [[1, 8], [8, 4]]), // warm-up, skipped
    run(200, 100), kernel(210, 30, 'MatMul', [[1, 8], [8, 4]]), kernel(250, 10, 'Add'),
    run(400, 100), kernel(410, 50, 'MatMul', [[2, 8], [8, 4]]), kernel(450, 10, 'Add'),
    kernel(600, 999, 'MatMul'), // outside every run
    { cat: 'Node', name: 'MatMul_fence_before', ts: 420, dur: 5, args: { op_name: 'MatMul' } }, // not a kernel time
  ];
  const byOp = sumKernels(events, { skip: 1 });
  assert.deepEqual([byOp.runs, byOp.runMs, byOp.kernelMs], [2, 0.1, 0.05]);
  assert.deepEqual(byOp.groups.map((g) => [g.key, g.nodesPerRun, g.msPerRun, Number(g.share.toFixed(12))]), [['MatMul', 1, 0.04, 0.8], ['Add', 1, 0.01, 0.2]]);
  const byShape = sumKernels(events, { skip: 1, keyOf: (e) => opAndShapes(e) });
  assert.deepEqual(byShape.groups.map((g) => g.key), ['MatMul [2,8] [8,4]', 'MatMul [1,8] [8,4]', 'Add']);
  assert.throws(() => sumKernels(events, { skip: 3 }), /no model_run after the warm-up/);
});

test("a tiny model's profiled forwards: every kernel in a group, the products keyed by their operands", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ppd-ort-profile-test-'));
  try {
    const c = tinyConfig();
    const model = await loadLlamaModel(c, memorySource(c, randomWeights(c, 3)), { cacheDir: false, threads: 1, profilePrefix: join(dir, 'forward') });
    const cache = new KVCache(c.numLayers, c.numKvHeads, c.headDim, 8);
    for (let i = 0; i < 3; i++) await model.forward({ embeds: model.embed([1, 2]), positions: [0, 1], mask: causalMask(2, 0), cache });
    await model.release();
    const events = JSON.parse(readFileSync(join(dir, readdirSync(dir).find((f) => f.endsWith('.json'))!), 'utf8')) as TraceEvent[];
    const summary = sumKernels(events, { skip: 1, keyOf: (e) => opAndShapes(e) });
    assert.equal(summary.runs, 2);
    assert.ok(summary.kernelMs > 0 && summary.kernelMs <= summary.runMs, `${summary.kernelMs} ms of kernels in runs of ${summary.runMs} ms`);
    assert.ok(Math.abs(summary.groups.reduce((sum, g) => sum + g.share, 0) - 1) < 1e-9);
    const all = sumKernels(events, { skip: 1 });
    assert.equal(summary.groups.reduce((n, g) => n + g.nodesPerRun, 0), all.groups.reduce((n, g) => n + g.nodesPerRun, 0));
    assert.ok(summary.groups.some((g) => g.key.startsWith(`MatMul [2,${c.hiddenSize}]`) || g.key.startsWith(`FusedMatMul [2,${c.hiddenSize}]`)), summary.groups.map((g) => g.key).join('; '));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
