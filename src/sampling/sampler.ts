/**
 * Sampling: from one position's logits to the next token id.
 *
 * Split into pure pieces so each can be tested and reused on its own: `toProbabilities` (the
 * filtered distribution a sampler draws from, also what distribution-preserving speculative
 * verification compares against; `toProbabilitiesNaive` is its plain reference, for the tests),
 * `sampleFrom` / `sampleAt` (one draw), `argmax` (greedy). `Sampler` just composes them with a
 * seeded Rng.
 * Not logits processors that look at history (repetition penalty), and not stopping
 * (generate/stop.ts).
 *
 * Shapes: logits and probabilities are Float32Array[V], V = vocabulary size.
 */
import { InputError, ModelError } from '../errors.ts';
import { Rng } from './rng.ts';

export interface SamplingOptions {
  /** Divides logits before softmax; 0 means greedy (argmax). Default 1. */
  temperature: number;
  /** Keep only tokens whose logit is >= the k-th largest (ties kept); 0 disables. Default 0. */
  topK: number;
  /** Keep the smallest most-likely set whose mass reaches topP; 1 disables. Default 1. */
  topP: number;
  /** Seed of the sampler's Rng. Default 0. */
  seed: number;
}

export const DEFAULT_SAMPLING: Readonly<SamplingOptions> = { temperature: 1, topK: 0, topP: 1, seed: 0 };

/** Fills defaults and validates; InputError names the bad option and its value. */
export function samplingOptions(partial: Partial<SamplingOptions> = {}): SamplingOptions {
  const o = { ...DEFAULT_SAMPLING, ...partial };
  if (!(Number.isFinite(o.temperature) && o.temperature >= 0)) {
    throw new InputError(`sampling option temperature must be a finite number >= 0, got ${o.temperature}`);
  }
  if (!(Number.isInteger(o.topK) && o.topK >= 0)) {
    throw new InputError(`sampling option topK must be an integer >= 0 (0 disables), got ${o.topK}`);
  }
  if (!(o.topP > 0 && o.topP <= 1)) {
    throw new InputError(`sampling option topP must be in (0, 1] (1 disables), got ${o.topP}`);
  }
  if (!Number.isSafeInteger(o.seed)) {
    throw new InputError(`sampling option seed must be a safe integer, got ${o.seed}`);
  }
  return o;
}

/** Index of the largest logit; ties go to the lowest index so greedy decoding is deterministic. */
export function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) {
    if (logits[i] > logits[best]) best = i;
  }
  return best;
}

/** Indices of the k largest values of row, largest first (ties: lower index first). */
export function topKIndices(row: Float32Array, k: number): number[] {
  const picked: number[] = [];
  for (let i = 0; i < row.length; i++) {
    if (picked.length < k || row[i]! > row[picked[picked.length - 1]!]!) {
      let at = picked.length < k ? picked.length : k - 1;
      picked[at] = i;
      while (at > 0 && row[picked[at - 1]!]! < row[i]!) {
        picked[at] = picked[at - 1]!;
        picked[--at] = i;
      }
    }
  }
  return picked;
}

/**
 * The distribution a sampler with these options draws from, over the whole vocabulary:
 * softmax(logits / temperature), then top-k, then top-p, renormalised. Temperature 0 gives the
 * one-hot vector at argmax (the limit as temperature -> 0). Filtered tokens get exactly 0.
 * Pure: `logits` is not modified.
 *
 * Bit-for-bit the result of `toProbabilitiesNaive`, but O(V) plus a sort of the nucleus only:
 * it runs once per sampled token and once per tree node in speculative verification, where a
 * full sort of the vocabulary cost as much as the model's forward.
 */
export function toProbabilities(logits: Float32Array, options: SamplingOptions): Float32Array {
  const V = logits.length;
  if (V === 0) throw new ModelError('logits are empty');
  const best = checkedArgmax(logits);
  const max = logits[best];
  if (options.temperature === 0 || max === -Infinity) {
    const oneHot = new Float32Array(V);
    oneHot[best] = 1;
    return oneHot;
  }
  const kth = options.topK > 0 && options.topK < V ? kthLargest(logits, options.topK) : -Infinity;
  const weights = softmaxWeights(logits, max, options.temperature, kth);
  if (options.topP < 1) applyTopP(weights, options.topP);
  return normalised(weights);
}

/**
 * exp((logit - max) / T) in float64 for every logit >= kth, else 0: the naive version's
 * weights after top-k (see there for why float64 and why divide by T), without computing the
 * exp() of tokens top-k drops. Float64Array[V].
 */
function softmaxWeights(logits: Float32Array, max: number, T: number, kth: number): Float64Array {
  const weights = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) {
    if (logits[i] >= kth) weights[i] = Math.exp((logits[i] - max) / T);
  }
  return weights;
}

/** weights / their sum (taken in index order), as Float32Array[V]. */
function normalised(weights: Float64Array): Float32Array {
  let sum = 0;
  for (let i = 0; i < weights.length; i++) sum += weights[i];
  const probs = new Float32Array(weights.length);
  for (let i = 0; i < weights.length; i++) probs[i] = weights[i] / sum;
  return probs;
}

/** `argmax`, throwing ModelError at the first NaN or +Infinity logit: one pass for both. */
function checkedArgmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 0; i < logits.length; i++) {
    const x = logits[i];
    if (Number.isNaN(x) || x === Infinity) {
      throw new ModelError(`logits[${i}] is ${x}; the model produced non-finite output`);
    }
    if (x > logits[best]) best = i;
  }
  return best;
}

/**
 * The k-th largest value (1-based) of `values`, by radix select: O(V), no sort. Float32 bits
 * with the sign bit flipped (all bits for negatives) order like the values, -Infinity
 * included, so three histogram passes over 11 + 11 + 10 bits of that key find the k-th
 * largest key one digit at a time, narrowing to the values that share the digits found.
 */
function kthLargest(values: Float32Array, k: number): number {
  const keys = new Uint32Array(Float32Array.from(values).buffer); // [V], reused in place
  for (let i = 0; i < keys.length; i++) keys[i] = keys[i] & 0x80000000 ? ~keys[i] : keys[i] | 0x80000000;
  let prefix = 0; // the digits found so far, at their bit positions
  let rank = k; // rank of the wanted key among those matching the prefix, from the top
  for (const [shift, bits] of [[21, 11], [10, 11], [0, 10]]) {
    const counts = new Int32Array(1 << bits);
    const above = shift + bits === 32 ? 0 : ~0 << (shift + bits); // mask of the digits found
    for (let i = 0; i < keys.length; i++) {
      if ((keys[i] & above) === (prefix & above)) counts[(keys[i] >>> shift) & ((1 << bits) - 1)]++;
    }
    let digit = counts.length - 1;
    while (rank > counts[digit]) rank -= counts[digit--];
    prefix |= digit << shift;
  }
  const key = prefix >>> 0;
  const bits = Uint32Array.of(key & 0x80000000 ? key & 0x7fffffff : ~key);
  return new Float32Array(bits.buffer)[0];
}

/**
 * Keys for top-p. A positive float64 is ordered like its bit pattern, so the top bits of its
 * high 32-bit word never rank a smaller weight above a larger one. `hi >>> 12` (exponent and 8
 * mantissa bits) gives buckets 2^(1/256) wide, counted from 2^-64 (bucket 0, which also holds
 * every smaller weight) up to 1, the max logit's weight; 16 buckets make a band 2^(1/16) wide.
 */
const BUCKET_SHIFT = 12;
const BUCKET_FLOOR = (0x3ff - 64) << 8; // hi >>> 12 of 2^-64
const BAND_BUCKETS = 16;
const BANDS = ((0x3ff << 8) - BUCKET_FLOOR) / BAND_BUCKETS + 1; // 1025; the last holds only 1
const HIGH_WORD = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1 ? 1 : 0; // little-endian: [lo, hi]

/** The bucket of a positive weight, from the high word of its float64. */
function bucketOf(highWord: number): number {
  const b = (highWord >>> BUCKET_SHIFT) - BUCKET_FLOOR;
  return b > 0 ? b : 0;
}

/** The smallest weight in a band; 0 for band 0, which holds every weight below 2^-64. */
function bandFloor(band: number): number {
  if (band === 0) return 0;
  const words = new Uint32Array(2);
  words[HIGH_WORD] = (band * BAND_BUCKETS + BUCKET_FLOOR) << BUCKET_SHIFT;
  return new Float64Array(words.buffer)[0];
}

/**
 * `applyTopPNaive` without sorting the vocabulary. The naive walk takes tokens most likely
 * first and stops once the mass taken reaches topP * total; float64 sums depend on order, so
 * the walk must see the same order, but only as far as it goes, and the tokens of the highest
 * bands come first in it. So: histogram the mass per band, take the highest bands whose
 * estimated mass reaches the limit, order just their tokens and walk them as the naive version
 * does. Should rounding leave the exact walk short of the limit, walk all the bands left (the
 * naive walk then may well take every token: once the mass is large, tiny weights no longer
 * move it). Every token below the bands walked is outside the nucleus.
 */
function applyTopP(weights: Float64Array, topP: number): void {
  const { total, bandMass } = bandHistogram(weights);
  const limit = topP * total;
  let bottom = BANDS;
  let estimate = 0;
  do estimate += bandMass[--bottom];
  while (bottom > 0 && estimate < limit);
  const cutoff = bandFloor(bottom);
  const mass = walkNucleus(weights, nucleusOrder(weights, cutoff, Infinity), limit, 0);
  if (mass < limit && cutoff > 0) walkNucleus(weights, nucleusOrder(weights, 0, cutoff), limit, mass);
  else zeroBelow(weights, cutoff);
}

/** The sum of the weights (in index order, as the naive version takes it) and of each band. */
function bandHistogram(weights: Float64Array): { total: number; bandMass: Float64Array } {
  const words = new Uint32Array(weights.buffer, weights.byteOffset, 2 * weights.length); // [V, 2] float64 halves
  const bandMass = new Float64Array(BANDS);
  let total = 0;
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i];
    if (w > 0) {
      total += w;
      bandMass[(bucketOf(words[2 * i + HIGH_WORD]) / BAND_BUCKETS) | 0] += w;
    }
  }
  return { total, bandMass };
}

/**
 * The naive walk over `order` (a stretch of the nucleus order), from `mass` taken so far: keeps
 * each token while the mass taken is < limit, zeroes the rest. Returns the mass taken.
 */
function walkNucleus(weights: Float64Array, order: Int32Array, limit: number, mass: number): number {
  for (const i of order) {
    if (mass < limit) mass += weights[i];
    else weights[i] = 0;
  }
  return mass;
}

/** Zeroes every weight below `cutoff`. */
function zeroBelow(weights: Float64Array, cutoff: number): void {
  for (let i = 0; i < weights.length; i++) if (weights[i] < cutoff) weights[i] = 0;
}

/**
 * The tokens whose weight is in [lo, hi) and > 0, most likely first, ties by lower index. A
 * stable counting sort by bucket leaves only neighbours within a bucket out of order, which an
 * insertion sort fixes in about one move per token; should many distinct weights share a
 * bucket (near-tied logits), it gives up and sorts outright.
 */
function nucleusOrder(weights: Float64Array, lo: number, hi: number): Int32Array {
  const words = new Uint32Array(weights.buffer, weights.byteOffset, 2 * weights.length);
  const tokens: number[] = [];
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i];
    if (w >= lo && w < hi && w > 0) tokens.push(i);
  }
  const n = tokens.length;
  if (n === 0) return new Int32Array(0);
  const buckets = new Int32Array(n); // [n]
  let top = 0;
  let bottom = Infinity;
  for (let j = 0; j < n; j++) {
    buckets[j] = bucketOf(words[2 * tokens[j] + HIGH_WORD]);
    top = Math.max(top, buckets[j]);
    bottom = Math.min(bottom, buckets[j]);
  }
  const starts = new Int32Array(top - bottom + 2); // [buckets + 1], by rank of bucket from the top
  for (let j = 0; j < n; j++) starts[top + 1 - buckets[j]]++;
  for (let r = 1; r < starts.length; r++) starts[r] += starts[r - 1];
  const order = new Int32Array(n);
  for (let j = 0; j < n; j++) order[starts[top - buckets[j]]++] = tokens[j];

  let moves = 0;
  for (let j = 1; j < n; j++) {
    const x = order[j];
    let m = j;
    while (m > 0 && weights[order[m - 1]] < weights[x]) {
      order[m] = order[m - 1];
      m--;
    }
    order[m] = x;
    moves += j - m;
    if (moves > 8 * n) return order.sort((a, b) => weights[b] - weights[a] || a - b);
  }
  return order;
}

/**
 * Reference for `toProbabilities`: the same result computed the plain way, with full sorts.
 * Kept for the equivalence tests; not used at run time.
 */
export function toProbabilitiesNaive(logits: Float32Array, options: SamplingOptions): Float32Array {
  const V = logits.length;
  const probs = new Float32Array(V);
  if (V === 0) throw new ModelError('logits are empty');
  for (let i = 0; i < V; i++) {
    if (Number.isNaN(logits[i]) || logits[i] === Infinity) {
      throw new ModelError(`logits[${i}] is ${logits[i]}; the model produced non-finite output`);
    }
  }
  const best = argmax(logits);
  const max = logits[best];
  if (options.temperature === 0 || max === -Infinity) {
    probs[best] = 1;
    return probs;
  }

  // Softmax in float64 with the max subtracted, so large logits or small temperatures cannot
  // overflow exp(). Dividing (not multiplying by 1/T) keeps the max at exactly exp(0) = 1 even
  // for a temperature so small that 1/T is Infinity.
  const weights = new Float64Array(V);
  const T = options.temperature;
  for (let i = 0; i < V; i++) weights[i] = Math.exp((logits[i] - max) / T);

  if (options.topK > 0 && options.topK < V) {
    const kth = Float32Array.from(logits).sort()[V - options.topK];
    for (let i = 0; i < V; i++) if (logits[i] < kth) weights[i] = 0;
  }
  if (options.topP < 1) applyTopPNaive(weights, options.topP);

  let sum = 0;
  for (let i = 0; i < V; i++) sum += weights[i];
  for (let i = 0; i < V; i++) probs[i] = weights[i] / sum;
  return probs;
}

/**
 * Zeroes every weight outside the nucleus: tokens are taken most likely first (ties by lower
 * index) while the mass taken before each is < topP, so the token that crosses topP is kept and
 * at least one token always is.
 */
function applyTopPNaive(weights: Float64Array, topP: number): void {
  let total = 0;
  const candidates: number[] = [];
  for (let i = 0; i < weights.length; i++) {
    if (weights[i] > 0) {
      candidates.push(i);
      total += weights[i];
    }
  }
  candidates.sort((a, b) => weights[b] - weights[a] || a - b);
  const limit = topP * total;
  let mass = 0;
  let kept = 0;
  while (kept < candidates.length && mass < limit) mass += weights[candidates[kept++]];
  for (let j = kept; j < candidates.length; j++) weights[candidates[j]] = 0;
}

/**
 * One draw from `probs` (need not sum to exactly 1; non-negative). Inverse-CDF walk in index
 * order; a uniform draw that lands past the rounded total picks the last token with mass.
 */
export function sampleFrom(probs: Float32Array, rng: Rng): number {
  return sampleAt(probs, rng.next());
}

/** `sampleFrom` with its uniform number `uniform` in [0, 1) given: the token the inverse CDF maps it to. */
export function sampleAt(probs: Float32Array, uniform: number): number {
  let total = 0;
  for (let i = 0; i < probs.length; i++) total += probs[i];
  if (!(total > 0)) throw new ModelError('cannot sample: the probabilities sum to 0');
  const u = uniform * total;
  let cumulative = 0;
  let last = 0;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] <= 0) continue;
    cumulative += probs[i];
    last = i;
    if (u < cumulative) return i;
  }
  return last;
}

/**
 * Picks the next token from logits with fixed options and its own seeded Rng. Token i of a
 * sequence is drawn with the i-th number of the Rng (one per token, inverse CDF), and `uniform(k)`
 * shows the numbers of tokens still to come without using them up: that is what lets coupled
 * verification (ppd/verify.ts) emit exactly the tokens this sampler would, several at a time.
 * Verifiers that draw from `rng` directly (rejection, typical) must not be mixed with `uniform`
 * in one sequence.
 */
export class Sampler {
  readonly options: SamplingOptions;
  readonly rng: Rng;
  /** Numbers drawn from `rng` for the next tokens, not yet used: ahead[k] is for the token k places ahead. */
  private readonly ahead: number[] = [];

  /** `rng` overrides the one seeded from `options.seed` (e.g. one resumed with Rng.fromState). */
  constructor(options: Partial<SamplingOptions> = {}, rng?: Rng) {
    this.options = samplingOptions(options);
    this.rng = rng ?? new Rng(this.options.seed);
  }

  get greedy(): boolean {
    return this.options.temperature === 0;
  }

  /** The next token id for one position's logits (Float32Array[V]); uses up that token's number. */
  sample(logits: Float32Array): number {
    if (this.greedy) return argmax(logits);
    const token = sampleAt(toProbabilities(logits, this.options), this.uniform(0));
    this.advance(1);
    return token;
  }

  /** The uniform number of the token `k` places ahead (0 = the next one), drawn if need be, not used up. */
  uniform(k: number): number {
    while (this.ahead.length <= k) this.ahead.push(this.rng.next());
    return this.ahead[k]!;
  }

  /** Uses up the numbers of the next `tokens` tokens (a step emitted that many). */
  advance(tokens: number): void {
    this.uniform(tokens - 1);
    this.ahead.splice(0, tokens);
  }
}
