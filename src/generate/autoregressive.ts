/**
 * Plain autoregressive decoding as a token stream: prefill the prompt, then one forward per
 * token. It yields chunks of token ids (here always one token per chunk; tree decoders yield
 * several accepted tokens per step through the same shape), and never stops by itself: the
 * consumer (generate.ts) decides when to stop and simply stops pulling.
 */
import { InputError } from '../errors.ts';
import { KVCache } from '../model/kv-cache.ts';
import { causalMask, type LlamaModel } from '../model/llama-model.ts';
import type { Sampler } from '../sampling/sampler.ts';

/** Prompts are run in slices of this many rows: attention scores grow with rows x context. */
export const PREFILL_CHUNK = 256;

/** A decoding strategy: from prompt ids to an endless stream of accepted-token chunks. */
export type TokenStream = AsyncGenerator<number[], void, undefined>;

/** Runs `ids` through the model in slices, appending to `cache`; returns the last row's logits. */
export async function prefill(model: LlamaModel, ids: number[], cache: KVCache): Promise<Float32Array> {
  if (ids.length === 0) throw new InputError('the prompt is empty (no tokens to condition on)');
  const V = model.config.vocabSize;
  let last = new Float32Array(V);
  for (let start = 0; start < ids.length; start += PREFILL_CHUNK) {
    const slice = ids.slice(start, start + PREFILL_CHUNK);
    const P = cache.length;
    const out = await model.forward({
      embeds: model.embed(slice),
      positions: slice.map((_, i) => P + i),
      mask: causalMask(slice.length, P),
      cache,
    });
    cache.append(out.keys, out.values);
    last = out.logits.slice((slice.length - 1) * V, slice.length * V);
  }
  return last;
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
