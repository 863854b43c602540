/**
 * Self-distillation data for prompt tokens (PPD.md section 3): prefixes of L tokens ending at
 * random points of a token stream; for each, the frozen base model continues greedily for N+1
 * tokens, and its next-token distributions at the N positions after the first one are the
 * teachers of the N prompt tokens. With `selfGenerated` = G > 0, the last g of a prefix's L
 * tokens (g uniform in 0..G) are the model's own greedy continuation of the text before them, so
 * that training also sees the contexts prompt tokens meet while generating: the model's own text,
 * with its habits (repeats, loops) rather than the corpus's. Teachers are stored compactly as the top-k logits plus the
 * log-normaliser, in one safetensors file cached on disk.
 *
 *   prefixes [M, L]      token ids (stored as F32: exact below 2^24)
 *   greedy   [M, N+1]    the teacher's greedy continuation y1..y(N+1)
 *   topIds   [M, N, K]   ids of the teacher's K most likely tokens for prompt token i
 *   topLogits[M, N, K]   their logits;  logZ [M, N] the log-normaliser of the full row
 */
import { existsSync } from 'node:fs';
import { InputError } from '../errors.ts';
import { openSafetensors } from '../format/file-io.ts';
import { writeSafetensors } from '../format/safetensors-write.ts';
import { newCache, prefill } from '../decode/autoregressive.ts';
import { causalMask, type LlamaModel } from '../model/llama-model.ts';
import { Rng } from '../sampling/rng.ts';
import { argmax, topKIndices } from '../sampling/sampler.ts';

export interface DistillSet {
  prefixLength: number; // L
  promptTokens: number; // N
  topK: number; // K
  count: number; // M
  prefixes: Int32Array;
  greedy: Int32Array;
  topIds: Int32Array;
  topLogits: Float32Array;
  logZ: Float32Array;
}

export interface DistillOptions {
  count: number;
  prefixLength: number;
  promptTokens: number;
  topK: number;
  seed: number;
  /** G: up to this many of a prefix's last tokens are the model's own greedy text (default 0). */
  selfGenerated?: number;
  onProgress?: (done: number, total: number) => void;
}

export function logSumExp(row: Float32Array): number {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  return max + Math.log(sum);
}

/** Builds M teacher examples from random cut points of `stream` with the frozen `model`. */
export async function buildDistillSet(model: LlamaModel, stream: ArrayLike<number>, o: DistillOptions): Promise<DistillSet> {
  const { count: M, prefixLength: L, promptTokens: N, topK: K } = o;
  const G = o.selfGenerated ?? 0;
  if (stream.length < L + 1) throw new InputError(`the token stream (${stream.length}) is shorter than one prefix of ${L}`);
  if (!(Number.isInteger(G) && G >= 0 && G < L)) throw new InputError(`self-generated tokens must be an integer in 0..${L - 1} (below the prefix length), got ${G}`);
  const V = model.config.vocabSize;
  const set: DistillSet = {
    prefixLength: L,
    promptTokens: N,
    topK: K,
    count: M,
    prefixes: new Int32Array(M * L),
    greedy: new Int32Array(M * (N + 1)),
    topIds: new Int32Array(M * N * K),
    topLogits: new Float32Array(M * N * K),
    logZ: new Float32Array(M * N),
  };
  const rng = new Rng(o.seed);
  for (let m = 0; m < M; m++) {
    const start = Math.floor(rng.next() * (stream.length - L + 1));
    // With G = 0 no draw is made, so sets built before selfGenerated existed are reproduced.
    const g = G > 0 ? Math.floor(rng.next() * (G + 1)) : 0;
    const prefix = Array.from({ length: L - g }, (_, t) => stream[start + t]!);
    const cache = newCache(model);
    let logits = await prefill(model, prefix, cache);
    while (prefix.length < L) {
      prefix.push(argmax(logits));
      const P = cache.length;
      const out = await model.forward({ embeds: model.embed([prefix[prefix.length - 1]!]), positions: [P], mask: causalMask(1, P), cache });
      cache.append(out.keys, out.values);
      logits = out.logits.slice(0, V);
    }
    set.prefixes.set(prefix, m * L);
    const greedy = [argmax(logits)];
    // Continue greedily: the row of y(i+1) predicts y(i+2), the teacher of prompt token i.
    for (let i = 0; i < N; i++) {
      const P = cache.length;
      const out = await model.forward({ embeds: model.embed([greedy[i]!]), positions: [P], mask: causalMask(1, P), cache });
      cache.append(out.keys, out.values);
      logits = out.logits.subarray(0, V);
      const top = topKIndices(logits, K);
      top.forEach((id, k) => {
        set.topIds[(m * N + i) * K + k] = id;
        set.topLogits[(m * N + i) * K + k] = logits[id]!;
      });
      set.logZ[m * N + i] = logSumExp(logits);
      greedy.push(top[0]!);
    }
    set.greedy.set(greedy, m * (N + 1));
    o.onProgress?.(m + 1, M);
  }
  return set;
}

const asF32 = (a: Int32Array) => Float32Array.from(a);

export function saveDistillSet(path: string, set: DistillSet): void {
  const { count: M, prefixLength: L, promptTokens: N, topK: K } = set;
  writeSafetensors(
    path,
    [
      { name: 'prefixes', dtype: 'F32', shape: [M, L], data: () => asF32(set.prefixes) },
      { name: 'greedy', dtype: 'F32', shape: [M, N + 1], data: () => asF32(set.greedy) },
      { name: 'topIds', dtype: 'F32', shape: [M, N, K], data: () => asF32(set.topIds) },
      { name: 'topLogits', dtype: 'F32', shape: [M, N, K], data: () => set.topLogits },
      { name: 'logZ', dtype: 'F32', shape: [M, N], data: () => set.logZ },
    ],
    { metadata: { schema: 'ppd.distill/1' } },
  );
}

export function loadDistillSet(path: string): DistillSet | undefined {
  if (!existsSync(path)) return undefined;
  const file = openSafetensors(path);
  try {
    const shape = (name: string) => file.list().find((t) => t.name === name)!.shape;
    const [M, L] = shape('prefixes') as [number, number];
    const [, N, K] = shape('topIds') as [number, number, number];
    const ints = (name: string) => Int32Array.from(file.readF32(name));
    return {
      prefixLength: L,
      promptTokens: N,
      topK: K,
      count: M,
      prefixes: ints('prefixes'),
      greedy: ints('greedy'),
      topIds: ints('topIds'),
      topLogits: file.readF32('topLogits'),
      logZ: file.readF32('logZ'),
    };
  } finally {
    file.close();
  }
}

/**
 * Teacher probabilities of prompt token i of example m over its top-k ids, renormalised to sum to
 * 1: the distillation target is the teacher restricted to its k most likely tokens, so the
 * reported KL (against a student that spreads mass over the whole vocabulary) is never negative.
 */
export function teacherProbabilities(set: DistillSet, m: number, i: number): Float32Array {
  const { promptTokens: N, topK: K } = set;
  const z = set.logZ[m * N + i]!;
  const probs = Float32Array.from(set.topLogits.subarray((m * N + i) * K, (m * N + i + 1) * K), (l) => Math.exp(l - z));
  const mass = probs.reduce((a, b) => a + b, 0);
  return probs.map((p) => p / mass);
}
