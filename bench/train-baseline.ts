/**
 * The pretraining step as ppd ran it before the per-window graph (until 2026-12-06), kept so
 * that bench:train can measure the current step against it in the same run. Not used by
 * training.
 *
 * One graph call trains `batchWindows` windows packed as rows with a block-diagonal causal mask
 * fed as data, the embeddings looked up and their gradients scattered back in TypeScript, the
 * cross-entropy differentiated by chaining LogSoftmax and GatherElements rules; an optimiser
 * step sums `accumulation` calls in TypeScript, clips in its own pass, then runs AdamW as its
 * loop was then (`previousAdamWUpdate`: the moments read back after each write).
 *
 * Shape legend: N = rows per call (windows × Tw), C hidden size, V vocabulary.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addGradients } from '../src/graph/autodiff.ts';
import { GraphBuilder } from '../src/graph/builder.ts';
import type { LlamaConfig } from '../src/model/config.ts';
import { GRAPH_INPUTS, trainingForward, trainingWeightShapes } from '../src/model/llama-graph.ts';
import { EMBED_TOKENS } from '../src/model/weights.ts';
import { createSession, OrtTensor, type OrtSession, type RuntimeOptions } from '../src/runtime/ort.ts';
import type { WindowSampler } from '../src/train/batches.ts';
import { clipScale, globalNorm, type AdamW } from '../src/train/optimizer.ts';
import { gradName, LOSS, TARGETS } from '../src/train/training-graph.ts';

/** Windows packed as rows: ids, next-token targets, positions restarting per window, mask [N, N]. */
function packWindows(tokens: ArrayLike<number>, starts: readonly number[], seqLen: number) {
  const N = starts.length * seqLen;
  const batch = { ids: new Int32Array(N), targets: new Int32Array(N), positions: new Int32Array(N), mask: new Float32Array(N * N).fill(-Infinity) };
  starts.forEach((start, b) => {
    for (let t = 0; t < seqLen; t++) {
      const row = b * seqLen + t;
      batch.ids[row] = tokens[start + t]!;
      batch.targets[row] = tokens[start + t + 1]!;
      batch.positions[row] = t;
      batch.mask.fill(0, row * N + b * seqLen, row * N + row + 1);
    }
  });
  return batch;
}

const int64 = (values: ArrayLike<number>) => BigInt64Array.from(Array.from(values, BigInt));

export class PreviousPretrainStep {
  private constructor(
    private readonly session: OrtSession,
    private readonly config: LlamaConfig,
    private readonly weightShapes: Map<string, number[]>,
    readonly seqLen: number,
    readonly batchWindows: number,
  ) {}

  /** The graph: `rows` packed rows, loss and the gradients of every weight and of the input embeddings. */
  static graph(config: LlamaConfig, rows: number): { model: Uint8Array; weightShapes: Map<string, number[]>; builder: GraphBuilder } {
    const g = new GraphBuilder('ppd_llama_pretrain_previous');
    const logits = trainingForward(g, config, rows);
    const logProbs = g.op('LogSoftmax', [logits], { axis: -1 });
    const picked = g.op('GatherElements', [logProbs, g.input(TARGETS, 'int64', [rows, 1])], { axis: 1 });
    const loss = g.op('Neg', [g.op('ReduceMean', [picked], { keepdims: 0 })]);
    const weightShapes = trainingWeightShapes(config);
    const wrt = [GRAPH_INPUTS.embeds, ...weightShapes.keys()];
    const grads = addGradients(g, loss, wrt);
    g.output(loss, LOSS);
    for (const name of wrt) g.output(grads.get(name)!, gradName(name));
    return { model: g.finish(), weightShapes, builder: g };
  }

  static async create(config: LlamaConfig, seqLen: number, batchWindows: number, options: RuntimeOptions): Promise<PreviousPretrainStep> {
    const { model, weightShapes } = PreviousPretrainStep.graph(config, seqLen * batchWindows);
    const dir = mkdtempSync(join(tmpdir(), 'ppd-train-previous-'));
    try {
      writeFileSync(join(dir, 'model.onnx'), model);
      return new PreviousPretrainStep(await createSession(join(dir, 'model.onnx'), options), config, weightShapes, seqLen, batchWindows);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** One graph call with the TypeScript around it: lookup, feeds, the embedding rows' scatter. */
  async call(params: Map<string, Float32Array>, tokens: ArrayLike<number>, starts: number[]): Promise<Map<string, Float32Array>> {
    const C = this.config.hiddenSize;
    const N = this.seqLen * this.batchWindows;
    const batch = packWindows(tokens, starts, this.seqLen);
    const table = params.get(EMBED_TOKENS)!;
    const embeds = new Float32Array(N * C);
    batch.ids.forEach((id, row) => embeds.set(table.subarray(id * C, (id + 1) * C), row * C));
    const feeds: Record<string, OrtTensor> = {
      [GRAPH_INPUTS.embeds]: new OrtTensor('float32', embeds, [N, C]),
      [GRAPH_INPUTS.positions]: new OrtTensor('int64', int64(batch.positions), [N]),
      [GRAPH_INPUTS.mask]: new OrtTensor('float32', batch.mask, [N, N]),
      [TARGETS]: new OrtTensor('int64', int64(batch.targets), [N, 1]),
    };
    for (const [name, shape] of this.weightShapes) feeds[name] = new OrtTensor('float32', params.get(name)!, shape);
    const out = await this.session.run(feeds);
    const grads = new Map<string, Float32Array>();
    for (const name of this.weightShapes.keys()) grads.set(name, out[gradName(name)]!.data as Float32Array);
    const tableGrad = grads.get(EMBED_TOKENS)?.slice() ?? new Float32Array(table.length);
    const rowsGrad = out[gradName(GRAPH_INPUTS.embeds)]!.data as Float32Array;
    batch.ids.forEach((id, row) => {
      for (let c = 0; c < C; c++) tableGrad[id * C + c]! += rowsGrad[row * C + c]!;
    });
    grads.set(EMBED_TOKENS, tableGrad);
    return grads;
  }

  /** An optimiser step's gradients: `accumulation` calls, averaged in TypeScript. */
  async gradients(params: Map<string, Float32Array>, tokens: ArrayLike<number>, sampler: WindowSampler, accumulation: number): Promise<Map<string, Float32Array>> {
    const sum = new Map<string, Float32Array>();
    for (let micro = 0; micro < accumulation; micro++) {
      for (const [name, g] of await this.call(params, tokens, sampler.next(this.batchWindows))) {
        const acc = sum.get(name);
        if (!acc) sum.set(name, accumulation === 1 ? g : g.map((x) => x / accumulation));
        else for (let i = 0; i < g.length; i++) acc[i]! += g[i]! / accumulation;
      }
    }
    return sum;
  }

  /** Clipping, a pass of its own over the gradients, then AdamW. */
  update(params: Map<string, Float32Array>, grads: Map<string, Float32Array>, optimizer: AdamW, lr: number, clipNorm: number): void {
    const scale = clipScale(globalNorm(grads.values()), clipNorm);
    if (scale !== 1) for (const g of grads.values()) for (let i = 0; i < g.length; i++) g[i]! *= scale;
    previousAdamWUpdate(optimizer, params, grads, lr);
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** AdamW.update's loop as it was before the one-pass rewrite (src/train/optimizer.ts), on the optimiser's own state. */
function previousAdamWUpdate(optimizer: AdamW, params: Map<string, Float32Array>, grads: Map<string, Float32Array>, lr: number): void {
  optimizer.step++;
  const { beta1, beta2, eps, weightDecay } = optimizer.options;
  const correction1 = 1 - Math.pow(beta1, optimizer.step);
  const correction2 = 1 - Math.pow(beta2, optimizer.step);
  for (const [name, p] of params) {
    const g = grads.get(name)!;
    const moment = (store: Map<string, Float32Array>) => store.get(name) ?? store.set(name, new Float32Array(p.length)).get(name)!;
    const [m, v] = [moment(optimizer.m), moment(optimizer.v)];
    const decay = lr * weightDecay;
    for (let i = 0; i < p.length; i++) {
      const gi = g[i]!;
      m[i] = beta1 * m[i]! + (1 - beta1) * gi;
      v[i] = beta2 * v[i]! + (1 - beta2) * gi * gi;
      const update = m[i]! / correction1 / (Math.sqrt(v[i]! / correction2) + eps);
      p[i] = p[i]! - decay * p[i]! - lr * update;
    }
  }
}
