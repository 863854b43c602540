/**
 * Trains a LLaMA-2-style BPE tokenizer (SentencePiece BPE as Hugging Face's tokenizer.json writes
 * it) from raw text, for models ppd trains itself.
 *
 * The result has byte-tokenizer.ts's pipeline (Prepend "▁" + Replace " " -> "▁" normalizer, no
 * pre-tokenizer, BPE with byte_fallback, Replace/ByteFallback/Fuse/Strip decoder) and its ids for
 * <unk>, <s>, </s>, <0x00>..<0xFF> and "▁" (0..259), followed by the characters that cover
 * CHARACTER_COVERAGE of the text and then the learned pieces. Any text round-trips: characters
 * outside the vocabulary fall back to their UTF-8 bytes.
 *
 * Training splits the normalized text into words, each a run of "▁" and the non-"▁" characters
 * after it ("▁▁▁return", "▁the", "▁end.\n\nThe"), counts them, and runs the classic pair-merge
 * loop over the distinct words with incremental pair counts and a lazy max-heap. A "▁" then
 * never follows a non-"▁" character inside a piece, so no learned merge can join two words,
 * and encoding a whole text (which @huggingface/tokenizers does in one piece, having no
 * pre-tokenizer) applies exactly the merges training applied to each of its words.
 *
 * Not a SentencePiece reimplementation (no unigram, no sampling, no normalization rules), and
 * not a trainer for byte-level (GPT-2 style) BPE.
 */
import { InputError } from '../errors.ts';
import {
  BYTE_TOKENIZER_VOCAB_SIZE,
  FIRST_PIECE_ID,
  RESERVED_PIECES,
  SPACE_PIECE,
  byteFallbackTokenizerConfig,
  llamaTokenizerJson,
} from './byte-tokenizer.ts';

/** Fraction of the text's characters the initial alphabet covers (SentencePiece's default). */
const CHARACTER_COVERAGE = 0.9995;

/** Ids must fit PAIR_SHIFT bits so that a pair of them packs into one exact double. */
const PAIR_SHIFT = 2 ** 24;
const MAX_VOCAB_SIZE = PAIR_SHIFT;

export interface TrainBpeProgress {
  /**
   * 'words': splitting the text into words (done = characters read; total = null, as an
   * iterable's length is unknown). 'merges': learning merges (done = vocabulary size so far,
   * total = the requested vocabSize).
   */
  phase: 'words' | 'merges';
  done: number;
  total: number | null;
}

export interface TrainBpeOptions {
  /** Largest vocabulary to build, special and byte tokens included; at least 260. */
  vocabSize: number;
  /** Stop when the most frequent pair occurs fewer times than this. Default 2. */
  minFrequency?: number;
  onProgress?: (progress: TrainBpeProgress) => void;
}

export interface TrainedTokenizer {
  /** The tokenizer.json object; Tokenizer.fromJson loads it. */
  tokenizerJson: object;
  /** The matching tokenizer_config.json object (LLaMA-2's special tokens and chat template). */
  tokenizerConfig: object;
}

/** Trains on `texts` (one string, or many: each is normalized on its own, as encode() would). */
export function trainBpe(texts: Iterable<string> | string, options: TrainBpeOptions): TrainedTokenizer {
  const { vocabSize, minFrequency = 2, onProgress } = options;
  if (!Number.isSafeInteger(vocabSize) || vocabSize < BYTE_TOKENIZER_VOCAB_SIZE || vocabSize > MAX_VOCAB_SIZE) {
    throw new InputError(`vocabSize must be an integer in ${BYTE_TOKENIZER_VOCAB_SIZE}..${MAX_VOCAB_SIZE}, got ${vocabSize}`);
  }
  if (!Number.isSafeInteger(minFrequency) || minFrequency < 1) {
    throw new InputError(`minFrequency must be an integer >= 1, got ${minFrequency}`);
  }

  const words = countWords(typeof texts === 'string' ? [texts] : texts, onProgress);
  if (words.size === 0) throw new InputError('cannot train a tokenizer on no text');
  const alphabet = chooseAlphabet(words, vocabSize - FIRST_PIECE_ID);
  const { pieces, merges } = learnMerges(words, alphabet, vocabSize - FIRST_PIECE_ID, minFrequency, onProgress);
  return { tokenizerJson: llamaTokenizerJson(pieces, merges), tokenizerConfig: byteFallbackTokenizerConfig() };
}

// ---------------------------------------------------------------------------------------------
// Words and alphabet

/** What the tokenizer's normalizer makes of `text`. */
function normalize(text: string): string {
  return SPACE_PIECE + text.replaceAll(' ', SPACE_PIECE);
}

/** Distinct words of the normalized texts -> how often each occurs. Empty texts add nothing. */
function countWords(texts: Iterable<string>, onProgress: TrainBpeOptions['onProgress']): Map<string, number> {
  const words = new Map<string, number>();
  const wordPattern = new RegExp(`${SPACE_PIECE}+[^${SPACE_PIECE}]*`, 'g');
  let charsRead = 0;
  for (const text of texts) {
    if (text.length === 0) continue;
    for (const [word] of normalize(text).matchAll(wordPattern)) words.set(word, (words.get(word) ?? 0) + 1);
    charsRead += text.length;
    onProgress?.({ phase: 'words', done: charsRead, total: null });
  }
  return words;
}

/** A lone UTF-16 surrogate: UTF-8 cannot spell it, so it must not become a piece. */
function isLoneSurrogate(char: string): boolean {
  const unit = char.charCodeAt(0);
  return char.length === 1 && unit >= 0xd800 && unit <= 0xdfff;
}

/**
 * The initial single-character pieces: "▁" first (so it keeps the byte tokenizer's id 259), then
 * the most frequent characters until they cover CHARACTER_COVERAGE of the text, at most `room`.
 * Ties go to the smaller code point, for determinism.
 */
function chooseAlphabet(words: Map<string, number>, room: number): string[] {
  const charCounts = new Map<string, number>();
  let total = 0;
  for (const [word, count] of words) {
    for (const char of word) {
      charCounts.set(char, (charCounts.get(char) ?? 0) + count);
      total += count;
    }
  }
  const byFrequency = [...charCounts]
    .filter(([char]) => char !== SPACE_PIECE && !isLoneSurrogate(char))
    .sort(([a, na], [b, nb]) => nb - na || a.codePointAt(0)! - b.codePointAt(0)!);
  const alphabet = [SPACE_PIECE];
  let covered = charCounts.get(SPACE_PIECE) ?? 0;
  for (const [char, count] of byFrequency) {
    if (covered >= CHARACTER_COVERAGE * total || alphabet.length >= room) break;
    alphabet.push(char);
    covered += count;
  }
  return alphabet;
}

// ---------------------------------------------------------------------------------------------
// Merge loop
//
// Symbols are piece indexes (vocabulary id - FIRST_PIECE_ID); UNKNOWN marks a character outside
// the alphabet, which pairs with nothing (at encode time no merge names it; it becomes bytes).

const UNKNOWN = -1;

function pairKey(left: number, right: number): number {
  return left * PAIR_SHIFT + right;
}

interface PairEntry {
  count: number;
  left: number;
  right: number;
}

/** Heap order: higher count first, then smaller left id, then smaller right id. */
function before(a: PairEntry, b: PairEntry): boolean {
  return a.count !== b.count ? a.count > b.count : a.left !== b.left ? a.left < b.left : a.right < b.right;
}

/** Binary max-heap of pair entries under `before`. */
class PairHeap {
  private readonly items: PairEntry[] = [];

  push(entry: PairEntry): void {
    const items = this.items;
    let i = items.push(entry) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(entry, items[parent])) break;
      items[i] = items[parent];
      i = parent;
    }
    items[i] = entry;
  }

  pop(): PairEntry | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length === 0 || last === undefined) return top;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= items.length) break;
      if (child + 1 < items.length && before(items[child + 1], items[child])) child++;
      if (!before(items[child], last)) break;
      items[i] = items[child];
      i = child;
    }
    items[i] = last;
    return top;
  }
}

/**
 * Pair counts over the distinct words, kept exact as merges rewrite the words. `where` lists the
 * words that hold a pair; it may list a word twice or list one that no longer holds the pair
 * (entries are only ever added), which merging then finds unchanged. Lists, not sets: this is
 * the hot loop, and a set per pair costs more than the rare repeated visit.
 */
class PairTable {
  readonly counts = new Map<number, number>();
  readonly where = new Map<number, number[]>();
  /** Pairs whose count rose since the last takeGrown(): they need a fresh heap entry. */
  private grown = new Set<number>();

  add(left: number, right: number, delta: number, word: number): void {
    if (left === UNKNOWN || right === UNKNOWN) return;
    const key = pairKey(left, right);
    const count = (this.counts.get(key) ?? 0) + delta;
    if (count > 0) this.counts.set(key, count);
    else this.counts.delete(key);
    if (delta > 0) {
      const words = this.where.get(key);
      if (words === undefined) this.where.set(key, [word]);
      else if (words[words.length - 1] !== word) words.push(word);
      this.grown.add(key);
    }
  }

  takeGrown(): PairEntry[] {
    const entries: PairEntry[] = [];
    for (const key of this.grown) {
      const count = this.counts.get(key);
      if (count !== undefined) entries.push({ count, left: Math.floor(key / PAIR_SHIFT), right: key % PAIR_SHIFT });
    }
    this.grown = new Set();
    return entries;
  }
}

/**
 * Replaces, in place and left to right, every non-overlapping (left, right) in `symbols` by
 * `merged`, and moves the counts of the neighbouring pairs (`count` = the word's frequency).
 * Writing trails reading, so symbols[i + 2] is still the original next symbol.
 */
function mergeWord(
  symbols: number[],
  left: number,
  right: number,
  merged: number,
  count: number,
  word: number,
  pairs: PairTable,
): void {
  let n = 0; // symbols written
  for (let i = 0; i < symbols.length; ) {
    if (i + 1 < symbols.length && symbols[i] === left && symbols[i + 1] === right) {
      if (n > 0) {
        const prev = symbols[n - 1];
        pairs.add(prev, left, -count, word);
        pairs.add(prev, merged, count, word);
      }
      if (i + 2 < symbols.length) {
        const next = symbols[i + 2];
        pairs.add(right, next, -count, word);
        pairs.add(merged, next, count, word);
      }
      symbols[n++] = merged;
      i += 2;
    } else {
      symbols[n++] = symbols[i++];
    }
  }
  symbols.length = n;
}

/**
 * Grows `alphabet` to at most `room` pieces by merging the most frequent adjacent pair, again
 * and again. Returns the pieces and the merges ("left right", in rank order).
 */
function learnMerges(
  words: Map<string, number>,
  alphabet: string[],
  room: number,
  minFrequency: number,
  onProgress: TrainBpeOptions['onProgress'],
): { pieces: string[]; merges: string[] } {
  const pieces = [...alphabet];
  const pieceIds = new Map(pieces.map((piece, id) => [piece, id]));

  // Words of one symbol hold no pair and are left out.
  const symbols: number[][] = []; // [distinct word] -> piece ids
  const counts: number[] = []; // [distinct word] -> occurrences
  for (const [word, count] of words) {
    const ids = Array.from(word, (char) => pieceIds.get(char) ?? UNKNOWN);
    if (ids.length < 2) continue;
    symbols.push(ids);
    counts.push(count);
  }

  const pairs = new PairTable();
  symbols.forEach((ids, w) => {
    for (let i = 0; i + 1 < ids.length; i++) pairs.add(ids[i], ids[i + 1], counts[w], w);
  });
  const heap = new PairHeap();
  for (const entry of pairs.takeGrown()) heap.push(entry);

  const merges: string[] = [];
  const mergedPairs = new Set<number>();
  const reportEvery = Math.max(1, Math.floor(room / 100));
  while (pieces.length < room) {
    const top = heap.pop();
    if (top === undefined) break;
    const key = pairKey(top.left, top.right);
    const count = pairs.counts.get(key) ?? 0;
    if (count !== top.count) {
      // A stale entry: the count changed since it was pushed. Queue the pair at its true count.
      if (count > 0) heap.push({ count, left: top.left, right: top.right });
      continue;
    }
    if (count < minFrequency) break;
    const text = pieces[top.left] + pieces[top.right];
    // A piece spelled like "<s>" or "<0x41>" would encode to that token, not to its text; and a
    // pair merged once keeps its first rank (a duplicate merge would change it at encode time).
    if (RESERVED_PIECES.has(text) || mergedPairs.has(key)) continue;

    let merged = pieceIds.get(text);
    if (merged === undefined) {
      merged = pieces.push(text) - 1;
      pieceIds.set(text, merged);
    }
    merges.push(`${pieces[top.left]} ${pieces[top.right]}`);
    mergedPairs.add(key);

    const holders = pairs.where.get(key) ?? [];
    pairs.where.delete(key);
    for (const w of holders) mergeWord(symbols[w], top.left, top.right, merged, counts[w], w, pairs);
    pairs.counts.delete(key);
    for (const entry of pairs.takeGrown()) heap.push(entry);

    if (merges.length % reportEvery === 0) {
      onProgress?.({ phase: 'merges', done: FIRST_PIECE_ID + pieces.length, total: FIRST_PIECE_ID + room });
    }
  }
  onProgress?.({ phase: 'merges', done: FIRST_PIECE_ID + pieces.length, total: FIRST_PIECE_ID + room });
  return { pieces, merges };
}
