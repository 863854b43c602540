/**
 * Context lookup: guesses copied from the text itself. When the last few tokens of the sequence
 * appeared before, the tokens that followed them then are proposed as the continuation now
 * (prompt lookup decoding, Saxena 2023; llama.cpp's lookup decoding). It costs no model work and
 * no parameters, and it is strongest exactly where prompt tokens are weakest: text that repeats
 * its context (quotations, code edits, lists, and the loops small models fall into), where the
 * token two places ahead is in the context but a prompt token cannot see which it is.
 *
 * The PPD decoder (decode.ts) verifies the proposal as one more chain of candidate rows next to
 * its tree, so the output is what verification makes it: greedy stays identical to greedy
 * decoding and rejection sampling keeps the model's distribution (the proposal is a
 * deterministic function of the past, like the prompt tokens' guesses).
 *
 * Not here: how many tokens to propose (draft.ts adapts it with DraftLength), the static n-gram
 * table that proposes where this finds nothing (ngram-table.ts), and the rows.
 */
import { InputError } from '../errors.ts';

/** Longest suffix tried first; shorter ones only when no longer one recurs. */
export const LOOKUP_MAX_NGRAM = 4;

export class ContextLookup {
  /** Every token whose keys/values the decoder holds, in order: the prompt, then accepted tokens. */
  private readonly tokens: number[] = [];

  constructor(private readonly maxNgram = LOOKUP_MAX_NGRAM) {
    if (!(Number.isInteger(maxNgram) && maxNgram >= 1)) throw new InputError(`lookup n-gram length must be an integer >= 1, got ${maxNgram}`);
  }

  get length(): number {
    return this.tokens.length;
  }

  /** The held tokens (the static n-gram table reads its context from them, draft.ts). */
  get held(): readonly number[] {
    return this.tokens;
  }

  push(...ids: number[]): void {
    for (const id of ids) this.tokens.push(id);
  }

  /** Forgets every token at index >= length (the decoder rolled its cache back). */
  truncate(length: number): void {
    if (!(Number.isInteger(length) && length >= 0 && length <= this.tokens.length)) {
      throw new InputError(`ContextLookup.truncate: length ${length} is outside 0..${this.tokens.length}`);
    }
    this.tokens.length = length;
  }

  /**
   * Up to `count` tokens proposed to follow the held tokens plus `next`: for n = maxNgram down
   * to 1, the most recent earlier occurrence of the last n tokens, and what followed it there.
   * [] when no suffix recurs.
   */
  propose(next: number, count: number): number[] {
    return this.draft(next, count).tokens;
  }

  /** `propose`, and the length of the suffix that recurred (0 when none did): how close a look the proposal took. */
  draft(next: number, count: number): { tokens: number[]; context: number } {
    if (count <= 0) return { tokens: [], context: 0 };
    const seq = this.tokens;
    const end = seq.length + 1; // the sequence is seq ++ [next]
    const at = (i: number) => (i === seq.length ? next : seq[i]!);
    for (let n = Math.min(this.maxNgram, end - 1); n >= 1; n--) {
      // An earlier occurrence ending at e (exclusive), e < end, so at least one token follows it.
      for (let e = end - 1; e >= n; e--) {
        let match = true;
        for (let j = 1; j <= n && match; j++) match = at(e - j) === at(end - j);
        if (!match) continue;
        // Past the end of what is known, the text is assumed to go on repeating with the same
        // period (end − e): a loop of 5 tokens still yields `count` guesses, not 5.
        const period = end - e;
        const tokens: number[] = [];
        for (let k = 0; k < count; k++) tokens.push(k < period ? at(e + k) : tokens[k - period]!);
        return { tokens, context: n };
      }
    }
    return { tokens: [], context: 0 };
  }
}
