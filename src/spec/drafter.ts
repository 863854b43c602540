/**
 * Drafters: the draft model's side of speculative decoding. Given the sequence so far, a drafter
 * proposes the next k tokens, each drawn from the draft's own sampling distribution q (the
 * argmax when greedy), and says which q it drew each from, as speculative sampling needs.
 *
 * Two ways to draft, behind one interface:
 * - `AutoregressiveDrafter`: one draft forward per drafted token (the classic scheme);
 * - `PpdDrafter`: the draft decodes with its own PPD adapter (PPD.md section 9): the first token
 *   and the draft's guesses come from one forward, then each PPD tree step of the draft adds
 *   several tokens, so k tokens take fewer draft forwards. Its tokens are still exact draws from
 *   q: greedy PPD emits the draft's greedy tokens, and rejection-verified PPD samples exactly
 *   the draft's distribution (ppd/verify.ts), token by token given the prefix.
 *
 * Cache consistency. A drafter keeps the token of every row its KV cache holds. Each proposal
 * starts by comparing those with the sequence it is given: rows past the longest common prefix
 * are the draft's rejected guesses and are dropped (truncate), and the sequence's tokens after
 * the prefix (the target's bonus token, and accepted draft tokens not yet cached) are run in the
 * first forward of the proposal (catch-up). A row's keys/values depend only on the tokens up to
 * it, so the kept rows are exactly what a fresh prefill of the sequence would compute.
 *
 * Not here: verification and the target's cache (speculative.ts, speculative-sampling.ts).
 */
import { newCache, prefill } from '../decode/autoregressive.ts';
import { PREFILL_CHUNK } from '../decode/rows.ts';
import type { KVCache } from '../model/kv-cache.ts';
import { causalMask, type LlamaModel } from '../model/llama-model.ts';
import { PpdDecoder } from '../ppd/decode.ts';
import type { PpdSetup } from '../ppd/setup.ts';
import { argmax, sampleFrom, toProbabilities, type Sampler } from '../sampling/sampler.ts';

/** One proposal: k tokens continuing the sequence. */
export interface Draft {
  /** x_1..x_k, k >= 1. */
  tokens: number[];
  /** When sampling: probs[i] ([V]) is q_i, the distribution tokens[i] was drawn from. Absent when greedy. */
  probs?: Float32Array[];
  /** Draft forwards this proposal ran (prompt slices and catch-up included). */
  forwards: number;
}

export interface Drafter {
  /**
   * Proposes `k` tokens continuing `sequence` (prompt + every emitted token; the last one is the
   * target's latest, which the draft has not seen yet). Draws from the sampler's rng.
   */
  propose(sequence: readonly number[], k: number): Promise<Draft>;
}

/** The next token from `logits` ([V]) and, when sampling, the distribution it was drawn from. */
function draw(logits: Float32Array, sampler: Sampler): { token: number; probs?: Float32Array } {
  if (sampler.greedy) return { token: argmax(logits) };
  const probs = toProbabilities(logits, sampler.options);
  return { token: sampleFrom(probs, sampler.rng), probs };
}

/**
 * Rows of the cache that can stay: the longest common prefix of the cached rows' tokens and
 * `sequence`, short of the sequence's last token (it must be run to give the next logits).
 */
function reusableRows(rows: readonly number[], sequence: readonly number[]): number {
  const limit = Math.min(rows.length, sequence.length - 1);
  let keep = 0;
  while (keep < limit && rows[keep] === sequence[keep]) keep++;
  return keep;
}

const prefillForwards = (rows: number) => Math.ceil(rows / PREFILL_CHUNK);

/** One draft forward per drafted token. */
export class AutoregressiveDrafter implements Drafter {
  private readonly cache: KVCache;
  /** [cache.length] the token of each cached row. */
  private readonly rows: number[] = [];

  constructor(
    private readonly model: LlamaModel,
    private readonly sampler: Sampler,
  ) {
    this.cache = newCache(model);
  }

  async propose(sequence: readonly number[], k: number): Promise<Draft> {
    const keep = reusableRows(this.rows, sequence);
    this.cache.truncate(keep);
    this.rows.length = keep;
    const pending = sequence.slice(keep);
    let logits = await prefill(this.model, pending, this.cache);
    this.rows.push(...pending);
    let forwards = prefillForwards(pending.length);

    const tokens: number[] = [];
    const probs: Float32Array[] = [];
    for (;;) {
      const next = draw(logits, this.sampler);
      tokens.push(next.token);
      if (next.probs) probs.push(next.probs);
      if (tokens.length >= k) break;
      // The last drafted token is not run: its row is only needed if the target accepts it,
      // and then the next proposal's catch-up runs it.
      const P = this.cache.length;
      const out = await this.model.forward({ embeds: this.model.embed([next.token]), positions: [P], mask: causalMask(1, P), cache: this.cache });
      this.cache.append(out.keys, out.values);
      this.rows.push(next.token);
      logits = out.logits;
      forwards++;
    }
    return { tokens, probs: this.sampler.greedy ? undefined : probs, forwards };
  }
}

/** The draft decodes with its own PPD adapter and trees: several draft tokens per forward. */
export class PpdDrafter implements Drafter {
  private readonly decoder: PpdDecoder;
  /** The token of each row the decoder has cached. */
  private readonly rows: number[] = [];

  constructor(
    model: LlamaModel,
    ppd: PpdSetup,
    private readonly sampler: Sampler,
  ) {
    // Rejection verification whatever the setup says: typical acceptance would not draw the
    // draft's tokens from q, and speculative sampling relies on that.
    this.decoder = new PpdDecoder(model, { adapter: ppd.adapter, trees: ppd.trees, sampler, verification: 'rejection' });
  }

  async propose(sequence: readonly number[], k: number): Promise<Draft> {
    const keep = reusableRows(this.rows, sequence);
    this.decoder.truncate(keep);
    this.rows.length = keep;
    const pending = sequence.slice(keep);
    // The catch-up forward carries the prompt tokens: it gives the first draft token and the
    // guesses for the tokens after it.
    const first = await this.decoder.prefill(pending);
    this.rows.push(...pending);
    let forwards = prefillForwards(pending.length);

    const start = draw(first.logits, this.sampler);
    const tokens = [start.token];
    const probs = start.probs ? [start.probs] : [];
    let guesses = first.guesses;
    while (tokens.length < k) {
      const root = tokens[tokens.length - 1]!;
      const step = await this.decoder.step(root, guesses);
      forwards++;
      // The step keeps the root's and the accepted candidates' rows; its bonus token is the next root.
      this.rows.push(root, ...step.tokens.slice(0, -1));
      tokens.push(...step.tokens);
      if (!this.sampler.greedy) probs.push(...step.logits.map((logits) => toProbabilities(logits, this.sampler.options)));
      guesses = step.guesses;
    }
    // Tokens past k were drawn after the first k, so dropping them leaves those k exact draws.
    return { tokens: tokens.slice(0, k), probs: this.sampler.greedy ? undefined : probs.slice(0, k), forwards };
  }
}
