/**
 * Plain autoregressive decoding as a token stream: prefill the prompt, then one forward per
 * token. It yields chunks of token ids (here always one token per chunk; tree decoders yield
 * several accepted tokens per step through the same shape), and never stops by itself: the
 * consumer (generate.ts) decides when to stop and simply stops pulling.
 */
import { InputError } from '../errors.ts';
import { KVCache } from '../model/kv-cache.ts';
import { causalBlock, causalMask, maskOverCache, type LlamaModel } from '../model/llama-model.ts';
import type { Sampler } from '../sampling/sampler.ts';

/** Prompts are run in slices of this many rows: attention scores grow with rows x context. */
export const PREFILL_CHUNK = 256;

/** A decoding strategy: from prompt ids to an endless stream of accepted-token chunks. */
export type TokenStream = AsyncGenerator<number[], void, undefined>;

/**
 * Rows that ride along with the last slice of a prompt (PPD's prompt tokens): they see every
 * prompt token, and each other as `visibility` says; nothing sees them, and their keys/values
 * are not kept. Shape legend: R trailing rows, C hidden size.
 */
export interface TrailingRows {
  /** [R, C] */
  embeds: Float32Array;
  /** [R] each row's position minus the prompt's length (0 = the position after the last prompt token). */
  positionOffsets: ArrayLike<number>;
  /** [R, R] 0/1, row-major: which trailing rows each trailing row sees. */
  visibility: Uint8Array;
}

/** Runs `ids` through the model in slices, appending to `cache`; returns the last row's logits ([V]). */
export async function prefill(model: LlamaModel, ids: number[], cache: KVCache): Promise<Float32Array> {
  return (await prefillWith(model, ids, cache)).logits;
}

/**
 * `prefill`, with `trailing` rows added to the forward of the last slice. Returns the last prompt
 * row's logits ([V]) and the trailing rows' ([R, V]; empty without trailing rows).
 */
export async function prefillWith(
  model: LlamaModel,
  ids: number[],
  cache: KVCache,
  trailing?: TrailingRows,
): Promise<{ logits: Float32Array; trailingLogits: Float32Array }> {
  if (ids.length === 0) throw new InputError('the prompt is empty (no tokens to condition on)');
  const { vocabSize: V, hiddenSize: C } = model.config;
  for (let start = 0; ; start += PREFILL_CHUNK) {
    const slice = ids.slice(start, start + PREFILL_CHUNK);
    const last = start + PREFILL_CHUNK >= ids.length;
    const P = cache.length;
    const T = slice.length;
    const R = last && trailing ? trailing.positionOffsets.length : 0;
    let embeds = model.embed(slice);
    const positions = slice.map((_, i) => P + i);
    let block = causalBlock(T);
    if (R > 0) {
      // Real rows then trailing rows; the trailing rows see every real row of the prompt.
      const rows = T + R;
      if (trailing!.embeds.length !== R * C || trailing!.visibility.length !== R * R) {
        throw new InputError(`trailing rows: embeds must hold R*C = ${R}*${C} floats and visibility R*R entries`);
      }
      embeds = concatRows(embeds, trailing!.embeds);
      positions.push(...Array.from(trailing!.positionOffsets, (offset) => P + T + offset));
      block = new Uint8Array(rows * rows);
      for (let t = 0; t < T; t++) block.fill(1, t * rows, t * rows + t + 1);
      for (let a = 0; a < R; a++) {
        block.fill(1, (T + a) * rows, (T + a) * rows + T);
        block.set(trailing!.visibility.subarray(a * R, (a + 1) * R), (T + a) * rows + T);
      }
    }
    const out = await model.forward({ embeds, positions, mask: maskOverCache(block, T + R, P), cache });
    cache.append(out.keys, out.values, R > 0 ? slice.map((_, i) => i) : undefined);
    if (last) return { logits: out.logits.slice((T - 1) * V, T * V), trailingLogits: out.logits.slice(T * V, (T + R) * V) };
  }
}

function concatRows(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
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
