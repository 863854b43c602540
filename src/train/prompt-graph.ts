/**
 * The prompt-token training step as one ONNX graph, over one teacher sequence (distill.ts): the
 * frozen base model (weights baked in) runs the sequence's S token rows and, after them, M cut
 * groups of N·Vt prompt-token rows; group j stands after the first L0 + j tokens (positions
 * L0+j+i), sees only those tokens and, among its own rows, what the adapter's attention rule
 * allows. So one call trains M examples (the same model forward a call per example would run,
 * without recomputing the shared prefix M times). The virtual tokens' logits are averaged per
 * prompt token; the loss is the distillation cross-entropy against the teachers' top-k
 * probabilities, weighted 0.8^i / N, averaged over the groups; the outputs are its gradients
 * with respect to the adapter's parameters (the base model cannot change) and, for accuracy
 * tables, the rank of the true greedy token among each prompt token's logits.
 *
 * Shape legend: S sequence tokens, L0 of them before the first cut, M cut groups, N prompt
 * tokens, Vt virtual tokens per prompt token, R = M·N·Vt prompt rows, C hidden, V vocabulary,
 * topK teacher entries.
 *
 *   inputs   token_embeds [S, C], prompt_embeddings [N·Vt, C], mask [S+R, S+R] (0 / -inf),
 *            positions [S+R] i64, teacher_ids [M·N, topK] i64, teacher_probs [M·N, topK],
 *            truth [M·N] i64, and with a head: prompt_head.weight [N, C, C], prompt_head.bias [N, C],
 *            and for a 'residual-parent' head prompt_head.parent_weight [N, C, C] (group j's parent
 *            is token row L0 + j - 1, the last token it sees)
 *   outputs  loss [] (the cross-entropy part of the KL, mean over groups), grad.<parameter> for
 *            each adapter parameter, truth_rank [M·N] i64 (0 = the student's top guess),
 *            student_logits [M·N, V] (fetched by tests only: large for a large vocabulary)
 */
import { addGradients } from '../graph/autodiff.ts';
import { DATA_TYPE, GraphBuilder, type ExternalDataSink } from '../graph/builder.ts';
import type { TensorSource } from '../format/tensor-source.ts';
import type { LlamaConfig } from '../model/config.ts';
import { frozenForward, GRAPH_INPUTS } from '../model/llama-graph.ts';
import { PROMPT_HEAD_BIAS, PROMPT_HEAD_PARENT_WEIGHT, PROMPT_HEAD_WEIGHT, promptHeadOnGroups, type PromptHeadKind } from '../model/prompt-head.ts';
import { EMBEDDINGS } from '../ppd/adapter.ts';

export const TOKEN_EMBEDS = 'token_embeds';
/** The adapter's embeddings [N·Vt, C], by the name adapters store them under. */
export const PROMPT_EMBEDDINGS = EMBEDDINGS;
export const TEACHER_IDS = 'teacher_ids';
export const TEACHER_PROBS = 'teacher_probs';
export const TRUTH = 'truth';
export const TRUTH_RANK = 'truth_rank';
export const STUDENT_LOGITS = 'student_logits';
export const PROMPT_LOSS = 'loss';
export const gradName = (parameter: string) => `grad.${parameter}`;
/** Weight of prompt token i in the loss (PPD.md section 3). */
export const lossWeight = (i: number, N: number) => Math.pow(0.8, i) / N;

export interface PromptGraphShape {
  promptTokens: number; // N
  virtualTokens: number; // Vt
  /** Tokens of a teacher sequence (S). */
  sequenceLength: number;
  /** Cut groups per sequence (M). */
  cuts: number;
  topK: number;
  /** The adapter's prompt head, when it has one (model/prompt-head.ts). */
  head?: PromptHeadKind;
}

/** The adapter's trainable parameters in the graph, with their shapes. */
export function promptParameters(config: LlamaConfig, shape: PromptGraphShape): Map<string, number[]> {
  const { promptTokens: N, virtualTokens: Vt } = shape;
  const C = config.hiddenSize;
  const params = new Map<string, number[]>([[PROMPT_EMBEDDINGS, [N * Vt, C]]]);
  if (shape.head) {
    params.set(PROMPT_HEAD_WEIGHT, [N, C, C]);
    params.set(PROMPT_HEAD_BIAS, [N, C]);
    if (shape.head === 'residual-parent') params.set(PROMPT_HEAD_PARENT_WEIGHT, [N, C, C]);
  }
  return params;
}

export function buildPromptGraph(config: LlamaConfig, tensors: TensorSource, shape: PromptGraphShape, external: ExternalDataSink): Uint8Array {
  const { promptTokens: N, virtualTokens: Vt, sequenceLength: S, cuts: M, topK } = shape;
  const { hiddenSize: C, vocabSize: V } = config;
  const R = M * N * Vt;
  const g = new GraphBuilder('ppd_prompt_training', external);
  const params = promptParameters(config, shape);
  const inputs = new Map([...params].map(([name, dims]) => [name, g.input(name, 'float32', dims)]));
  const promptRows = g.op('Tile', [inputs.get(PROMPT_EMBEDDINGS)!, g.ints([M, 1])]); // [R, C], group after group
  const embeds = g.op('Concat', [g.input(TOKEN_EMBEDS, 'float32', [S, C]), promptRows], { axis: 0 });
  const positions = g.input(GRAPH_INPUTS.positions, 'int64', [S + R]);
  const mask = g.input(GRAPH_INPUTS.mask, 'float32', [S + R, S + R]);
  // Group j's parent is token row L0 + j - 1; as [N, M·Vt, C], each prompt row of the grouped layout beside its parent's state.
  const L0 = S - M - N;
  const parentStates = (hidden: string) => {
    const parents = g.op('Slice', [hidden, g.ints([L0 - 1]), g.ints([L0 - 1 + M]), g.ints([0])]); // [M, C]
    const perRow = g.op('Reshape', [g.op('Tile', [g.op('Reshape', [parents, g.ints([M, 1, C])]), g.ints([1, Vt, 1])]), g.ints([1, M * Vt, C])]);
    return g.op('Tile', [perRow, g.ints([N, 1, 1])]);
  };
  // Only the prompt rows' logits are used: the head (when there is one) and the LM head run on them alone.
  const beforeHead = (hidden: string) => {
    const prompt = g.op('Slice', [hidden, g.ints([S]), g.ints([S + R]), g.ints([0])]); // [R, C]
    if (!shape.head) return prompt;
    const grouped = g.op('Reshape', [g.op('Transpose', [g.op('Reshape', [prompt, g.ints([M, N, Vt, C])])], { perm: [1, 0, 2, 3] }), g.ints([N, M * Vt, C])]);
    const parent = shape.head === 'residual-parent' ? { states: parentStates(hidden), weight: inputs.get(PROMPT_HEAD_PARENT_WEIGHT)! } : undefined;
    const headed = promptHeadOnGroups(g, grouped, inputs.get(PROMPT_HEAD_WEIGHT)!, inputs.get(PROMPT_HEAD_BIAS)!, N, C, parent);
    return g.op('Reshape', [g.op('Transpose', [g.op('Reshape', [headed, g.ints([N, M, Vt, C])])], { perm: [1, 0, 2, 3] }), g.ints([R, C])]);
  };
  const logits = frozenForward(g, config, tensors, S + R, null, { embeds, positions, mask, beforeHead }); // [R, V]
  const perToken = g.op('ReduceMean', [g.op('Reshape', [logits, g.ints([M * N, Vt, V])]), g.ints([1])], { keepdims: 0 }); // [M·N, V]
  const logProbs = g.op('LogSoftmax', [perToken], { axis: -1 });
  const picked = g.op('GatherElements', [logProbs, g.input(TEACHER_IDS, 'int64', [M * N, topK])], { axis: 1 }); // [M·N, topK]
  const expected = g.op('ReduceSum', [g.op('Mul', [picked, g.input(TEACHER_PROBS, 'float32', [M * N, topK])]), g.ints([1])], { keepdims: 0 }); // [M·N]
  const weights = g.floats(Array.from({ length: M * N }, (_, r) => lossWeight(r % N, N) / M), [M * N]);
  const loss = g.op('Neg', [g.op('ReduceSum', [g.op('Mul', [expected, weights])], { keepdims: 0 })]);
  const grads = addGradients(g, loss, [...inputs.values()]);
  g.output(loss, PROMPT_LOSS);
  for (const [name, value] of inputs) g.output(grads.get(value)!, gradName(name));
  // Rank of the truth = how many logits beat it (ties count for the truth).
  const truthLogit = g.op('GatherElements', [perToken, g.op('Unsqueeze', [g.input(TRUTH, 'int64', [M * N]), g.ints([1])])], { axis: 1 }); // [M·N, 1]
  const beaten = g.op('Cast', [g.op('Greater', [perToken, truthLogit])], { to: DATA_TYPE.int64 });
  g.output(g.op('ReduceSum', [beaten, g.ints([1])], { keepdims: 0 }), TRUTH_RANK, 'int64', [M * N]);
  g.output(perToken, STUDENT_LOGITS);
  return g.finish();
}
