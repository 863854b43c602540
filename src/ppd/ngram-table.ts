/**
 * A static n-gram table: for contexts of 1..maxNgram tokens, which tokens followed them how
 * often in the model's own greedy generations (and optionally in a text), stored compactly and
 * read without parsing (like llama.cpp's static lookup cache, `lookup-create`, but versioned and
 * bound to a tokenizer and a model). At decode time it proposes a chain of guesses where the
 * context lookup (lookup.ts) has nothing to copy: the continuation the model itself most often
 * wrote after the last few tokens. Guesses are only proposals: verification decides, so greedy
 * output stays identical to plain decoding and rejection sampling keeps the model's distribution
 * (the proposal is a deterministic function of the tokens so far).
 *
 * Not here: generating and counting (train/ngram-build.ts), files by path (ngram-files.ts), how
 * the chain sits beside the tree (draft.ts, tree-buffers.ts).
 *
 * File format `ppd.ngram/1` (little-endian; docs/NGRAM.md):
 *   bytes 0..7     "PPDNGRAM"
 *   bytes 8..11    u32 format version (1)
 *   bytes 12..15   u32 H: length of the header (UTF-8 JSON, `NgramHeader`)
 *   bytes 16..     the header, then zero padding to a multiple of 8 bytes; then the body:
 *   per section n = 1..maxNgram, in order (sizes from header.sections[n-1]: c contexts, e entries):
 *     keys    i32 [c, n]   the contexts, token ids oldest first, sorted lexicographically
 *     totals  u32 [c]      continuations counted after each context (kept in the file or not)
 *     starts  u32 [c + 1]  context i owns entries starts[i]..starts[i+1]-1 of this section
 *     tokens  i32 [e]      the kept continuations, most frequent first
 *     counts  u32 [e]
 *   header.bodyDigest is sha256 (16 hex digits) over the body bytes: a truncated or altered file
 *   is refused, not read as garbage.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { FormatError, InputError } from '../errors.ts';
import { littleEndian, readBytes, type ReadableFile } from '../format/readable-file.ts';
import type { LlamaConfig } from '../model/config.ts';
import type { Tokenizer } from '../tokenizer/tokenizer.ts';
import { configHash } from './adapter.ts';
import { arrayOf, crossCheck, integer, literal, looseObject, matching, object, parseWithSchema, text } from '../format/schema.ts';

export const NGRAM_SCHEMA = 'ppd.ngram/1';
const MAGIC = 'PPDNGRAM';
const VERSION = 1;
/** Longest context the format allows (a section per length). */
export const NGRAM_MAX_CONTEXT = 8;

/**
 * What a table was built for: a token id means what this tokenizer says it means (`tokenizer`,
 * a digest of its vocabulary, `vocabularyDigest`), and the counts describe this model's habits
 * (`configHash`, as adapters are bound, ppd/adapter.ts).
 */
export interface NgramBinding {
  vocabSize: number;
  tokenizer: string;
  configHash: string;
}

/** A binding to check a table against; `tokenizer` absent: not checked. */
export type ExpectedBinding = Omit<NgramBinding, 'tokenizer'> & { tokenizer?: string };

export interface NgramHeader {
  schema: typeof NGRAM_SCHEMA;
  binding: NgramBinding;
  /** Longest context (tokens). */
  maxNgram: number;
  /** Contexts seen fewer times than this were left out. */
  minCount: number;
  /** Most continuations kept per context. */
  topK: number;
  /** Per context length n = 1..maxNgram: contexts and kept entries. */
  sections: { n: number; contexts: number; entries: number }[];
  bodyBytes: number;
  bodyDigest: string;
  /** How it was built (for people; ngram-build.ts fills it): model, text, generations, tokens. */
  source: Record<string, unknown>;
  created: string;
}

const hex16 = () => matching(/^[0-9a-f]{16}$/, '16 hex digits');

const headerSchema = crossCheck(
  object({
    schema: literal(NGRAM_SCHEMA),
    binding: object({ vocabSize: integer(1), tokenizer: hex16(), configHash: text() }, 'an object {vocabSize, tokenizer, configHash}'),
    maxNgram: integer(1, NGRAM_MAX_CONTEXT),
    minCount: integer(1),
    topK: integer(1),
    sections: arrayOf(object({ n: integer(1, NGRAM_MAX_CONTEXT), contexts: integer(0), entries: integer(0) }, 'an object {n, contexts, entries}'), 'a list of sections'),
    bodyBytes: integer(0),
    bodyDigest: hex16(),
    source: looseObject({}, 'an object'),
    created: text('an ISO 8601 date'),
  }),
  (h, fail) => {
    if (h.sections.length !== h.maxNgram) fail(['sections'], `${h.sections.length} sections for maxNgram ${h.maxNgram}`);
    h.sections.forEach((s, i) => s.n !== i + 1 && fail(['sections', i, 'n'], `section ${i} must hold contexts of ${i + 1} tokens, got ${s.n}`));
    const bytes = h.sections.reduce((sum, s) => sum + sectionBytes(s.n, s.contexts, s.entries), 0);
    if (h.bodyBytes !== bytes) fail(['bodyBytes'], `${h.bodyBytes} does not match the sections (${bytes})`);
  },
);

const sectionBytes = (n: number, contexts: number, entries: number) => 4 * (contexts * n + contexts + contexts + 1 + 2 * entries);

/** One context length's arrays (views into a file's body, or fresh from countNgrams). */
export interface NgramSection {
  n: number;
  /** [c, n] */
  keys: Int32Array;
  /** [c] */
  totals: Uint32Array;
  /** [c + 1] */
  starts: Uint32Array;
  /** [e] */
  tokens: Int32Array;
  /** [e] */
  counts: Uint32Array;
}

/** A context's continuations as the table holds them. */
export interface Continuations {
  /** Times the context was followed by anything. */
  total: number;
  /** Kept continuations, most frequent first. */
  tokens: Int32Array;
  counts: Uint32Array;
}

/**
 * When the table's most frequent continuation is worth a row: a context seen at least `minTotal`
 * times whose top continuation has at least `minShare` of them. The longest context that passes
 * decides (a longer context is a closer look at the model's state, when it was seen often enough).
 */
export interface DraftThresholds {
  minTotal: number;
  minShare: number;
}

/** The defaults; why these: docs/NGRAM.md ("Thresholds"). */
export const DEFAULT_DRAFT_THRESHOLDS: DraftThresholds = { minTotal: 2, minShare: 0.5 };

/** sha256 (16 hex digits) of a tokenizer's vocabulary strings in id order: what ids mean. */
export function vocabularyDigest(vocabulary: Iterable<string | undefined>): string {
  const hash = sha256.create();
  const encoder = new TextEncoder();
  for (const token of vocabulary) hash.update(encoder.encode(`${token === undefined ? '\u0000' : JSON.stringify(token)}\n`));
  return bytesToHex(hash.digest()).slice(0, 16);
}

const digestOf = (bytes: Uint8Array) => bytesToHex(sha256(bytes)).slice(0, 16);

/** -1, 0, 1: context `i` of `s` against `ids[at..at+n)`. */
function compareKey(s: NgramSection, i: number, ids: ArrayLike<number>, at: number): number {
  const base = i * s.n;
  for (let j = 0; j < s.n; j++) {
    const d = s.keys[base + j]! - ids[at + j]!;
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

export class NgramTable {
  private constructor(
    readonly header: NgramHeader,
    private readonly sections: NgramSection[],
  ) {}

  get maxNgram(): number {
    return this.header.maxNgram;
  }

  get binding(): NgramBinding {
    return this.header.binding;
  }

  /** Bytes the table's arrays take in memory. */
  get bytes(): number {
    return this.header.bodyBytes;
  }

  /**
   * The continuations of the context `ids[at..at+n)` (n = 1..maxNgram), or undefined when the
   * table does not hold it. Binary search over the section's sorted keys.
   */
  continuations(ids: ArrayLike<number>, at: number, n: number): Continuations | undefined {
    const s = this.sections[n - 1];
    if (s === undefined) return undefined;
    let lo = 0;
    let hi = s.totals.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareKey(s, mid, ids, at) < 0) lo = mid + 1;
      else hi = mid;
    }
    if (lo === s.totals.length || compareKey(s, lo, ids, at) !== 0) return undefined;
    const [from, to] = [s.starts[lo]!, s.starts[lo + 1]!];
    return { total: s.totals[lo]!, tokens: s.tokens.subarray(from, to), counts: s.counts.subarray(from, to) };
  }

  /**
   * The token the table proposes after `ids` (its last maxNgram tokens are the context): the most
   * frequent continuation of the longest context that passes `thresholds`, and that context's
   * length; token -1 (context 0) when none passes.
   */
  next(ids: readonly number[], thresholds: DraftThresholds = DEFAULT_DRAFT_THRESHOLDS): { token: number; context: number } {
    for (let n = Math.min(this.maxNgram, ids.length); n >= 1; n--) {
      const c = this.continuations(ids, ids.length - n, n);
      if (c === undefined || c.total < thresholds.minTotal || c.tokens.length === 0) continue;
      if (c.counts[0]! >= thresholds.minShare * c.total) return { token: c.tokens[0]!, context: n };
    }
    return { token: -1, context: 0 };
  }

  /**
   * Up to `count` tokens proposed to follow `history` plus `next`, one at a time: each proposed
   * token joins the context of the next. Stops where the table has nothing confident enough.
   */
  propose(history: readonly number[], next: number, count: number, thresholds: DraftThresholds = DEFAULT_DRAFT_THRESHOLDS): number[] {
    return this.draft(history, next, count, thresholds).tokens;
  }

  /** `propose`, and the length of the context that chose its first token (0 when it proposes nothing). */
  draft(history: readonly number[], next: number, count: number, thresholds: DraftThresholds = DEFAULT_DRAFT_THRESHOLDS): { tokens: number[]; context: number } {
    const tail = [...history.slice(Math.max(0, history.length - this.maxNgram + 1)), next];
    const tokens: number[] = [];
    let context = 0;
    while (tokens.length < count) {
      const guess = this.next(tail.slice(-this.maxNgram), thresholds);
      if (guess.token < 0) break;
      if (tokens.length === 0) context = guess.context;
      tokens.push(guess.token);
      tail.push(guess.token);
    }
    return { tokens, context };
  }

  /** Checks the table against the tokenizer and model it is used with; a FormatError naming `file` on mismatch. */
  checkBinding(expected: ExpectedBinding, file: string, rebuild: string): void {
    const b = this.binding;
    const what =
      expected.tokenizer !== undefined && b.tokenizer !== expected.tokenizer
        ? `built for another tokenizer (vocabulary digest ${b.tokenizer}, the model's is ${expected.tokenizer})`
        : b.configHash !== expected.configHash
          ? `built for another model (config hash ${b.configHash}, the model's is ${expected.configHash})`
          : b.vocabSize !== expected.vocabSize
            ? `built for a vocabulary of ${b.vocabSize} tokens, the model has ${expected.vocabSize}`
            : undefined;
    if (what !== undefined) throw new FormatError(file, `${what}; rebuild it with \`${rebuild}\``);
  }

  /** Reads a table from `file` (FormatError naming it and what is wrong). */
  static read(file: ReadableFile): NgramTable {
    if (!littleEndian) throw new FormatError(file.name, 'n-gram tables are little-endian and this machine is not');
    if (file.size < 16) throw new FormatError(file.name, `not an n-gram table (${file.size} bytes)`);
    const head = readBytes(file, 0, 16);
    const magic = new TextDecoder().decode(head.subarray(0, 8));
    if (magic !== MAGIC) throw new FormatError(file.name, `not an n-gram table (it starts with ${JSON.stringify(magic)}, not "${MAGIC}")`);
    const view = new DataView(head.buffer);
    const version = view.getUint32(8, true);
    if (version !== VERSION) throw new FormatError(file.name, `n-gram table format version ${version}; this ppd reads version ${VERSION}`);
    const headerLength = view.getUint32(12, true);
    const bodyStart = align8(16 + headerLength);
    if (bodyStart > file.size) throw new FormatError(file.name, `truncated: its header needs ${bodyStart} bytes, the file has ${file.size}`);
    let raw: unknown;
    try {
      raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(readBytes(file, 16, headerLength)));
    } catch (err) {
      throw new FormatError(file.name, `malformed header: ${(err as Error).message}`);
    }
    const header = parseWithSchema(headerSchema, raw, { file: file.name, root: 'header' }) as NgramHeader;
    if (file.size !== bodyStart + header.bodyBytes) {
      throw new FormatError(file.name, `truncated or padded: the header promises ${header.bodyBytes} body bytes, the file has ${file.size - bodyStart}`);
    }
    const body = readBytes(file, bodyStart, header.bodyBytes);
    const digest = digestOf(body);
    if (digest !== header.bodyDigest) throw new FormatError(file.name, `corrupt: the body's digest is ${digest}, the header says ${header.bodyDigest}`);
    const sections: NgramSection[] = [];
    let at = 0;
    const take = <T>(Kind: { new (buffer: ArrayBuffer, offset: number, length: number): T }, length: number): T => {
      const view = new Kind(body.buffer as ArrayBuffer, at, length);
      at += 4 * length;
      return view;
    };
    for (const { n, contexts, entries } of header.sections) {
      const s: NgramSection = {
        n,
        keys: take(Int32Array, contexts * n),
        totals: take(Uint32Array, contexts),
        starts: take(Uint32Array, contexts + 1),
        tokens: take(Int32Array, entries),
        counts: take(Uint32Array, entries),
      };
      checkSection(s, header, file.name);
      sections.push(s);
    }
    return new NgramTable(header, sections);
  }

  /** The file's bytes for `sections` (countNgrams) with `header`'s fields; sizes and the digest are computed. */
  static encode(sections: readonly NgramSection[], header: Omit<NgramHeader, 'schema' | 'sections' | 'bodyBytes' | 'bodyDigest' | 'maxNgram'>): Uint8Array {
    const bodyBytes = sections.reduce((sum, s) => sum + sectionBytes(s.n, s.totals.length, s.tokens.length), 0);
    const body = new Uint8Array(bodyBytes);
    let at = 0;
    for (const s of sections) {
      for (const array of [s.keys, s.totals, s.starts, s.tokens, s.counts]) {
        body.set(new Uint8Array(array.buffer, array.byteOffset, array.byteLength), at);
        at += array.byteLength;
      }
    }
    const full: NgramHeader = {
      schema: NGRAM_SCHEMA,
      ...header,
      maxNgram: sections.length,
      sections: sections.map((s) => ({ n: s.n, contexts: s.totals.length, entries: s.tokens.length })),
      bodyBytes,
      bodyDigest: digestOf(body),
    };
    const json = new TextEncoder().encode(JSON.stringify(full));
    const bodyStart = align8(16 + json.length);
    const out = new Uint8Array(bodyStart + bodyBytes);
    out.set(new TextEncoder().encode(MAGIC), 0);
    const view = new DataView(out.buffer);
    view.setUint32(8, VERSION, true);
    view.setUint32(12, json.length, true);
    out.set(json, 16);
    out.set(body, bodyStart);
    return out;
  }
}

const align8 = (n: number) => Math.ceil(n / 8) * 8;

/** Structure a reader relies on: entry ranges in order and in bounds, ids in the vocabulary, keys sorted. */
function checkSection(s: NgramSection, h: NgramHeader, file: string): void {
  const fail = (what: string) => {
    throw new FormatError(file, `section n = ${s.n}: ${what}`);
  };
  const V = h.binding.vocabSize;
  const c = s.totals.length;
  if (s.starts[0] !== 0 || s.starts[c] !== s.tokens.length) fail('entry ranges do not cover the entries');
  for (let i = 0; i < c; i++) {
    const [from, to] = [s.starts[i]!, s.starts[i + 1]!];
    if (to < from || to - from > h.topK) fail(`context ${i} has an entry range ${from}..${to} (at most ${h.topK} entries)`);
    if (s.totals[i]! < h.minCount) fail(`context ${i} was seen ${s.totals[i]} times, under the table's minimum ${h.minCount}`);
    let kept = 0;
    for (let e = from; e < to; e++) kept += s.counts[e]!;
    if (kept > s.totals[i]!) fail(`context ${i} keeps ${kept} continuations of ${s.totals[i]} seen`);
    if (i > 0 && compareKey(s, i - 1, s.keys, i * s.n) >= 0) fail(`contexts ${i - 1} and ${i} are not in sorted order`);
  }
  for (const ids of [s.keys, s.tokens]) for (const id of ids) if (!(id >= 0 && id < V)) fail(`token id ${id} is outside the vocabulary of ${V}`);
}

// ---------------------------------------------------------------------------------------------
// Counting

/** A token sequence to count: positions from `countFrom` on are counted as continuations. */
export interface CountedSequence {
  ids: ArrayLike<number>;
  /** First position whose token counts as a continuation (e.g. the first generated token). */
  countFrom: number;
}

export interface CountOptions {
  maxNgram: number;
  minCount: number;
  topK: number;
}

/**
 * The table's sections from sequences: for every counted position i and n = 1..maxNgram with i >= n,
 * the context ids[i-n..i) followed by ids[i]. Sorting instead of hashing: (context, next) rows
 * of one length are sorted once and counted in runs, in memory linear in the tokens.
 */
export function countNgrams(sequences: readonly CountedSequence[], o: CountOptions): NgramSection[] {
  if (!(Number.isInteger(o.maxNgram) && o.maxNgram >= 1 && o.maxNgram <= NGRAM_MAX_CONTEXT)) throw new InputError(`n-gram length must be an integer in 1..${NGRAM_MAX_CONTEXT}, got ${o.maxNgram}`);
  if (!(Number.isInteger(o.minCount) && o.minCount >= 1)) throw new InputError(`minimum count must be an integer >= 1, got ${o.minCount}`);
  if (!(Number.isInteger(o.topK) && o.topK >= 1)) throw new InputError(`continuations kept must be an integer >= 1, got ${o.topK}`);
  const sections: NgramSection[] = [];
  for (let n = 1; n <= o.maxNgram; n++) {
    const w = n + 1; // row width: context, then next
    let rows = 0;
    for (const s of sequences) rows += Math.max(0, s.ids.length - Math.max(n, s.countFrom));
    const data = new Int32Array(rows * w); // [rows, n + 1]
    let r = 0;
    for (const s of sequences) {
      for (let i = Math.max(n, s.countFrom); i < s.ids.length; i++, r++) for (let j = 0; j < w; j++) data[r * w + j] = s.ids[i - n + j]!;
    }
    const order = Uint32Array.from({ length: rows }, (_, i) => i).sort((a, b) => {
      for (let j = 0; j < w; j++) {
        const d = data[a * w + j]! - data[b * w + j]!;
        if (d !== 0) return d;
      }
      return 0;
    });
    const keys: number[] = [];
    const totals: number[] = [];
    const starts: number[] = [0];
    const tokens: number[] = [];
    const counts: number[] = [];
    const sameContext = (a: number, b: number) => {
      for (let j = 0; j < n; j++) if (data[a * w + j] !== data[b * w + j]) return false;
      return true;
    };
    for (let k = 0; k < rows; ) {
      // One context: rows k..end-1, sorted by next token.
      let end = k + 1;
      while (end < rows && sameContext(order[k]!, order[end]!)) end++;
      if (end - k >= o.minCount) {
        const runs: [number, number][] = [];
        for (let a = k; a < end; ) {
          let b = a + 1;
          while (b < end && data[order[b]! * w + n] === data[order[a]! * w + n]) b++;
          runs.push([data[order[a]! * w + n]!, b - a]);
          a = b;
        }
        runs.sort((x, y) => y[1] - x[1] || x[0] - y[0]); // most frequent first; ties by id, so the file is deterministic
        for (let j = 0; j < n; j++) keys.push(data[order[k]! * w + j]!);
        totals.push(end - k);
        for (const [token, count] of runs.slice(0, o.topK)) tokens.push(token), counts.push(count);
        starts.push(tokens.length);
      }
      k = end;
    }
    sections.push({ n, keys: Int32Array.from(keys), totals: Uint32Array.from(totals), starts: Uint32Array.from(starts), tokens: Int32Array.from(tokens), counts: Uint32Array.from(counts) });
  }
  return sections;
}

/**
 * What a table used with this model and tokenizer must be bound to. Without a tokenizer (a model
 * loaded for ids alone) the tokenizer is left unchecked.
 */
export function bindingOf(config: LlamaConfig, tokenizer: Tokenizer): NgramBinding;
export function bindingOf(config: LlamaConfig, tokenizer?: Tokenizer): ExpectedBinding;
export function bindingOf(config: LlamaConfig, tokenizer?: Tokenizer): ExpectedBinding {
  const vocabulary = tokenizer && Array.from({ length: tokenizer.vocabSize }, (_, id) => tokenizer.idToToken(id));
  return { vocabSize: config.vocabSize, configHash: configHash(config), ...(vocabulary ? { tokenizer: vocabularyDigest(vocabulary) } : {}) };
}
