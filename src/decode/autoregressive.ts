/**
 * Plain autoregressive decoding as a token stream: prefill the prompt, then one forward per
 * token. It yields chunks of token ids (here always one token per chunk; tree decoders yield
 * several accepted tokens per step through the same shape), and never stops by itself: the
 * consumer (generate.ts) decides when to stop and simply stops pulling.
 */
import { KVCache, type SequenceCache } from '../model/kv-cache.ts';
import { causalMask, type LlamaModel } from '../model/llama-model.ts';
import type { Sampler } from '../sampling/sampler.ts';
import { forwardRows, prefillChunk, type TrailingRows } from './rows.ts';

/** A decoding strategy: from prompt ids to an endless stream of accepted-token chunks. */
export type TokenStream = AsyncGenerator<number[], void, undefined>;

/** Runs `ids` through the model in slices, appending to `cache`; returns the last row's logits ([V]). */
export async function prefill(model: LlamaModel, ids: number[], cache: SequenceCache): Promise<Float32Array> {
  return (await prefillWith(model, ids, cache)).logits;
}

/**
 * `prefill`, with `trailing` rows added to the forward of the last slice. Returns the last prompt
 * row's logits ([V]) and the trailing rows' ([R, V]; empty without trailing rows).
 */
export async function prefillWith(
  model: LlamaModel,
  ids: number[],
  cache: SequenceCache,
  trailing?: TrailingRows,
): Promise<{ logits: Float32Array; trailingLogits: Float32Array }> {
  const V = model.config.vocabSize;
  for (let start = 0; ; ) {
    const chunk = prefillChunk(model, ids, start, trailing);
    const out = await forwardRows(model, cache, chunk.rows);
    const T = chunk.promptRows;
    cache.append(out.keys, out.values, chunk.rows.positionOffsets.length > T ? Array.from({ length: T }, (_, i) => i) : undefined);
    if (chunk.last) return { logits: out.logits.slice((T - 1) * V, T * V), trailingLogits: out.logits.slice(T * V) };
    start = chunk.end;
  }
}

export function newCache(model: LlamaModel): KVCache {
  const c = model.config;
  return new KVCache(c.numLayers, c.numKvHeads, c.headDim, 256);
}

/** One token per forward, each chosen by `sampler` from the previous row's logits. */
export async function* autoregressive(model: LlamaModel, promptIds: number[], sampler: Sampler): TokenStream {
  const cache = newCache(model);
  let logits = await prefill(model, promptIds, cache);
  for (;;) {
    const token = sampler.sample(logits);
    yield [token];
    const P = cache.length;
    const out = await model.forward({ embeds: model.embed([token]), positions: [P], mask: causalMask(1, P), cache });
    cache.append(out.keys, out.values);
    logits = out.logits;
  }
}
