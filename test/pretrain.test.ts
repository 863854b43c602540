/**
 * The pretraining loop on a tiny model: it lowers the loss on a learnable stream, a run
 * interrupted and resumed from its checkpoint ends bit for bit where an uninterrupted run ends,
 * exported folders load for inference, and the optimiser's schedule and clipping behave.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportModel, pretrain, type PretrainSettings } from '../src/train/pretrain.ts';
import { AdamW, clipScale, globalNorm, learningRate } from '../src/train/optimizer.ts';
import { openModelDir } from '../src/checkpoint/model-dir.ts';

const MODEL = {
  model_type: 'llama',
  vocab_size: 32,
  hidden_size: 16,
  intermediate_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  tie_word_embeddings: true,
  bos_token_id: 1,
  eos_token_id: 2,
};

const settings = (steps: number): PretrainSettings => ({
  modelConfig: MODEL,
  seqLen: 8,
  batchWindows: 2,
  accumulation: 2,
  steps,
  schedule: { peakLr: 1e-2, warmupSteps: 2, minLrRatio: 0.1 },
  weightDecay: 0.01,
  clipNorm: 1,
  seed: 3,
  evalEvery: 2,
  evalWindows: 2,
});

// A stream with structure to learn: a repeating cycle of 7 tokens with a little noise.
const stream = Array.from({ length: 600 }, (_, i) => (i % 53 === 0 ? 3 + (i % 11) : 3 + ((i * 5) % 7)));
const valid = stream.slice(0, 200);

const tempDir = () => mkdtempSync(join(tmpdir(), 'ppd-pretrain-'));

test('pretraining lowers the held-out loss on a learnable stream', async () => {
  const runDir = tempDir();
  const result = await pretrain({ settings: { ...settings(40), evalEvery: 10 }, train: stream, valid, runDir, resume: false, threads: 1 });
  const evals = result.history.filter((h) => h.validLoss !== undefined).map((h) => h.validLoss!);
  assert.ok(evals.at(-1)! < 0.5 * Math.log(32), `held-out loss went ${evals.join(' -> ')} (uniform is ${Math.log(32).toFixed(2)})`);
  assert.ok(evals.at(-1)! < evals[0]!);
  rmSync(runDir, { recursive: true, force: true });
});

test('an interrupted run resumed from its checkpoint ends bit for bit like an uninterrupted one', async () => {
  const [straightDir, resumedDir] = [tempDir(), tempDir()];
  const straight = await pretrain({ settings: settings(6), train: stream, valid, runDir: straightDir, resume: false, threads: 1 });
  const first = await pretrain({ settings: settings(6), train: stream, valid, runDir: resumedDir, resume: false, threads: 1, stopAfterStep: 3 });
  assert.equal(first.step, 3);
  assert.equal(first.finished, false);
  const resumed = await pretrain({ settings: settings(6), train: stream, valid, runDir: resumedDir, resume: true, threads: 1 });
  assert.equal(resumed.step, 6);
  for (const [name, p] of straight.params) {
    assert.deepEqual(Buffer.from(resumed.params.get(name)!.buffer), Buffer.from(p.buffer), `parameter ${name} differs`);
  }
  assert.deepEqual(resumed.history.map((h) => h.loss), straight.history.map((h) => h.loss));
  await assert.rejects(
    pretrain({ settings: { ...settings(6), seed: 4 }, train: stream, valid, runDir: resumedDir, resume: true, threads: 1 }),
    /other settings/,
  );

  const exported = join(resumedDir, 'export');
  exportModel(exported, MODEL, resumed, 'F32');
  const files = openModelDir(exported);
  assert.equal(files.config.hiddenSize, 16);
  files.tensors.close();
  for (const dir of [straightDir, resumedDir]) rmSync(dir, { recursive: true, force: true });
});

test('a resumed run may change its planned length: the schedule follows the new plan and the change is recorded', async () => {
  const runDir = tempDir();
  await pretrain({ settings: settings(8), train: stream, valid, runDir, resume: false, threads: 1, stopAfterStep: 3 });
  const lrs: number[] = [];
  const shorter = await pretrain({ settings: settings(5), train: stream, valid, runDir, resume: true, threads: 1, onProgress: (p) => lrs.push(p.lr) });
  assert.equal(shorter.step, 5);
  assert.equal(shorter.finished, true);
  assert.deepEqual(shorter.reschedules, [{ atStep: 3, fromSteps: 8, toSteps: 5 }]);
  const schedule = { ...settings(5).schedule, totalSteps: 5 };
  assert.deepEqual(lrs, [learningRate(schedule, 3), learningRate(schedule, 4)]);
  rmSync(runDir, { recursive: true, force: true });
});

test('the learning-rate schedule warms up linearly then decays by cosine to its floor', () => {
  const s = { peakLr: 1, warmupSteps: 4, totalSteps: 14, minLrRatio: 0.1 };
  assert.deepEqual([0, 1, 2, 3].map((i) => learningRate(s, i)), [0.25, 0.5, 0.75, 1]);
  assert.ok(Math.abs(learningRate(s, 9) - 0.55) < 1e-12); // halfway through the decay
  assert.ok(Math.abs(learningRate(s, 14) - 0.1) < 1e-12);
});

test('gradient clipping scales to the maximum global norm', () => {
  const grads = [new Float32Array([3, 0]), new Float32Array([4])];
  assert.equal(globalNorm(grads), 5);
  assert.ok(Math.abs(clipScale(5, 1) - 0.2) < 1e-12);
  assert.equal(clipScale(5, 10), 1);
  assert.equal(clipScale(5, 0), 1);
});

test('AdamW follows the textbook update (bias-corrected moments, decoupled decay, norms not decayed)', () => {
  const options = { lr: 0.05, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
  const start = { w: [0.5, -1, 2, 0], norm: [1, 0.25] };
  const params = new Map(Object.entries(start).map(([name, values]) => [name, Float32Array.from(values)]));
  const optimizer = new AdamW(options, (name) => name === 'norm');
  const expected = Object.fromEntries(Object.entries(start).map(([name, values]) => [name, { p: [...values], m: values.map(() => 0), v: values.map(() => 0) }]));
  for (let t = 1; t <= 4; t++) {
    const grads = new Map([...params].map(([name, p]) => [name, p.map((x, i) => Math.sin(3 * t + i) - 0.3 * x)]));
    const lr = options.lr / t;
    optimizer.update(params, grads, lr, 0.5);
    for (const [name, e] of Object.entries(expected)) {
      const decay = name === 'norm' ? 0 : options.weightDecay;
      e.p.forEach((p, i) => {
        const g = grads.get(name)![i]! * 0.5;
        e.m[i] = options.beta1 * e.m[i]! + (1 - options.beta1) * g;
        e.v[i] = options.beta2 * e.v[i]! + (1 - options.beta2) * g * g;
        const mHat = e.m[i]! / (1 - options.beta1 ** t);
        const vHat = e.v[i]! / (1 - options.beta2 ** t);
        e.p[i] = p - lr * decay * p - (lr * mHat) / (Math.sqrt(vHat) + options.eps);
      });
      params.get(name)!.forEach((actual, i) => assert.ok(Math.abs(actual - e.p[i]!) < 1e-6, `${name}[${i}] step ${t}: ${actual} against ${e.p[i]}`));
    }
  }
});

test('an AdamW update with a gradient scale equals the update of the scaled gradient', () => {
  const params = () => new Map([['w', new Float32Array([0.5, -1, 2])]]);
  const [scaled, folded] = [params(), params()];
  const [a, b] = [new AdamW({ lr: 0.1, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 }), new AdamW({ lr: 0.1, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 })];
  for (let step = 0; step < 3; step++) {
    const g = new Float32Array([0.3, -0.2 * step, 1.5]);
    a.update(scaled, new Map([['w', g.map((x) => x * 0.25)]]), 0.1);
    b.update(folded, new Map([['w', g]]), 0.1, 0.25);
  }
  assert.deepEqual([...folded.get('w')!], [...scaled.get('w')!]);
});
