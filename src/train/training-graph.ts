/**
 * The pretraining step as one ONNX graph: the token-embedding lookup, the LLaMA training forward
 * over W windows of Tw tokens (attention per window), the next-token cross-entropy, the
 * gradients of every weight (the tied table's from both its uses), and the gradients' squared
 * global norm, all in one `session.run`. The forward is the same model code as inference
 * (`windowedTrainingForward`), differentiated by `graph/autodiff.ts`. The optimiser update stays
 * in TypeScript (optimizer.ts): one fused pass over each parameter costs less than the dozen
 * elementwise passes ONNX Runtime would make of it (docs/bench/train.md).
 *
 * Shape legend: W windows per call, Tw tokens per window, N = W*Tw rows, C hidden, V vocabulary.
 *
 *   inputs   ids [N] i64 (window w is rows w*Tw ..), targets [N, 1] i64 (each row's next token),
 *            one input per weight in graph layout (linear [in, out], norms [C], the table [V, C])
 *   outputs  loss [] (mean over rows), grad.<weight> per weight, grad_norm_squared []
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addGradients } from '../graph/autodiff.ts';
import { GraphBuilder, type FloatType } from '../graph/builder.ts';
import type { LlamaConfig } from '../model/config.ts';
import { trainingWeightShapes, windowedTrainingForward } from '../model/llama-graph.ts';
import { EMBED_TOKENS } from '../model/weights.ts';
import { createSession, OrtTensor, type OrtSession, type RuntimeOptions } from '../runtime/ort.ts';

export const IDS = 'ids';
export const TARGETS = 'targets';
export const LOSS = 'loss';
export const GRAD_NORM_SQUARED = 'grad_norm_squared';
export const gradName = (value: string) => `grad.${value}`;

/**
 * Adds the mean next-token cross-entropy of `logits` [N, V] against a `targets` [N, 1] input,
 * and its gradient with respect to the logits in closed form, (softmax - one-hot) / N: three
 * passes over [N, V] where the chained rules of LogSoftmax and GatherElements take about seven.
 */
export function crossEntropy(g: GraphBuilder, logits: string, rows: number): { loss: string; dLogits: string } {
  const targets = g.input(TARGETS, 'int64', [rows, 1]);
  const logProbs = g.op('LogSoftmax', [logits], { axis: -1 });
  const picked = g.op('GatherElements', [logProbs, targets], { axis: 1 });
  const loss = g.op('Neg', [g.op('ReduceMean', [picked], { keepdims: 0 })]);
  const minusOne = g.op('Expand', [g.scalar(-1), g.ints([rows, 1])]);
  const probsMinusOneHot = g.op('ScatterElements', [g.op('Exp', [logProbs]), targets, minusOne], { axis: 1, reduction: 'add' });
  return { loss, dLogits: g.op('Mul', [probsMinusOneHot, g.scalar(1 / rows)]) };
}

/** W windows of Tw tokens per graph call. */
export interface WindowLayout {
  windows: number;
  windowTokens: number;
}

export interface PretrainGraph {
  model: Uint8Array;
  /** Weight inputs by name, with their graph-layout shapes. */
  weightShapes: Map<string, number[]>;
  /** The finished builder: its record of nodes and static shapes (what bench/train.ts counts FLOPs from). */
  builder: GraphBuilder;
}

export function buildPretrainGraph(config: LlamaConfig, layout: WindowLayout, float: FloatType = 'float32'): PretrainGraph {
  const { windows, windowTokens: Tw } = layout;
  const N = windows * Tw;
  const { vocabSize: V, hiddenSize: C } = config;
  const g = new GraphBuilder('ppd_llama_pretrain', undefined, { float });
  const table = g.input(EMBED_TOKENS, g.float, [V, C]);
  const embeds = g.op('Gather', [table, g.input(IDS, 'int64', [N])], { axis: 0 }); // [N, C]
  const positions = g.initializer('window_positions', BigInt64Array.from({ length: Tw }, (_, i) => BigInt(i)), [Tw]);
  const logits = windowedTrainingForward(g, config, windows, Tw, { embeds, positions, table });
  const { loss, dLogits } = crossEntropy(g, logits, N);
  // The table is an input whether tied (the head's weight too) or not (looked up only).
  const weightShapes = new Map([[EMBED_TOKENS, [V, C]], ...trainingWeightShapes(config)]);
  const grads = addGradients(g, logits, [...weightShapes.keys()], dLogits);
  g.output(loss, LOSS);
  for (const name of weightShapes.keys()) g.output(grads.get(name)!, gradName(name));
  const squares = [...weightShapes.keys()].map((name) => g.op('ReduceSumSquare', [grads.get(name)!], { keepdims: 0 }));
  g.output(squares.length === 1 ? squares[0]! : g.op('Sum', squares), GRAD_NORM_SQUARED);
  return { model: g.finish(), weightShapes, builder: g };
}

export interface StepInput {
  /** [N] input ids, window after window. */
  ids: ArrayLike<number>;
  /** [N] each row's next token. */
  targets: ArrayLike<number>;
  /** Weights by name in graph layout. */
  weights: Map<string, Float32Array>;
}

export interface StepOutput {
  loss: number;
  /** Gradients of every weight by name (graph layout). */
  grads: Map<string, Float32Array>;
  /** The L2 norm of all gradients together, before any clipping. */
  gradNorm: number;
}

/** An ORT session over the pretraining graph: one call = loss, all gradients and their norm. */
export class PretrainSession {
  private constructor(
    private readonly session: OrtSession,
    readonly layout: WindowLayout,
    readonly weightShapes: Map<string, number[]>,
  ) {}

  static async create(config: LlamaConfig, layout: WindowLayout, options: RuntimeOptions = {}): Promise<PretrainSession> {
    const { model, weightShapes } = buildPretrainGraph(config, layout);
    const dir = mkdtempSync(join(tmpdir(), 'ppd-train-graph-'));
    try {
      writeFileSync(join(dir, 'model.onnx'), model);
      const session = await createSession(join(dir, 'model.onnx'), options);
      return new PretrainSession(session, layout, weightShapes);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** Rows per call (W * Tw). */
  get rows(): number {
    return this.layout.windows * this.layout.windowTokens;
  }

  async step(input: StepInput): Promise<StepOutput> {
    const N = this.rows;
    const int64 = (values: ArrayLike<number>) => BigInt64Array.from(Array.from(values, BigInt));
    const feeds: Record<string, OrtTensor> = {
      [IDS]: new OrtTensor('int64', int64(input.ids), [N]),
      [TARGETS]: new OrtTensor('int64', int64(input.targets), [N, 1]),
    };
    for (const [name, shape] of this.weightShapes) feeds[name] = new OrtTensor('float32', input.weights.get(name)!, shape);
    const out = await this.session.run(feeds);
    const grads = new Map<string, Float32Array>();
    for (const name of this.weightShapes.keys()) grads.set(name, out[gradName(name)]!.data as Float32Array);
    return { loss: Number(out[LOSS]!.data[0]), grads, gradNorm: Math.sqrt(Number(out[GRAD_NORM_SQUARED]!.data[0])) };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
