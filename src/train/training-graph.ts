/**
 * The pretraining step as one ONNX graph: the LLaMA training forward over N packed rows, the
 * next-token cross-entropy, and the gradients of every weight and of the input embeddings, all
 * in one `session.run`. The graph is built by the same model code as inference
 * (`trainingForward`) and differentiated by `graph/autodiff.ts`.
 *
 *   inputs   embeds [N, C], positions [N] i64, mask [N, N] (0 / -inf), targets [N, 1] i64,
 *            one input per weight (graph layout: linear [in, out], norms [C], tied table [V, C])
 *   outputs  loss [] (mean over rows), grad.embeds [N, C], grad.<weight> per weight
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addGradients } from '../graph/autodiff.ts';
import { GraphBuilder, type FloatType } from '../graph/builder.ts';
import type { LlamaConfig } from '../model/config.ts';
import { GRAPH_INPUTS, trainingForward, trainingWeightShapes } from '../model/llama-graph.ts';
import { createSession, OrtTensor, type OrtSession, type RuntimeOptions } from '../runtime/ort.ts';

export const TARGETS = 'targets';
export const LOSS = 'loss';
export const gradName = (value: string) => `grad.${value}`;

/** Adds the mean next-token cross-entropy of `logits` [N, V] against a `targets` [N, 1] input. */
export function crossEntropy(g: GraphBuilder, logits: string, rows: number): string {
  const logProbs = g.op('LogSoftmax', [logits], { axis: -1 });
  const picked = g.op('GatherElements', [logProbs, g.input(TARGETS, 'int64', [rows, 1])], { axis: 1 });
  return g.op('Neg', [g.op('ReduceMean', [picked], { keepdims: 0 })]);
}

export interface PretrainGraph {
  model: Uint8Array;
  /** Weight inputs by name, with their graph-layout shapes. */
  weightShapes: Map<string, number[]>;
  /** The finished builder: its record of nodes and static shapes (what bench/train.ts counts FLOPs from). */
  builder: GraphBuilder;
}

export function buildPretrainGraph(config: LlamaConfig, rows: number, float: FloatType = 'float32'): PretrainGraph {
  const g = new GraphBuilder('ppd_llama_pretrain', undefined, { float });
  const loss = crossEntropy(g, trainingForward(g, config, rows), rows);
  const weightShapes = trainingWeightShapes(config);
  const wrt = [GRAPH_INPUTS.embeds, ...weightShapes.keys()];
  const grads = addGradients(g, loss, wrt);
  g.output(loss, LOSS);
  for (const name of wrt) g.output(grads.get(name)!, gradName(name));
  return { model: g.finish(), weightShapes, builder: g };
}

export interface StepInput {
  embeds: Float32Array; // [N, C]
  positions: ArrayLike<number>; // [N]
  /** [N, N] 1 = may attend. */
  mask: Uint8Array;
  targets: ArrayLike<number>; // [N]
  /** Weights by name in graph layout. */
  weights: Map<string, Float32Array>;
}

export interface StepOutput {
  loss: number;
  /** Gradients by name: every weight, plus `embeds` [N, C]. */
  grads: Map<string, Float32Array>;
}

/** An ORT session over the pretraining graph: one call = loss and all gradients. */
export class PretrainSession {
  private constructor(
    private readonly session: OrtSession,
    readonly rows: number,
    readonly weightShapes: Map<string, number[]>,
    private readonly hiddenSize: number,
  ) {}

  static async create(config: LlamaConfig, rows: number, options: RuntimeOptions = {}): Promise<PretrainSession> {
    const { model, weightShapes } = buildPretrainGraph(config, rows);
    const dir = mkdtempSync(join(tmpdir(), 'ppd-train-graph-'));
    try {
      writeFileSync(join(dir, 'model.onnx'), model);
      const session = await createSession(join(dir, 'model.onnx'), options);
      return new PretrainSession(session, rows, weightShapes, config.hiddenSize);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  async step(input: StepInput): Promise<StepOutput> {
    const N = this.rows;
    const mask = new Float32Array(N * N);
    for (let i = 0; i < mask.length; i++) mask[i] = input.mask[i] ? 0 : -Infinity;
    const feeds: Record<string, OrtTensor> = {
      [GRAPH_INPUTS.embeds]: new OrtTensor('float32', input.embeds, [N, this.hiddenSize]),
      [GRAPH_INPUTS.positions]: new OrtTensor('int64', BigInt64Array.from(Array.from(input.positions, BigInt)), [N]),
      [GRAPH_INPUTS.mask]: new OrtTensor('float32', mask, [N, N]),
      [TARGETS]: new OrtTensor('int64', BigInt64Array.from(Array.from(input.targets, BigInt)), [N, 1]),
    };
    for (const [name, shape] of this.weightShapes) {
      feeds[name] = new OrtTensor('float32', input.weights.get(name)!, shape);
    }
    const out = await this.session.run(feeds);
    const grads = new Map<string, Float32Array>();
    for (const name of [GRAPH_INPUTS.embeds, ...this.weightShapes.keys()]) {
      grads.set(name, out[gradName(name)]!.data as Float32Array);
    }
    return { loss: Number(out[LOSS]!.data[0]), grads };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
