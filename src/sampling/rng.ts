/**
 * Rng: a small seeded pseudo-random generator (xoshiro128**) whose state is four uint32 words.
 *
 * Sampling must be reproducible from a seed and resumable from a saved state (a server can
 * persist a session mid-generation), so the generator is ours rather than Math.random. Not
 * cryptographic, and not the sampling logic itself (sampler.ts).
 */
import { InputError } from '../errors.ts';

/** The generator's whole state: four uint32 words, not all zero. */
export type RngState = [number, number, number, number];

/**
 * splitmix32: spreads one seed word over the four state words, so that nearby seeds (0, 1, 2)
 * give unrelated streams and the state is never all zero.
 */
function splitmix32(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (x + 0x9e3779b9) >>> 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export class Rng {
  private s: Uint32Array; // [4] xoshiro128** state

  /** Seeds from any safe integer (negative and > 2^32 seeds use all their bits). */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) {
      throw new InputError(`seed must be a safe integer, got ${seed}`);
    }
    // Fold the high word in so that seeds differing only above bit 31 still differ.
    const high = Math.floor(seed / 2 ** 32) >>> 0;
    const mixHigh = splitmix32(high ^ 0x5bd1e995);
    const mix = splitmix32((seed >>> 0) ^ mixHigh());
    this.s = new Uint32Array([mix(), mix(), mix(), mix()]);
    if (this.s.every((w) => w === 0)) this.s[0] = 1;
  }

  /** Resumes a generator from `state()`; the next draws continue the saved stream. */
  static fromState(state: readonly number[]): Rng {
    const valid =
      state.length === 4 && state.every((w) => Number.isInteger(w) && w >= 0 && w < 2 ** 32);
    if (!valid || state.every((w) => w === 0)) {
      throw new InputError(`rng state must be four uint32 words, not all zero; got ${JSON.stringify(state)}`);
    }
    const rng = new Rng(0);
    rng.s.set(state);
    return rng;
  }

  /** A copy of the state, JSON-serialisable. */
  state(): RngState {
    return [this.s[0], this.s[1], this.s[2], this.s[3]];
  }

  /** Next uniformly distributed uint32. */
  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Next float uniformly distributed in [0, 1), with 32 bits of resolution. */
  next(): number {
    return this.nextUint32() / 2 ** 32;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
