/**
 * Training prompt tokens by self-distillation (PPD.md section 3) and measuring their accuracy
 * (section 4). The base model stays frozen: it is baked into the prompt graph (prompt-graph.ts),
 * and the only parameters that change are the adapter's (its embeddings, and a prompt head when
 * it has one), updated by AdamW (no weight decay, cosine lr). One graph call takes one teacher
 * sequence (distill.ts) and all of its cut points.
 */
import type { LlamaModel } from '../model/llama-model.ts';
import type { PromptHeadKind } from '../model/prompt-head.ts';
import { compileGraph, type CompileOptions } from '../runtime/compile.ts';
import { createSession, OrtTensor, type OrtSession, type RuntimeOptions } from '../runtime/ort.ts';
import type { TensorSource } from '../format/tensor-source.ts';
import type { LlamaConfig } from '../model/config.ts';
import { checkpointGraph, GRAPH_INPUTS } from '../model/llama-graph.ts';
import { Rng } from '../sampling/rng.ts';
import { AdamW, learningRate, type Schedule } from './optimizer.ts';
import { sequenceLength, sequenceTokens, teacherIds, teacherProbabilities, type TeacherSequences } from './distill.ts';
import {
  buildPromptGraph,
  gradName,
  lossWeight,
  PROMPT_LOSS,
  promptParameters,
  STUDENT_LOGITS,
  TEACHER_IDS,
  TEACHER_PROBS,
  TOKEN_EMBEDS,
  TRUTH,
  TRUTH_RANK,
  type PromptGraphShape,
} from './prompt-graph.ts';
import { promptVisibility, type AttentionVariant } from '../ppd/prompt-mask.ts';

/** The shape of the prompt graph that trains `set`'s sequences for an adapter of N prompt tokens. */
export function promptGraphShape(set: TeacherSequences, adapter: { promptTokens: number; virtualTokens: number; head?: PromptHeadKind }): PromptGraphShape {
  const cuts = set.generated - adapter.promptTokens;
  if (cuts < 1) throw new Error(`teacher sequences continue ${set.generated} tokens: too few for ${adapter.promptTokens} prompt tokens`);
  return { promptTokens: adapter.promptTokens, virtualTokens: adapter.virtualTokens, sequenceLength: sequenceLength(set), cuts, topK: set.topK, ...(adapter.head ? { head: adapter.head } : {}) };
}

/**
 * Positions and mask of one call [S + R]: token rows causal at 0..S-1; cut group j's prompt
 * rows at positions L0+j+i, seeing tokens 0..L0+j-1 and their own group as `attention` allows.
 */
function callLayout(shape: PromptGraphShape, prefixLength: number, attention: AttentionVariant): { positions: BigInt64Array; mask: Float32Array } {
  const { promptTokens: N, virtualTokens: Vt, sequenceLength: S, cuts: M } = shape;
  const R0 = N * Vt;
  const T = S + M * R0;
  const visibility = promptVisibility(N, Vt, attention);
  const positions = new BigInt64Array(T);
  const mask = new Float32Array(T * T).fill(-Infinity);
  for (let t = 0; t < S; t++) {
    positions[t] = BigInt(t);
    mask.fill(0, t * T, t * T + t + 1);
  }
  for (let j = 0; j < M; j++) {
    const cut = prefixLength + j; // tokens before the group
    for (let a = 0; a < R0; a++) {
      const row = S + j * R0 + a;
      positions[row] = BigInt(cut + Math.floor(a / Vt));
      mask.fill(0, row * T, row * T + cut);
      for (let b = 0; b < R0; b++) if (visibility[a * R0 + b]) mask[row * T + S + j * R0 + b] = 0;
    }
  }
  return { positions, mask };
}

/** Adapter parameters by graph name: the embeddings [N·Vt, C] and, with a head, its weight and bias. */
export type PromptParameters = Map<string, Float32Array>;

/** The ORT session of the prompt graph for one shape, and the constant parts of its feeds. */
export class PromptSession {
  private readonly layout: { positions: BigInt64Array; mask: Float32Array };

  private constructor(
    private readonly session: OrtSession,
    readonly shape: PromptGraphShape,
    private readonly model: LlamaModel,
    readonly prefixLength: number,
    attention: AttentionVariant,
  ) {
    this.layout = callLayout(shape, prefixLength, attention);
  }

  static async create(model: LlamaModel, tensors: TensorSource, set: TeacherSequences, shape: PromptGraphShape, attention: AttentionVariant, options: CompileOptions & RuntimeOptions = {}): Promise<PromptSession> {
    const config: LlamaConfig = model.config;
    const { promptTokens: N, virtualTokens: Vt, sequenceLength: S, cuts: M, topK, head } = shape;
    const graph = checkpointGraph(`prompt-training N${N} V${Vt} S${S} M${M} K${topK}${head ? ` head ${head}` : ''}`, config, tensors, (external) => buildPromptGraph(config, tensors, shape, external));
    const compiled = compileGraph(graph, options);
    try {
      return new PromptSession(await createSession(compiled.path, options), shape, model, set.prefixLength, attention);
    } finally {
      compiled.dispose();
    }
  }

  /** Examples (cut points) per sequence. */
  get cuts(): number {
    return this.shape.cuts;
  }

  /**
   * One sequence m of `set`: the weighted KL averaged over its cuts, the gradient of each
   * parameter, and the rank of the true greedy token among each (cut, prompt token)'s guesses.
   */
  async run(params: PromptParameters, set: TeacherSequences, m: number) {
    const out = await this.session.run(this.feeds(params, set, m), [PROMPT_LOSS, TRUTH_RANK, ...[...params.keys()].map(gradName)]);
    const grads = new Map<string, Float32Array>();
    for (const name of params.keys()) grads.set(name, out[gradName(name)]!.data as Float32Array);
    // KL = sum w (sum_k p log p) - CE: add the constant teacher part so the figure is a real KL.
    return { kl: Number(out[PROMPT_LOSS]!.data[0]) + this.teacherPart(set, m), grads, ranks: out[TRUTH_RANK]!.data as BigInt64Array };
  }

  /** The student's logits [M·N, V] (virtual tokens averaged) for sequence m: what tests compare with the inference forward. */
  async studentLogits(params: PromptParameters, set: TeacherSequences, m: number): Promise<Float32Array> {
    return (await this.session.run(this.feeds(params, set, m), [STUDENT_LOGITS]))[STUDENT_LOGITS]!.data as Float32Array;
  }

  /** The teacher-entropy part of the weighted KL (a constant of the data): sum over cuts of w_i sum_k p log p. */
  private teacherPart(set: TeacherSequences, m: number): number {
    const { promptTokens: N, cuts: M } = this.shape;
    let sum = 0;
    for (let j = 0; j < M; j++) {
      for (let i = 0; i < N; i++) for (const q of teacherProbabilities(set, m, j + i)) if (q > 0) sum += (lossWeight(i, N) / M) * q * Math.log(q);
    }
    return sum;
  }

  private feeds(params: PromptParameters, set: TeacherSequences, m: number): Record<string, OrtTensor> {
    const { promptTokens: N, cuts: M, topK, sequenceLength: S } = this.shape;
    const tokens = sequenceTokens(set, m);
    const ids = new BigInt64Array(M * N * topK);
    const probs = new Float32Array(M * N * topK);
    const truth = new BigInt64Array(M * N);
    for (let j = 0; j < M; j++) {
      for (let i = 0; i < N; i++) {
        const row = j * N + i;
        // Prompt token i after the first L0+j tokens stands for token L0+j+i: the teacher is that row's distribution.
        probs.set(teacherProbabilities(set, m, j + i), row * topK);
        teacherIds(set, m, j + i).forEach((id, k) => (ids[row * topK + k] = BigInt(id)));
        truth[row] = BigInt(tokens[this.prefixLength + j + i + 1]!);
      }
    }
    const C = this.model.config.hiddenSize;
    const T = this.layout.positions.length;
    const feeds: Record<string, OrtTensor> = {
      [TOKEN_EMBEDS]: new OrtTensor('float32', this.model.embed(Array.from(tokens)), [S, C]),
      [GRAPH_INPUTS.positions]: new OrtTensor('int64', this.layout.positions, [T]),
      [GRAPH_INPUTS.mask]: new OrtTensor('float32', this.layout.mask, [T, T]),
      [TEACHER_IDS]: new OrtTensor('int64', ids, [M * N, topK]),
      [TEACHER_PROBS]: new OrtTensor('float32', probs, [M * N, topK]),
      [TRUTH]: new OrtTensor('int64', truth, [M * N]),
    };
    for (const [name, dims] of promptParameters(this.model.config, this.shape)) feeds[name] = new OrtTensor('float32', params.get(name)!, dims);
    return feeds;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

export interface PromptTrainSettings {
  /** Optimiser steps. */
  steps: number;
  /** Teacher sequences per optimiser step (each brings all of its cut points). */
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

/** Mean weighted KL per cut over a set's sequences (or its first `limit`). */
export async function heldOutKl(session: PromptSession, params: PromptParameters, set: TeacherSequences, limit = set.count): Promise<number> {
  let total = 0;
  const count = Math.min(limit, set.count);
  for (let m = 0; m < count; m++) total += (await session.run(params, set, m)).kl;
  return total / count;
}

/** Trains `params` in place; returns the loss history. */
export async function trainPrompts(
  session: PromptSession,
  params: PromptParameters,
  train: TeacherSequences,
  valid: { set: TeacherSequences; limit: number },
  s: PromptTrainSettings,
  onProgress?: (p: PromptTrainProgress) => void,
): Promise<{ step: number; kl: number; validKl?: number }[]> {
  const optimizer = new AdamW({ lr: s.schedule.peakLr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
  const schedule: Schedule = { ...s.schedule, totalSteps: s.steps };
  const rng = new Rng(s.seed);
  const history: { step: number; kl: number; validKl?: number }[] = [];
  // Sequences in a shuffled order, reshuffled every pass: each is seen once per epoch.
  let order: number[] = [];
  for (let step = 0; step < s.steps; step++) {
    const sum = new Map([...params].map(([name, p]) => [name, new Float32Array(p.length)]));
    let kl = 0;
    for (let b = 0; b < s.batch; b++) {
      if (order.length === 0) order = shuffled(train.count, rng);
      const out = await session.run(params, train, order.pop()!);
      kl += out.kl / s.batch;
      for (const [name, g] of out.grads) {
        const acc = sum.get(name)!;
        for (let i = 0; i < g.length; i++) acc[i]! += g[i]!;
      }
    }
    const lr = learningRate(schedule, step);
    optimizer.update(params, sum, lr, 1 / s.batch);
    const entry: { step: number; kl: number; validKl?: number } = { step: step + 1, kl };
    if ((step + 1) % s.evalEvery === 0 || step + 1 === s.steps) entry.validKl = await heldOutKl(session, params, valid.set, valid.limit);
    history.push(entry);
    onProgress?.({ step: step + 1, steps: s.steps, kl, lr, validKl: entry.validKl });
  }
  return history;
}

function shuffled(count: number, rng: Rng): number[] {
  const order = Array.from({ length: count }, (_, i) => i);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

/** acc[i][k] with its standard error: a share of n cut points. */
export interface AccuracyResult {
  /** acc[i][k] = share of held-out cuts where the base model's greedy token at distance i+2 is the student's (k+1)-th guess of prompt token i. */
  table: number[][];
  /** Standard error of each top-1 entry, sqrt(p(1-p)/n). */
  top1StandardError: number[];
  /** Cut points measured. */
  cuts: number;
}

/** The accuracy table (PPD.md section 4) over every cut point of `set`'s sequences. */
export async function accuracyTable(session: PromptSession, params: PromptParameters, set: TeacherSequences, maxRank = 10): Promise<AccuracyResult> {
  const { promptTokens: N, cuts: M } = session.shape;
  const hits = Array.from({ length: N }, () => new Array<number>(maxRank).fill(0));
  for (let m = 0; m < set.count; m++) {
    const { ranks } = await session.run(params, set, m);
    for (let row = 0; row < M * N; row++) {
      const rank = Number(ranks[row]!);
      if (rank < maxRank) hits[row % N]![rank]!++;
    }
  }
  const cuts = set.count * M;
  const table = hits.map((row) => row.map((h) => h / cuts));
  return { table, top1StandardError: table.map((row) => Math.sqrt((row[0]! * (1 - row[0]!)) / cuts)), cuts };
}
