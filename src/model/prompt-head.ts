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
