/**
 * Sampling: from one position's logits to the next token id.
 *
 * Split into pure pieces so each can be tested and reused on its own: `toProbabilities` (the
 * filtered distribution a sampler draws from, also what distribution-preserving speculative
 * verification compares against), `sampleFrom` (one draw), `argmax` (greedy). `Sampler` just
 * composes them with a seeded Rng. Not logits processors that look at history (repetition
 * penalty), and not stopping (generate/stop.ts).
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

/**
 * The distribution a sampler with these options draws from, over the whole vocabulary:
 * softmax(logits / temperature), then top-k, then top-p, renormalised. Temperature 0 gives the
 * one-hot vector at argmax (the limit as temperature -> 0). Filtered tokens get exactly 0.
 * Pure: `logits` is not modified.
 */
export function toProbabilities(logits: Float32Array, options: SamplingOptions): Float32Array {
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
    const kth = kthLargest(logits, options.topK);
    for (let i = 0; i < V; i++) if (logits[i] < kth) weights[i] = 0;
  }
  if (options.topP < 1) applyTopP(weights, options.topP);

  let sum = 0;
  for (let i = 0; i < V; i++) sum += weights[i];
  for (let i = 0; i < V; i++) probs[i] = weights[i] / sum;
  return probs;
}

/** The k-th largest value (1-based) of `values`. */
function kthLargest(values: Float32Array, k: number): number {
  const sorted = Float32Array.from(values).sort();
  return sorted[sorted.length - k];
}

/**
 * Zeroes every weight outside the nucleus: tokens are taken most likely first (ties by lower
 * index) while the mass taken before each is < topP, so the token that crosses topP is kept and
 * at least one token always is.
 */
function applyTopP(weights: Float64Array, topP: number): void {
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
  let total = 0;
  for (let i = 0; i < probs.length; i++) total += probs[i];
  if (!(total > 0)) throw new ModelError('cannot sample: the probabilities sum to 0');
  const u = rng.next() * total;
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

/** Picks the next token from logits with fixed options and its own seeded Rng. */
export class Sampler {
  readonly options: SamplingOptions;
  readonly rng: Rng;

  /** `rng` overrides the one seeded from `options.seed` (e.g. one resumed with Rng.fromState). */
  constructor(options: Partial<SamplingOptions> = {}, rng?: Rng) {
    this.options = samplingOptions(options);
    this.rng = rng ?? new Rng(this.options.seed);
  }

  get greedy(): boolean {
    return this.options.temperature === 0;
  }

  /** The next token id for one position's logits (Float32Array[V]); advances the Rng. */
  sample(logits: Float32Array): number {
    if (this.greedy) return argmax(logits);
    return sampleFrom(toProbabilities(logits, this.options), this.rng);
  }
}
