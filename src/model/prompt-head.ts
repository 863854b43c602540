/**
 * The prompt head: an optional part of a PPD adapter that maps the final hidden state of each
 * prompt-token row through a residual block of its own before the shared LM head,
 * h + SiLU(h·W_i + b_i) for prompt token i (the block Medusa puts before its heads). It gives
 * the guesses of a few input embeddings pushed through a small frozen model more reach
 * (docs/PROMPT-TOKENS.md). Initialised to zero, it starts as the identity.
 *
 * Shape legend: N prompt tokens, C hidden size, R rows.
 *
 *   weight [N, C, C] (row-vector convention: h [1, C] · W_i [C, C]), bias [N, C]
 */
import type { GraphBuilder } from '../graph/builder.ts';

export const PROMPT_HEAD_WEIGHT = 'prompt_head.weight';
export const PROMPT_HEAD_BIAS = 'prompt_head.bias';

/**
 * The head applied to hidden states grouped by prompt token: `grouped` [N, R', C] (every row of
 * group i belongs to prompt token i), `weight` [N, C, C], `bias` [N, C]. Returns [N, R', C].
 */
export function promptHeadOnGroups(g: GraphBuilder, grouped: string, weight: string, bias: string, N: number, C: number): string {
  const pre = g.op('Add', [g.op('MatMul', [grouped, weight]), g.op('Reshape', [bias, g.ints([N, 1, C])])]);
  return g.op('Add', [grouped, g.op('Mul', [pre, g.op('Sigmoid', [pre])])]);
}

/** The inference graph's inputs for a prompt head (graphs compiled with one; llama-graph.ts). */
export const PROMPT_HEAD_INPUTS = { weights: 'prompt_head_weights', bias: 'prompt_head_bias', select: 'prompt_head_select' } as const;

/**
 * A prompt head laid out for the inference graph, made once per adapter: weights [C, N·C] (block
 * i in columns i·C .. i·C+C-1, so one product serves every prompt token) and bias [N, C].
 */
export interface PromptHeadFeeds {
  promptTokens: number;
  weights: Float32Array;
  bias: Float32Array;
}

/** Lays out an adapter's head, weight [N, C, C] and bias [N, C], for the inference graph. */
export function promptHeadFeeds(weight: Float32Array, bias: Float32Array, N: number, C: number): PromptHeadFeeds {
  const weights = new Float32Array(C * N * C);
  for (let i = 0; i < N; i++) {
    for (let c = 0; c < C; c++) weights.set(weight.subarray((i * C + c) * C, (i * C + c + 1) * C), c * N * C + i * C);
  }
  return { promptTokens: N, weights, bias: Float32Array.from(bias) };
}

/**
 * The head on any rows: `hidden` [T, C], `select` [T, N] (row t's one-hot prompt token, or all
 * zero for a row that is no prompt token's), `weights` [C, N·C], `bias` [N, C]. A row with an
 * all-zero select gets h + SiLU(0) = h exactly, so token rows are untouched.
 */
export function promptHeadOnRows(g: GraphBuilder, hidden: string, select: string, weights: string, bias: string, N: number, C: number): string {
  const perToken = g.op('Reshape', [g.op('MatMul', [hidden, weights]), g.ints([-1, N, C])]); // [T, N, C]
  const chosen = g.op('ReduceSum', [g.op('Mul', [perToken, g.op('Unsqueeze', [select, g.ints([2])])]), g.ints([1])], { keepdims: 0 }); // [T, C]
  const pre = g.op('Add', [chosen, g.op('MatMul', [select, bias])]);
  return g.op('Add', [hidden, g.op('Mul', [pre, g.op('Sigmoid', [pre])])]);
}
