/**
 * The prompt head: an optional part of a PPD adapter that maps the final hidden state of each
 * prompt-token row through a residual block of its own before the shared LM head,
 * h + SiLU(h·W_i + b_i) for prompt token i (the block Medusa puts before its heads). It gives
 * the guesses of a few input embeddings pushed through a small frozen model more reach
 * (docs/PROMPT-TOKENS.md). Initialised to zero, it starts as the identity.
 *
 * The 'residual-parent' kind also reads the final hidden state h_p of the prompt row's parent:
 * the token row the prompt tokens follow (the tree node they are attached to, or the prompt's
 * last token), whose logits give the next token. That is the state Medusa's heads read, so the
 * block becomes h + SiLU(h·W_i + h_p·U_i + b_i): the prompt row's view of the context and the
 * model's own next-token state together.
 *
 * Shape legend: N prompt tokens, C hidden size, R rows.
 *
 *   weight [N, C, C] (row-vector convention: h [1, C] · W_i [C, C]), bias [N, C],
 *   parent weight [N, C, C] ('residual-parent' only; U_i)
 */
import type { GraphBuilder } from '../graph/builder.ts';

export const PROMPT_HEAD_WEIGHT = 'prompt_head.weight';
export const PROMPT_HEAD_BIAS = 'prompt_head.bias';
export const PROMPT_HEAD_PARENT_WEIGHT = 'prompt_head.parent_weight';

/** The kinds of prompt head: the residual block alone, or with the parent row's state as a second input. */
export const PROMPT_HEAD_KINDS = ['residual', 'residual-parent'] as const;
export type PromptHeadKind = (typeof PROMPT_HEAD_KINDS)[number];

/**
 * The head applied to hidden states grouped by prompt token: `grouped` [N, R', C] (every row of
 * group i belongs to prompt token i), `weight` [N, C, C], `bias` [N, C], and for a
 * 'residual-parent' head `parent`: the parents' states [N, R', C] (row r's parent state for each
 * group) with `parentWeight` [N, C, C]. Returns [N, R', C].
 */
export function promptHeadOnGroups(g: GraphBuilder, grouped: string, weight: string, bias: string, N: number, C: number, parent?: { states: string; weight: string }): string {
  let pre = g.op('Add', [g.op('MatMul', [grouped, weight]), g.op('Reshape', [bias, g.ints([N, 1, C])])]);
  if (parent) pre = g.op('Add', [pre, g.op('MatMul', [parent.states, parent.weight])]);
  return g.op('Add', [grouped, g.op('Mul', [pre, g.op('Sigmoid', [pre])])]);
}

/** The inference graph's inputs for a prompt head (graphs compiled with one; llama-graph.ts). */
export const PROMPT_HEAD_INPUTS = { weights: 'prompt_head_weights', bias: 'prompt_head_bias', select: 'prompt_head_select', parents: 'prompt_head_parents' } as const;

/**
 * A prompt head laid out for the inference graph, made once per adapter: weights [2C, N·C], the
 * rows of W (rows 0..C-1) over those of U (rows C..2C-1, zero for a 'residual' head), block i in
 * columns i·C .. i·C+C-1, so one product of [h, h_p] serves every prompt token; bias [N, C].
 */
export interface PromptHeadFeeds {
  promptTokens: number;
  weights: Float32Array;
  bias: Float32Array;
}

/** Lays out an adapter's head, weight [N, C, C], bias [N, C] and parent weight [N, C, C] when it has one, for the inference graph. */
export function promptHeadFeeds(weight: Float32Array, bias: Float32Array, N: number, C: number, parentWeight?: Float32Array): PromptHeadFeeds {
  const weights = new Float32Array(2 * C * N * C);
  const place = (w: Float32Array, firstRow: number) => {
    for (let i = 0; i < N; i++) {
      for (let c = 0; c < C; c++) weights.set(w.subarray((i * C + c) * C, (i * C + c + 1) * C), (firstRow + c) * N * C + i * C);
    }
  };
  place(weight, 0);
  if (parentWeight) place(parentWeight, C);
  return { promptTokens: N, weights, bias: Float32Array.from(bias) };
}

/**
 * The head on any rows: `hidden` [T, C], `select` [T, N] (row t's one-hot prompt token, or all
 * zero for a row that is no prompt token's), `parents` [T] i64 (row t's parent among the T rows;
 * any row for a row that is no prompt token's), `weights` [2C, N·C], `bias` [N, C]. A row with an
 * all-zero select gets h + SiLU(0) = h exactly, so token rows are untouched.
 */
export function promptHeadOnRows(g: GraphBuilder, hidden: string, select: string, parents: string, weights: string, bias: string, N: number, C: number): string {
  const both = g.op('Concat', [hidden, g.op('Gather', [hidden, parents], { axis: 0 })], { axis: 1 }); // [T, 2C]
  const perToken = g.op('Reshape', [g.op('MatMul', [both, weights]), g.ints([-1, N, C])]); // [T, N, C]
  const chosen = g.op('ReduceSum', [g.op('Mul', [perToken, g.op('Unsqueeze', [select, g.ints([2])])]), g.ints([1])], { keepdims: 0 }); // [T, C]
  const pre = g.op('Add', [chosen, g.op('MatMul', [select, bias])]);
  return g.op('Add', [hidden, g.op('Mul', [pre, g.op('Sigmoid', [pre])])]);
}
