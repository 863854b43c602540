/**
 * Training prompt tokens by self-distillation (PPD.md section 3) and measuring their accuracy
 * (section 4). The base model stays frozen: it is baked into the prompt graph (prompt-graph.ts)
 * and into the inference session that computes each example's prefix cache; the only parameters
 * that change are the adapter's embeddings, updated by AdamW (no weight decay, cosine lr).
 */
import { KVCache } from '../model/kv-cache.ts';
import type { LlamaModel } from '../model/llama-model.ts';
import { compileGraph, type CompileOptions } from '../runtime/compile.ts';
import { createSession, OrtTensor, type OrtSession, type RuntimeOptions } from '../runtime/ort.ts';
import type { TensorSource } from '../format/tensor-source.ts';
import type { LlamaConfig } from '../model/config.ts';
import { checkpointGraph, GRAPH_INPUTS, pastKeyName, pastValueName } from '../model/llama-graph.ts';
import { Rng } from '../sampling/rng.ts';
import { newCache, prefill } from '../decode/autoregressive.ts';
import { AdamW, learningRate, type Schedule } from './optimizer.ts';
import type { PromptAdapter } from '../ppd/adapter.ts';
import { teacherProbabilities, type DistillSet } from './distill.ts';
import { topKIndices } from '../sampling/sampler.ts';
import { buildPromptGraph, lossWeight, PROMPT_GRAD, PROMPT_LOSS, STUDENT_LOGITS, TEACHER_IDS, TEACHER_PROBS, type PromptGraphShape } from './prompt-graph.ts';
import { promptVisibility } from '../ppd/prompt-mask.ts';

export const ADAPTER_PARAM = 'prompt_embeddings';

/** The ORT session of the prompt graph for one (N, Vt, P, topK) shape. */
export class PromptSession {
  private constructor(
    private readonly session: OrtSession,
    readonly shape: PromptGraphShape,
    private readonly config: LlamaConfig,
  ) {}

  static async create(config: LlamaConfig, tensors: TensorSource, shape: PromptGraphShape, options: CompileOptions & RuntimeOptions = {}): Promise<PromptSession> {
    const { promptTokens: N, virtualTokens: Vt, prefixLength: P, topK } = shape;
    const graph = checkpointGraph(`prompt-training N${N} V${Vt} L${P} K${topK}`, config, tensors, (external) => buildPromptGraph(config, tensors, shape, external));
    const compiled = compileGraph(graph, options);
    try {
      return new PromptSession(await createSession(compiled.path, options), shape, config);
    } finally {
      compiled.dispose();
    }
  }

  /** Loss (cross-entropy part), gradient [R, C] and per-prompt-token student logits [N, vocab] for one example. */
  async run(adapter: PromptAdapter, prefixCache: KVCache, set: DistillSet, example: number) {
    const { promptTokens: N, virtualTokens: Vt, prefixLength: P, topK } = this.shape;
    const { hiddenSize: C, numLayers, numKvHeads, headDim } = this.config;
    const R = N * Vt;
    const visibility = promptVisibility(N, Vt, adapter.config.attention);
    const mask = new Float32Array(R * (P + R));
    for (let a = 0; a < R; a++) {
      for (let b = 0; b < P + R; b++) mask[a * (P + R) + b] = b < P || visibility[a * R + (b - P)] ? 0 : -Infinity;
    }
    const probs = new Float32Array(N * topK);
    for (let i = 0; i < N; i++) probs.set(teacherProbabilities(set, example, i), i * topK);
    const feeds: Record<string, OrtTensor> = {
      [GRAPH_INPUTS.embeds]: new OrtTensor('float32', adapter.embeddings, [R, C]),
      [GRAPH_INPUTS.positions]: new OrtTensor('int64', BigInt64Array.from({ length: R }, (_, r) => BigInt(P + Math.floor(r / Vt))), [R]),
      [GRAPH_INPUTS.mask]: new OrtTensor('float32', mask, [R, P + R]),
      [TEACHER_IDS]: new OrtTensor('int64', BigInt64Array.from(set.topIds.subarray(example * N * topK, (example + 1) * N * topK), BigInt), [N, topK]),
      [TEACHER_PROBS]: new OrtTensor('float32', probs, [N, topK]),
    };
    for (let l = 0; l < numLayers; l++) {
      feeds[pastKeyName(l)] = new OrtTensor('float32', prefixCache.pastKeys(l), [P, numKvHeads, headDim]);
      feeds[pastValueName(l)] = new OrtTensor('float32', prefixCache.pastValues(l), [P, numKvHeads, headDim]);
    }
    const out = await this.session.run(feeds);
    // KL = sum_i w_i (sum_k p log p) - CE: add the constant teacher part so the figure is a real KL.
    let teacherPart = 0;
    for (let i = 0; i < N; i++) {
      for (let k = 0; k < topK; k++) {
        const p = probs[i * topK + k]!;
        if (p > 0) teacherPart += lossWeight(i, N) * p * Math.log(p);
      }
    }
    return {
      kl: Number(out[PROMPT_LOSS]!.data[0]) + teacherPart,
      grad: out[PROMPT_GRAD]!.data as Float32Array,
      studentLogits: out[STUDENT_LOGITS]!.data as Float32Array,
    };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** Prefix caches of the examples, computed once by the frozen inference model. */
export class PrefixCaches {
  private readonly caches = new Map<number, KVCache>();
  constructor(
    private readonly model: LlamaModel,
    private readonly set: DistillSet,
  ) {}

  async get(example: number): Promise<KVCache> {
    let cache = this.caches.get(example);
    if (!cache) {
      const P = this.set.prefixLength;
      cache = newCache(this.model);
      await prefill(this.model, Array.from(this.set.prefixes.subarray(example * P, (example + 1) * P)), cache);
      this.caches.set(example, cache);
    }
    return cache;
  }
}

export interface PromptTrainSettings {
  steps: number;
  /** Examples per optimiser step. */
  batch: number;
  schedule: Omit<Schedule, 'totalSteps'>;
  seed: number;
  evalEvery: number;
}

export interface PromptTrainProgress {
  step: number;
  steps: number;
  kl: number;
  lr: number;
  validKl?: number;
}

/** Mean weighted KL over a set's examples (or its first `limit`). */
export async function heldOutKl(session: PromptSession, adapter: PromptAdapter, set: DistillSet, caches: PrefixCaches, limit = set.count): Promise<number> {
  let total = 0;
  const count = Math.min(limit, set.count);
  for (let m = 0; m < count; m++) total += (await session.run(adapter, await caches.get(m), set, m)).kl;
  return total / count;
}

/** Trains `adapter` in place; returns the loss history. */
export async function trainPrompts(
  session: PromptSession,
  adapter: PromptAdapter,
  train: { set: DistillSet; caches: PrefixCaches },
  valid: { set: DistillSet; caches: PrefixCaches; limit: number },
  s: PromptTrainSettings,
  onProgress?: (p: PromptTrainProgress) => void,
): Promise<{ step: number; kl: number; validKl?: number }[]> {
  const optimizer = new AdamW({ lr: s.schedule.peakLr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
  const schedule: Schedule = { ...s.schedule, totalSteps: s.steps };
  const params = new Map([[ADAPTER_PARAM, adapter.embeddings]]);
  const rng = new Rng(s.seed);
  const history: { step: number; kl: number; validKl?: number }[] = [];
  for (let step = 0; step < s.steps; step++) {
    const grad = new Float32Array(adapter.embeddings.length);
    let kl = 0;
    for (let b = 0; b < s.batch; b++) {
      const m = Math.floor(rng.next() * train.set.count);
      const out = await session.run(adapter, await train.caches.get(m), train.set, m);
      kl += out.kl / s.batch;
      for (let i = 0; i < grad.length; i++) grad[i]! += out.grad[i]! / s.batch;
    }
    const lr = learningRate(schedule, step);
    optimizer.update(params, new Map([[ADAPTER_PARAM, grad]]), lr);
    const entry: { step: number; kl: number; validKl?: number } = { step: step + 1, kl };
    if ((step + 1) % s.evalEvery === 0 || step + 1 === s.steps) {
      entry.validKl = await heldOutKl(session, adapter, valid.set, valid.caches, valid.limit);
    }
    history.push(entry);
    onProgress?.({ step: step + 1, steps: s.steps, kl, lr, validKl: entry.validKl });
  }
  return history;
}

/**
 * The accuracy table (PPD.md section 4): acc[i][k] = share of held-out examples where the base
 * model's greedy token at distance i+2 is exactly the student's (k+1)-th guess of prompt token i.
 */
export async function accuracyTable(session: PromptSession, adapter: PromptAdapter, set: DistillSet, caches: PrefixCaches, maxRank = 10): Promise<number[][]> {
  const { promptTokens: N } = set;
  const hits = Array.from({ length: N }, () => new Array<number>(maxRank).fill(0));
  for (let m = 0; m < set.count; m++) {
    const { studentLogits } = await session.run(adapter, await caches.get(m), set, m);
    const vocab = studentLogits.length / N;
    for (let i = 0; i < N; i++) {
      const guesses = topKIndices(studentLogits.subarray(i * vocab, (i + 1) * vocab), maxRank);
      const truth = set.greedy[m * (N + 1) + i + 1]!;
      const rank = guesses.indexOf(truth);
      if (rank >= 0) hits[i]![rank]!++;
    }
  }
  return hits.map((row) => row.map((h) => h / set.count));
}
