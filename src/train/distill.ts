/**
 * Self-distillation data for prompt tokens (PPD.md section 3), as teacher SEQUENCES: each is L0
 * tokens of text (a random run of one document of the token stream) followed by G tokens of the
 * frozen base model's own greedy continuation, with the model's next-token distribution at every
 * row of the continuation kept as a teacher (top-k logits plus the log-normaliser).
 *
 * Because greedy decoding is deterministic, the rest of such a sequence after ANY cut inside the
 * continuation is exactly the model's greedy continuation from that cut. So every cut L0+j
 * (j = 0..G-N-1) is a distillation example: prompt token i after the first L0+j tokens learns the
 * teacher at row L0+j+i (which predicts token L0+j+i+1). One sequence gives G-N examples, and
 * they are the contexts prompt tokens meet while decoding: text followed by the model's own.
 *
 *   tokens    [M, S]        S = L0 + G token ids (stored as F32: exact below 2^24)
 *   topIds    [M, G-1, K]   the teacher's K most likely tokens at rows L0 .. S-2
 *   topLogits [M, G-1, K]   their logits;  logZ [M, G-1] the log-normaliser of the full row
 */
import { existsSync } from 'node:fs';
import { InputError } from '../errors.ts';
import { openSafetensors } from '../format/file-io.ts';
import { writeSafetensors } from '../format/safetensors-write.ts';
import { newCache, prefill } from '../decode/autoregressive.ts';
import { causalMask, type LlamaModel } from '../model/llama-model.ts';
import { Rng } from '../sampling/rng.ts';
import { argmax, topKIndices } from '../sampling/sampler.ts';

export interface TeacherSequences {
  prefixLength: number; // L0
  generated: number; // G
  topK: number; // K
  count: number; // M sequences
  tokens: Int32Array;
  topIds: Int32Array;
  topLogits: Float32Array;
  logZ: Float32Array;
}

export interface TeacherOptions {
  count: number;
  prefixLength: number;
  generated: number;
  topK: number;
  seed: number;
  /** Tokens that end a document: no text prefix crosses one, no kept continuation produces one. */
  eosIds: readonly number[];
  onProgress?: (done: number, total: number) => void;
}

export const sequenceLength = (set: Pick<TeacherSequences, 'prefixLength' | 'generated'>) => set.prefixLength + set.generated;

export function logSumExp(row: Float32Array): number {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  return max + Math.log(sum);
}

/** Draws this many starts in a row before giving up on finding a prefix that stays in one document. */
const MAX_DRAWS = 1000;

/** Builds `count` teacher sequences from random text prefixes of `stream` with the frozen `model`. */
export async function buildTeacherSequences(model: LlamaModel, stream: ArrayLike<number>, o: TeacherOptions): Promise<TeacherSequences> {
  const { count: M, prefixLength: L0, generated: G, topK: K } = o;
  const S = L0 + G;
  if (!(Number.isInteger(L0) && L0 >= 1)) throw new InputError(`the text prefix must be a positive number of tokens, got ${L0}`);
  if (!(Number.isInteger(G) && G >= 2)) throw new InputError(`the generated continuation must be at least 2 tokens, got ${G}`);
  if (S > model.config.maxPositionEmbeddings) throw new InputError(`a teacher sequence of ${S} tokens is longer than the model's context (${model.config.maxPositionEmbeddings})`);
  if (stream.length < L0 + 1) throw new InputError(`the token stream (${stream.length}) is shorter than one prefix of ${L0}`);
  const V = model.config.vocabSize;
  const eos = new Set(o.eosIds);
  const set: TeacherSequences = {
    prefixLength: L0,
    generated: G,
    topK: K,
    count: M,
    tokens: new Int32Array(M * S),
    topIds: new Int32Array(M * (G - 1) * K),
    topLogits: new Float32Array(M * (G - 1) * K),
    logZ: new Float32Array(M * (G - 1)),
  };
  const rng = new Rng(o.seed);
  const drawPrefix = (): number[] => {
    for (let draw = 0; draw < MAX_DRAWS; draw++) {
      const start = Math.floor(rng.next() * (stream.length - L0 + 1));
      const prefix = Array.from({ length: L0 }, (_, t) => stream[start + t]!);
      if (!prefix.some((id) => eos.has(id))) return prefix;
    }
    throw new InputError(`no run of ${L0} tokens without an end of document in ${MAX_DRAWS} draws: the documents are too short for this prefix length`);
  };
  for (let m = 0; m < M; ) {
    const tokens = drawPrefix();
    const cache = newCache(model);
    let logits = await prefill(model, tokens, cache);
    tokens.push(argmax(logits));
    const rows: { ids: number[]; logits: number[]; logZ: number }[] = [];
    // Row r (r = L0 .. S-2) holds token r; its logits predict token r+1, which greedy decoding takes.
    while (tokens.length < S && !eos.has(tokens.at(-1)!)) {
      const P = cache.length;
      const out = await model.forward({ embeds: model.embed([tokens.at(-1)!]), positions: [P], mask: causalMask(1, P), cache });
      cache.append(out.keys, out.values);
      logits = out.logits.subarray(0, V);
      const top = topKIndices(logits, K);
      rows.push({ ids: top, logits: top.map((id) => logits[id]!), logZ: logSumExp(logits) });
      tokens.push(top[0]!);
    }
    // A continuation that ends its document is not what decoding continues from: draw again.
    if (tokens.length < S || eos.has(tokens.at(-1)!)) continue;
    set.tokens.set(tokens, m * S);
    rows.forEach((row, r) => {
      set.topIds.set(row.ids, (m * (G - 1) + r) * K);
      set.topLogits.set(row.logits, (m * (G - 1) + r) * K);
      set.logZ[m * (G - 1) + r] = row.logZ;
    });
    m++;
    o.onProgress?.(m, M);
  }
  return set;
}

const asF32 = (a: Int32Array) => Float32Array.from(a);
const SCHEMA = 'ppd.teacher-sequences/1';

export function saveTeacherSequences(path: string, set: TeacherSequences): void {
  const { count: M, topK: K, generated: G } = set;
  const S = sequenceLength(set);
  writeSafetensors(
    path,
    [
      { name: 'tokens', dtype: 'F32', shape: [M, S], data: () => asF32(set.tokens) },
      { name: 'topIds', dtype: 'F32', shape: [M, G - 1, K], data: () => asF32(set.topIds) },
      { name: 'topLogits', dtype: 'F32', shape: [M, G - 1, K], data: () => set.topLogits },
      { name: 'logZ', dtype: 'F32', shape: [M, G - 1], data: () => set.logZ },
    ],
    { metadata: { schema: SCHEMA, prefixLength: String(set.prefixLength) } },
  );
}

/** The set saved at `path`, or undefined when there is none (or one in an older format). */
export function loadTeacherSequences(path: string): TeacherSequences | undefined {
  if (!existsSync(path)) return undefined;
  const file = openSafetensors(path);
  try {
    if (!file.list().some((t) => t.name === 'tokens')) return undefined; // an older format: rebuild
    const shape = (name: string) => file.list().find((t) => t.name === name)!.shape;
    const [M, S] = shape('tokens') as [number, number];
    const [, rows, K] = shape('topIds') as [number, number, number];
    const ints = (name: string) => Int32Array.from(file.readF32(name));
    return {
      prefixLength: S - (rows + 1),
      generated: rows + 1,
      topK: K,
      count: M,
      tokens: ints('tokens'),
      topIds: ints('topIds'),
      topLogits: file.readF32('topLogits'),
      logZ: file.readF32('logZ'),
    };
  } finally {
    file.close();
  }
}

/** The token ids of sequence m [S]. */
export function sequenceTokens(set: TeacherSequences, m: number): Int32Array {
  const S = sequenceLength(set);
  return set.tokens.subarray(m * S, (m + 1) * S);
}

/**
 * The teacher at row L0 + r of sequence m (r = 0 .. G-2) over its top-k ids, renormalised to sum
 * to 1: the distillation target is the teacher restricted to its k most likely tokens, so the
 * reported KL (against a student that spreads mass over the whole vocabulary) is never negative.
 */
export function teacherProbabilities(set: TeacherSequences, m: number, r: number): Float32Array {
  const { topK: K, generated: G } = set;
  const row = m * (G - 1) + r;
  const z = set.logZ[row]!;
  const probs = Float32Array.from(set.topLogits.subarray(row * K, (row + 1) * K), (l) => Math.exp(l - z));
  const mass = probs.reduce((a, b) => a + b, 0);
  return probs.map((p) => p / mass);
}

/** The teacher's top-k ids at row L0 + r of sequence m. */
export function teacherIds(set: TeacherSequences, m: number, r: number): Int32Array {
  const { topK: K, generated: G } = set;
  const row = m * (G - 1) + r;
  return set.topIds.subarray(row * K, (row + 1) * K);
}
