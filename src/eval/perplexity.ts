/**
 * Held-out perplexity of any model over a token sequence, with a sliding window for texts longer
 * than the window: each window scores only the tokens no earlier window scored, and every scored
 * token sees up to `window - stride` tokens of context before the window's new part (the
 * standard strided evaluation).
 */
import { InputError } from '../errors.ts';
import { causalMask, type LlamaModel } from '../model/llama-model.ts';
import { newCache } from '../decode/autoregressive.ts';

export interface PerplexityResult {
  /** Tokens scored (all but the first). */
  tokens: number;
  /** Mean negative log-likelihood per scored token, in nats. */
  nll: number;
  perplexity: number;
}

/** log softmax(row)[target], computed stably. */
export function logProbability(logits: Float32Array, offset: number, size: number, target: number): number {
  let max = -Infinity;
  for (let i = 0; i < size; i++) max = Math.max(max, logits[offset + i]!);
  let sum = 0;
  for (let i = 0; i < size; i++) sum += Math.exp(logits[offset + i]! - max);
  return logits[offset + target]! - max - Math.log(sum);
}

export async function perplexity(
  model: LlamaModel,
  ids: readonly number[],
  options: { window: number; stride: number; onProgress?: (scored: number, total: number) => void },
): Promise<PerplexityResult> {
  const { window, stride } = options;
  if (ids.length < 2) throw new InputError('perplexity needs at least two tokens');
  if (!(Number.isInteger(window) && window >= 2 && Number.isInteger(stride) && stride >= 1 && stride <= window)) {
    throw new InputError(`perplexity window ${window} and stride ${stride} must satisfy 2 <= window, 1 <= stride <= window`);
  }
  const V = model.config.vocabSize;
  let total = 0;
  let scoredUpTo = 1; // ids[scoredUpTo..] still to score; ids[0] has no prediction
  for (let start = 0; scoredUpTo < ids.length; start += stride) {
    const end = Math.min(start + window, ids.length);
    const slice = ids.slice(start, end);
    const out = await model.forward({
      embeds: model.embed(slice),
      positions: slice.map((_, i) => i),
      mask: causalMask(slice.length, 0),
      cache: newCache(model),
    });
    for (let target = Math.max(scoredUpTo, start + 1); target < end; target++) {
      total -= logProbability(out.logits, (target - 1 - start) * V, V, ids[target]!);
    }
    scoredUpTo = end;
    options.onProgress?.(scoredUpTo - 1, ids.length - 1);
  }
  const tokens = ids.length - 1;
  return { tokens, nll: total / tokens, perplexity: Math.exp(total / tokens) };
}
