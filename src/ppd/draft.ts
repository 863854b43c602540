/**
 * The guesses a PPD step verifies beside its tree: one chain of candidate rows hanging from the
 * root, drafted from the tokens so far by the context lookup (lookup.ts: what followed the last
 * few tokens where they occurred before) or, where that finds nothing, by the static n-gram table
 * (ngram-table.ts: what the model itself most often wrote after them). Each source's chain length
 * adapts to how many of its tokens were accepted lately (DraftLength), as a draft model's does.
 *
 * One `ChainDraft` per sequence: it holds that sequence's tokens (the prompt, then every accepted
 * token) and the adaptive lengths; the table is shared, read-only. It is the "propose" part of a
 * step for these sources: a batching scheduler keeps one per sequence with the decoder.
 *
 * Why one chain, from the source that matched the longer context: docs/NGRAM.md ("Decoding").
 */
import { InputError } from '../errors.ts';
import { DraftLength } from '../decode/draft-length.ts';
import { ContextLookup } from './lookup.ts';
import { DEFAULT_DRAFT_THRESHOLDS, type DraftThresholds, type NgramTable } from './ngram-table.ts';

export type DraftSource = 'lookup' | 'ngram';

export interface DraftOptions {
  /** Most context-lookup tokens per step; 0 or absent: no context lookup. */
  lookup?: number;
  /** The static n-gram table and the most tokens per step it may propose; absent: none. */
  ngram?: { table: NgramTable; tokens: number; thresholds?: DraftThresholds };
}

/** One step's chain: its tokens (after the root) and which source proposed them. */
export interface Draft {
  tokens: number[];
  /** null when nothing was proposed. */
  source: DraftSource | null;
}

/** How a step's chain fared: for statistics (bench:ppd reports the sources' accuracy from them). */
export interface DraftOutcome {
  source: DraftSource;
  proposed: number;
  accepted: number;
}

const checkTokens = (what: string, n: number) => {
  if (!(Number.isInteger(n) && n >= 0)) throw new InputError(`${what} must be an integer >= 0 (most tokens per step), got ${n}`);
};

export class ChainDraft {
  /** The tokens so far, and the context lookup over them. */
  private readonly context = new ContextLookup();
  private readonly lookupLength?: DraftLength;
  private readonly ngram?: { table: NgramTable; length: DraftLength; thresholds: DraftThresholds };
  /** Chain tokens accepted, and chains cut short by a rejection (acceptedShare). */
  private acceptedTokens = 0;
  private cutChains = 0;

  constructor(o: DraftOptions) {
    if (o.lookup !== undefined) checkTokens('lookup', o.lookup);
    if (o.ngram !== undefined) checkTokens('n-gram tokens', o.ngram.tokens);
    if (o.lookup) this.lookupLength = new DraftLength(o.lookup);
    if (o.ngram && o.ngram.tokens > 0) this.ngram = { table: o.ngram.table, length: new DraftLength(o.ngram.tokens), thresholds: o.ngram.thresholds ?? DEFAULT_DRAFT_THRESHOLDS };
  }

  /** Whether any source may propose (a decoder without one keeps no token history). */
  get active(): boolean {
    return this.lookupLength !== undefined || this.ngram !== undefined;
  }

  get length(): number {
    return this.context.length;
  }

  /** Appends tokens whose keys/values the decoder now holds. */
  push(...ids: number[]): void {
    this.context.push(...ids);
  }

  /** Forgets every token at index >= length (the decoder rolled its cache back). */
  truncate(length: number): void {
    this.context.truncate(length);
  }

  /**
   * A chain of at most `room` tokens to follow the held tokens plus `root`: from the source that
   * matched the longer context (the context lookup's recurring suffix, the table's confident
   * context), the context lookup on a tie (the text itself repeating beats a statistic of other
   * texts); the other source when the first proposes nothing.
   */
  propose(root: number, room: number): Draft {
    const none = { tokens: [], context: 0 };
    const lookup = this.lookupLength && room > 0 ? this.context.draft(root, Math.min(room, this.lookupLength.current)) : none;
    const table = this.ngram && room > 0 ? this.ngram.table.draft(this.context.held, root, Math.min(room, this.ngram.length.current), this.ngram.thresholds) : none;
    if (lookup.tokens.length > 0 && lookup.context >= table.context) return { tokens: lookup.tokens, source: 'lookup' };
    if (table.tokens.length > 0) return { tokens: table.tokens, source: 'ngram' };
    return { tokens: [], source: null };
  }

  /**
   * The share of chain tokens accepted so far (a rejection ends a chain): (accepted + 1) /
   * (accepted + chains cut short + 2), 1/2 before any chain. A row-budget scheduler prices a
   * chain's rows by it (PpdDecoder.stepOptions).
   */
  get acceptedShare(): number {
    return (this.acceptedTokens + 1) / (this.acceptedTokens + this.cutChains + 2);
  }

  /** Records how `draft` fared (`accepted` = the step's accepted candidates, in order) and adapts its source's length. */
  record(draft: Draft, accepted: readonly number[]): DraftOutcome | undefined {
    if (draft.source === null) return undefined;
    let n = 0;
    while (n < draft.tokens.length && n < accepted.length && draft.tokens[n] === accepted[n]) n++;
    (draft.source === 'lookup' ? this.lookupLength : this.ngram?.length)!.update(n, draft.tokens.length);
    this.acceptedTokens += n;
    if (n < draft.tokens.length) this.cutChains += 1;
    return { source: draft.source, proposed: draft.tokens.length, accepted: n };
  }
}

/** Per source: steps with its chain, tokens it proposed, tokens of them accepted. */
export type DraftTally = Record<DraftSource, { steps: number; proposed: number; accepted: number }>;

export function emptyDraftTally(): DraftTally {
  return { lookup: { steps: 0, proposed: 0, accepted: 0 }, ngram: { steps: 0, proposed: 0, accepted: 0 } };
}

export function addDraft(tally: DraftTally, outcome: DraftOutcome): void {
  const t = tally[outcome.source];
  t.steps += 1;
  t.proposed += outcome.proposed;
  t.accepted += outcome.accepted;
}
