/**
 * The prompt-token training step as one ONNX graph: the frozen base model (weights baked in)
 * runs the N·Vt prompt-token rows after a cached prefix of exactly P rows; the virtual tokens'
 * logits are averaged per prompt token; the loss is the distillation cross-entropy against the
 * teachers' top-k probabilities, weighted 0.8^i / N; the output is its gradient with respect to
 * the prompt rows' input embeddings (nothing else is trainable).
 *
 *   inputs   embeds [R, C] (R = N·Vt), positions [R] i64, mask [R, P+R] (0 / -inf),
 *            past_key_l / past_value_l [P, K, D], teacher_ids [N, topK] i64, teacher_probs [N, topK]
 *   outputs  loss [] (the cross-entropy part of the KL; the teacher-entropy part is constant),
 *            grad.embeds [R, C], student_logits [N, V]
 */
import { addGradients } from '../graph/autodiff.ts';
import { GraphBuilder, type ExternalDataSink } from '../graph/builder.ts';
import type { TensorSource } from '../format/tensor-source.ts';
import type { LlamaConfig } from '../model/config.ts';
import { frozenForward, GRAPH_INPUTS } from '../model/llama-graph.ts';

export const TEACHER_IDS = 'teacher_ids';
export const TEACHER_PROBS = 'teacher_probs';
export const STUDENT_LOGITS = 'student_logits';
export const PROMPT_LOSS = 'loss';
export const PROMPT_GRAD = 'grad.embeds';
/** Weight of prompt token i in the loss (PPD.md section 3). */
export const lossWeight = (i: number, N: number) => Math.pow(0.8, i) / N;

export interface PromptGraphShape {
  promptTokens: number; // N
  virtualTokens: number; // Vt
  prefixLength: number; // P
  topK: number; // entries kept of each teacher distribution
}

export function buildPromptGraph(config: LlamaConfig, tensors: TensorSource, shape: PromptGraphShape, external: ExternalDataSink): Uint8Array {
  const { promptTokens: N, virtualTokens: Vt, prefixLength: P, topK } = shape;
  const g = new GraphBuilder('ppd_prompt_training', external);
  const logits = frozenForward(g, config, tensors, N * Vt, P); // [R, vocab]
  const perToken = g.op('ReduceMean', [g.op('Reshape', [logits, g.ints([N, Vt, config.vocabSize])]), g.ints([1])], { keepdims: 0 }); // [N, vocab]
  const logProbs = g.op('LogSoftmax', [perToken], { axis: -1 });
  const picked = g.op('GatherElements', [logProbs, g.input(TEACHER_IDS, 'int64', [N, topK])], { axis: 1 }); // [N, topK]
  const expected = g.op('ReduceSum', [g.op('Mul', [picked, g.input(TEACHER_PROBS, 'float32', [N, topK])]), g.ints([1])], { keepdims: 0 }); // [N]
  const weights = g.floats(Array.from({ length: N }, (_, i) => lossWeight(i, N)), [N]);
  const loss = g.op('Neg', [g.op('ReduceSum', [g.op('Mul', [expected, weights])], { keepdims: 0 })]);
  const grad = addGradients(g, loss, [GRAPH_INPUTS.embeds]).get(GRAPH_INPUTS.embeds)!;
  g.output(loss, PROMPT_LOSS);
  g.output(grad, PROMPT_GRAD);
  g.output(perToken, STUDENT_LOGITS);
  return g.finish();
}
