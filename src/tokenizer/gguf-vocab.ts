/**
 * Tokenizers to and from GGUF metadata (the `tokenizer.*` keys), so that a GGUF file carries the
 * model's tokenizer and ppd and llama.cpp tokenize text alike.
 *
 * Two GGUF tokenizer models, the two that LLaMA-family checkpoints use:
 *
 *   "llama"  SentencePiece-style: tokens with scores and types (byte tokens <0xNN>, control
 *            tokens). llama.cpp's SPM tokenizer escapes spaces as "▁" (after a leading space when
 *            add_space_prefix), splits the text into characters and keeps merging the adjacent
 *            pair whose concatenation is a token with the highest score; leftovers become byte
 *            tokens. In Hugging Face form this is LLaMA-2's tokenizer.json: BPE with
 *            byte_fallback, a Prepend/Replace "▁" normalizer and a Replace/ByteFallback/Fuse/Strip
 *            decoder (the shape train-bpe.ts writes).
 *   "gpt2"   byte-level BPE with ranked merges and a named pre-tokenizer split (LLaMA-3's is
 *            "llama-bpe").
 *
 * BPE applies ranked merges of specific pairs, SPM merges any pair that spells a token, by score.
 * Scores written here come from merge ranks (see spmScores); reading a "llama" GGUF without
 * merges derives them from the scores, as transformers does (see mergesFromScores). ppd also
 * writes a "llama" tokenizer's merges (tokenizer.ggml.merges, which llama.cpp reads only for
 * "gpt2" and transformers reads for both) so that its own files come back exactly.
 *
 * Not here: reading or writing the GGUF container (format/gguf), the model's hyperparameters, or
 * padding the token list to a larger embedding table (the caller knows the model's vocab size).
 */
import { FormatError, ModelError } from '../errors.ts';
import type { GgufEntry, GgufMetadata, GgufValue } from '../format/gguf/types.ts';
import { SPACE_PIECE } from './byte-tokenizer.ts';
import { Tokenizer } from './tokenizer.ts';

type Json = Record<string, unknown>;

/** Token types as llama.cpp numbers them (gguf-py's TokenType; 0 is "undefined"). */
const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/** LLaMA-3's pre-tokenizer split, as its tokenizer.json spells it (llama.cpp: pre "llama-bpe"). */
const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** tokenizer.ggml.pre names that llama.cpp maps to LLaMA-3's split. */
const LLAMA3_PRE_NAMES: ReadonlySet<string> = new Set(['llama-bpe', 'llama3', 'llama-v3']);

const BYTE_TOKEN = /^<0x[0-9A-F]{2}>$/;

/** A merge as a pair of tokens: "left right" in GGUF and old tokenizer.json files. */
type Merge = readonly [left: string, right: string];

/** The tokenizer a GGUF file describes, once read and checked. */
interface GgufVocab {
  tokens: string[]; // [n_vocab]
  types: number[]; // [n_vocab] TokenType
  bosId?: number;
  eosId?: number;
  unkId?: number;
  padId?: number;
  addBos: boolean;
  addEos: boolean;
  chatTemplate?: string;
}

// ---------------------------------------------------------------------------------------------
// GGUF metadata -> tokenizer.json

/**
 * The tokenizer.json, tokenizer_config.json and chat template a GGUF file's metadata describes,
 * for Tokenizer.fromJson. undefined when the GGUF metadata holds no tokenizer (no
 * tokenizer.ggml.model, or llama.cpp's "none"/"no_vocab"). `origin` names the file in errors.
 */
export function tokenizerFromGguf(
  meta: GgufMetadata,
  origin: string,
): { tokenizerJson: Record<string, unknown>; tokenizerConfig: Record<string, unknown>; chatTemplate?: string } | undefined {
  const read = new MetadataReader(meta, origin);
  const model = read.string('tokenizer.ggml.model');
  // llama.cpp's names for "this file carries no vocabulary".
  if (model === undefined || model === 'none' || model === 'no_vocab') return undefined;
  if (model !== 'llama' && model !== 'gpt2') {
    throw new ModelError(`${origin}: GGUF tokenizer model "${model}" is not supported (ppd reads "llama" and "gpt2")`);
  }
  return model === 'llama' ? llamaFromGguf(read) : gpt2FromGguf(read);
}

/** "llama" (SentencePiece-style) metadata -> LLaMA-2-style tokenizer.json. */
function llamaFromGguf(read: MetadataReader) {
  const vocab = readVocab(read, { bos: 1, eos: 2, unk: 0, addBos: true });
  const n = vocab.tokens.length;
  const scores = read.numbers('tokenizer.ggml.scores', n);
  let merges = read.merges(vocab.tokens);
  if (merges === undefined) {
    if (scores === undefined) {
      throw new FormatError(read.origin, 'a "llama" tokenizer needs tokenizer.ggml.scores (or tokenizer.ggml.merges)');
    }
    merges = mergesFromScores(vocab.tokens, scores, vocab.types);
  }
  const addSpacePrefix = read.bool('tokenizer.ggml.add_space_prefix') ?? true;
  const unkToken = vocab.unkId === undefined ? null : vocab.tokens[vocab.unkId];

  const tokenizerJson: Json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens(vocab),
    normalizer: {
      type: 'Sequence',
      normalizers: [
        ...(addSpacePrefix ? [{ type: 'Prepend', prepend: SPACE_PIECE }] : []),
        { type: 'Replace', pattern: { String: ' ' }, content: SPACE_PIECE },
      ],
    },
    pre_tokenizer: null,
    post_processor: templateProcessor(vocab),
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPACE_PIECE }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        ...(addSpacePrefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
      ],
    },
    model: bpeModel(vocab.tokens, merges, { unkToken, byteFallback: true, ignoreMerges: false }),
  };
  return { tokenizerJson, tokenizerConfig: tokenizerConfig(vocab, 'LlamaTokenizer', false), chatTemplate: vocab.chatTemplate };
}

/** "gpt2" (byte-level BPE) metadata with a LLaMA-3 or GPT-2 pre-tokenizer -> tokenizer.json. */
function gpt2FromGguf(read: MetadataReader) {
  const pre = read.string('tokenizer.ggml.pre');
  const llama3 = pre !== undefined && LLAMA3_PRE_NAMES.has(pre);
  if (!llama3 && pre !== 'gpt-2') {
    // Without a name llama.cpp falls back to its "default" split (warning that quality will
    // suffer); other names are other models' splits. Refuse rather than tokenize differently.
    const what = pre === undefined ? 'no tokenizer.ggml.pre' : `tokenizer.ggml.pre "${pre}"`;
    throw new ModelError(`${read.origin}: byte-level tokenizer with ${what} is not supported (ppd reads "llama-bpe" and "gpt-2")`);
  }
  const vocab = readVocab(read, { addBos: llama3 });
  const merges = read.merges(vocab.tokens);
  if (merges === undefined) throw new FormatError(read.origin, 'a "gpt2" tokenizer needs tokenizer.ggml.merges');

  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: !llama3 };
  const tokenizerJson: Json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens(vocab),
    normalizer: null,
    pre_tokenizer: llama3
      ? {
          type: 'Sequence',
          pretokenizers: [
            { type: 'Split', pattern: { Regex: LLAMA3_SPLIT }, behavior: 'Isolated', invert: false },
            byteLevel,
          ],
        }
      : byteLevel,
    post_processor: templateProcessor(vocab),
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    // llama.cpp sets ignore_merges for LLaMA-3 (a word that is a token is not split), as its
    // tokenizer.json does.
    model: bpeModel(vocab.tokens, merges, { unkToken: null, byteFallback: false, ignoreMerges: llama3 }),
  };
  // llama.cpp cleans up spaces when detokenizing byte-level vocabularies, and LLaMA-3's
  // tokenizer_config.json asks for the same.
  return { tokenizerJson, tokenizerConfig: tokenizerConfig(vocab, 'PreTrainedTokenizerFast', true), chatTemplate: vocab.chatTemplate };
}

/**
 * Tokens, types, special ids and flags, checked. `defaults` are llama.cpp's for the model type
 * (used when a key is absent and the default id exists).
 */
function readVocab(
  read: MetadataReader,
  defaults: { bos?: number; eos?: number; unk?: number; addBos: boolean },
): GgufVocab {
  const listed = read.strings('tokenizer.ggml.tokens');
  if (listed === undefined || listed.length === 0) throw new FormatError(read.origin, 'tokenizer.ggml.tokens is missing or empty');
  // llama.cpp renames empty tokens the same way.
  const tokens = listed.map((token, id) => (token === '' ? `[EMPTY_${id}]` : token));
  const n = tokens.length;
  const seen = new Map<string, number>();
  tokens.forEach((token, id) => {
    const other = seen.get(token);
    if (other !== undefined) {
      throw new FormatError(read.origin, `tokenizer.ggml.tokens holds ${JSON.stringify(token)} twice (ids ${other} and ${id})`);
    }
    seen.set(token, id);
  });

  const types = read.numbers('tokenizer.ggml.token_type', n);
  types?.forEach((type, id) => {
    if (!Number.isInteger(type) || type < 0 || type > TokenType.BYTE) {
      throw new FormatError(read.origin, `tokenizer.ggml.token_type[${id}] must be an integer in 0..6, got ${type}`);
    }
  });
  const inRange = (id: number | undefined) => (id !== undefined && id < n ? id : undefined);
  const bosId = read.tokenId('tokenizer.ggml.bos_token_id', n) ?? inRange(defaults.bos);
  const eosId = read.tokenId('tokenizer.ggml.eos_token_id', n) ?? inRange(defaults.eos);
  const unkId = read.tokenId('tokenizer.ggml.unknown_token_id', n) ?? inRange(defaults.unk);
  const padId = read.tokenId('tokenizer.ggml.padding_token_id', n);
  const addBos = read.bool('tokenizer.ggml.add_bos_token') ?? defaults.addBos;
  const addEos = read.bool('tokenizer.ggml.add_eos_token') ?? false;
  if (addBos && bosId === undefined) throw new FormatError(read.origin, 'tokenizer.ggml.add_bos_token is true but there is no BOS token');
  if (addEos && eosId === undefined) throw new FormatError(read.origin, 'tokenizer.ggml.add_eos_token is true but there is no EOS token');

  // Without types, the special ids are the control tokens (as transformers assumes).
  const typesOrGuess =
    types ??
    tokens.map((_, id) =>
      id === unkId ? TokenType.UNKNOWN : id === bosId || id === eosId ? TokenType.CONTROL : TokenType.NORMAL,
    );
  return {
    tokens,
    types: typesOrGuess,
    bosId,
    eosId,
    unkId,
    padId,
    addBos,
    addEos,
    chatTemplate: read.string('tokenizer.chat_template'),
  };
}

/**
 * BPE merges for a vocabulary with SentencePiece scores (transformers' SentencePieceExtractor):
 * every split of a token into two tokens, ordered by the token's score, highest first; splits
 * of one token by the ids of their parts. BPE then merges, among adjacent pairs that spell a
 * token, the one whose token scores highest, which is what llama.cpp's SPM tokenizer does. Only
 * normal tokens take part: control, byte and user-defined tokens are matched before BPE or not
 * at all.
 */
function mergesFromScores(tokens: readonly string[], scores: readonly number[], types: readonly number[]): Merge[] {
  const normalIds = new Map<string, number>();
  tokens.forEach((token, id) => {
    if (types[id] === TokenType.NORMAL) normalIds.set(token, id);
  });
  const candidates: { left: number; right: number; score: number }[] = [];
  for (const [token, id] of normalIds) {
    const chars = Array.from(token); // split between characters only, as SPM does
    for (let i = 1; i < chars.length; i++) {
      const left = normalIds.get(chars.slice(0, i).join(''));
      const right = normalIds.get(chars.slice(i).join(''));
      if (left !== undefined && right !== undefined) candidates.push({ left, right, score: scores[id] });
    }
  }
  candidates.sort((a, b) => b.score - a.score || a.left - b.left || a.right - b.right);
  return candidates.map(({ left, right }) => [tokens[left], tokens[right]]);
}

/** Control and unknown tokens as special added tokens, user-defined ones as plain added tokens. */
function addedTokens(vocab: GgufVocab): Json[] {
  const added: Json[] = [];
  vocab.types.forEach((type, id) => {
    const special = type === TokenType.CONTROL || type === TokenType.UNKNOWN;
    if (!special && type !== TokenType.USER_DEFINED) return;
    const content = vocab.tokens[id];
    added.push({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special });
  });
  return added;
}

/** The post-processor that adds BOS/EOS as the GGUF asks (Tokenizer itself reads add_bos_token). */
function templateProcessor(vocab: GgufVocab): Json | null {
  const bos = vocab.addBos && vocab.bosId !== undefined ? vocab.tokens[vocab.bosId] : undefined;
  const eos = vocab.addEos && vocab.eosId !== undefined ? vocab.tokens[vocab.eosId] : undefined;
  if (bos === undefined && eos === undefined) return null;
  const around = (sequence: 'A' | 'B', typeId: number) => [
    ...(bos === undefined ? [] : [{ SpecialToken: { id: bos, type_id: typeId } }]),
    { Sequence: { id: sequence, type_id: typeId } },
    ...(eos === undefined ? [] : [{ SpecialToken: { id: eos, type_id: typeId } }]),
  ];
  const specialTokens: Json = {};
  if (bos !== undefined) specialTokens[bos] = { id: bos, ids: [vocab.bosId], tokens: [bos] };
  if (eos !== undefined) specialTokens[eos] = { id: eos, ids: [vocab.eosId], tokens: [eos] };
  return { type: 'TemplateProcessing', single: around('A', 0), pair: [...around('A', 0), ...around('B', 1)], special_tokens: specialTokens };
}

function bpeModel(
  tokens: readonly string[],
  merges: readonly Merge[],
  options: { unkToken: string | null; byteFallback: boolean; ignoreMerges: boolean },
): Json {
  const vocab: Record<string, number> = {};
  tokens.forEach((token, id) => (vocab[token] = id));
  // "left right" strings where no token holds a space (older readers know only those), else pairs.
  const spaced = merges.some(([left, right]) => left.includes(' ') || right.includes(' '));
  return {
    type: 'BPE',
    dropout: null,
    unk_token: options.unkToken,
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: options.byteFallback,
    byte_fallback: options.byteFallback,
    ignore_merges: options.ignoreMerges,
    vocab,
    merges: merges.map(([left, right]) => (spaced ? [left, right] : `${left} ${right}`)),
  };
}

/** tokenizer_config.json's fields: the BOS/EOS decision and the special tokens by name. */
function tokenizerConfig(vocab: GgufVocab, tokenizerClass: string, cleanUpSpaces: boolean): Json {
  const name = (id: number | undefined) => (id === undefined ? undefined : vocab.tokens[id]);
  const config: Json = {
    add_bos_token: vocab.addBos,
    add_eos_token: vocab.addEos,
    bos_token: name(vocab.bosId),
    eos_token: name(vocab.eosId),
    unk_token: name(vocab.unkId),
    pad_token: name(vocab.padId),
    clean_up_tokenization_spaces: cleanUpSpaces,
    tokenizer_class: tokenizerClass,
  };
  for (const key of Object.keys(config)) if (config[key] === undefined) delete config[key];
  return config;
}

/** Typed, checked reads of GGUF metadata; every error names the file and the key. */
class MetadataReader {
  constructor(
    private readonly meta: GgufMetadata,
    readonly origin: string,
  ) {}

  private fail(key: string, expected: string, value: GgufValue): never {
    const shown = Array.isArray(value) ? `an array of ${value.length}` : JSON.stringify(value);
    throw new FormatError(this.origin, `${key} must be ${expected}, got ${shown}`);
  }

  string(key: string): string | undefined {
    const value = this.meta.get(key);
    if (value === undefined || typeof value === 'string') return value;
    return this.fail(key, 'a string', value);
  }

  bool(key: string): boolean | undefined {
    const value = this.meta.get(key);
    if (value === undefined || typeof value === 'boolean') return value;
    return this.fail(key, 'a boolean', value);
  }

  /** A token id: an integer in 0..n-1. */
  tokenId(key: string, n: number): number | undefined {
    const value = this.meta.get(key);
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) return this.fail(key, 'a token id', value);
    if (value >= n) throw new FormatError(this.origin, `${key} is ${value}, outside the ${n} tokens`);
    return value;
  }

  strings(key: string): string[] | undefined {
    const value = this.meta.get(key);
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) return this.fail(key, 'an array of strings', value);
    return [...(value as string[])];
  }

  /** An array of finite numbers, one per token. */
  numbers(key: string, n: number): number[] | undefined {
    const value = this.meta.get(key);
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || !value.every((v) => typeof v === 'number' && Number.isFinite(v))) {
      return this.fail(key, 'an array of numbers', value);
    }
    if (value.length !== n) throw new FormatError(this.origin, `${key} has ${value.length} entries for ${n} tokens`);
    return value as number[];
  }

  /** tokenizer.ggml.merges as pairs of tokens, each pair spelling a token. */
  merges(tokens: readonly string[]): Merge[] | undefined {
    const key = 'tokenizer.ggml.merges';
    const lines = this.strings(key);
    if (lines === undefined) return undefined;
    const known = new Set(tokens);
    return lines.map((line, i) => {
      // llama.cpp splits at the first space after the first character (a token may be " ").
      const space = line.indexOf(' ', 1);
      const merge: Merge = [line.slice(0, Math.max(space, 0)), line.slice(space + 1)];
      if (space < 0 || !known.has(merge[0]) || !known.has(merge[1]) || !known.has(merge[0] + merge[1])) {
        throw new FormatError(this.origin, `${key}[${i}] ${JSON.stringify(line)} is not two tokens that join into a token`);
      }
      return merge;
    });
  }
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json -> GGUF metadata

/**
 * The tokenizer.* metadata entries for a Hugging Face tokenizer: "llama" for BPE with
 * byte_fallback (LLaMA-1/2, ppd's own), "gpt2" for byte-level BPE (LLaMA-3). `chatTemplate`
 * wins over tokenizer_config's; `origin` names the files in errors. The token list is the
 * tokenizer's, not padded to the model's embedding rows.
 */
export function ggufTokenizerEntries(
  tokenizerJson: Record<string, unknown>,
  tokenizerConfig: Record<string, unknown> | undefined,
  chatTemplate: string | undefined,
  origin: string,
): GgufEntry[] {
  const model = asObject(tokenizerJson.model, origin, 'model');
  if (model.type !== 'BPE') {
    throw new ModelError(`${origin}: tokenizer model ${JSON.stringify(model.type)} cannot be written to GGUF (ppd writes BPE tokenizers)`);
  }
  const kind = model.byte_fallback === true ? 'llama' : hasByteLevel(tokenizerJson.pre_tokenizer) ? 'gpt2' : undefined;
  if (kind === undefined) {
    throw new ModelError(`${origin}: a BPE tokenizer without byte_fallback or a ByteLevel pre-tokenizer has no GGUF equivalent`);
  }
  const { tokens, added, gaps } = tokensById(tokenizerJson, model, origin);
  const merges = readMerges(model, origin);
  // The Tokenizer decides BOS exactly as ppd does when it reads these files.
  const config = tokenizerConfig ?? {};
  const tokenizer = Tokenizer.fromJson(tokenizerJson, config, chatTemplate, origin);
  const unkId = typeof model.unk_token === 'string' ? tokenizer.tokenToId(model.unk_token) : undefined;
  const padText = specialTokenText(config.pad_token);
  const padId = padText === undefined ? undefined : tokenizer.tokenToId(padText);

  const types = tokens.map((token, id) => {
    const special = added.get(id);
    if (id === unkId) return TokenType.UNKNOWN;
    if (special !== undefined) return special ? TokenType.CONTROL : TokenType.USER_DEFINED;
    if (gaps.has(id)) return TokenType.UNUSED;
    if (kind === 'llama' && BYTE_TOKEN.test(token)) return TokenType.BYTE;
    return TokenType.NORMAL;
  });

  const entries: GgufEntry[] = [{ key: 'tokenizer.ggml.model', type: 'string', value: kind }];
  if (kind === 'llama') {
    const { addSpacePrefix } = llamaWhitespace(tokenizerJson, origin);
    entries.push(
      // What llama.cpp's converter writes for SentencePiece vocabularies; SPM ignores it.
      { key: 'tokenizer.ggml.pre', type: 'string', value: 'default' },
      { key: 'tokenizer.ggml.tokens', type: 'array', itemType: 'string', value: tokens },
      { key: 'tokenizer.ggml.scores', type: 'array', itemType: 'f32', value: spmScores(tokens, merges) },
      { key: 'tokenizer.ggml.token_type', type: 'array', itemType: 'i32', value: types },
      { key: 'tokenizer.ggml.merges', type: 'array', itemType: 'string', value: mergeLines(merges, origin) },
      { key: 'tokenizer.ggml.add_space_prefix', type: 'bool', value: addSpacePrefix },
    );
  } else {
    if (asObjectOrNull(tokenizerJson.normalizer) !== null) {
      throw new ModelError(`${origin}: a byte-level tokenizer with a normalizer has no GGUF equivalent`);
    }
    entries.push(
      { key: 'tokenizer.ggml.pre', type: 'string', value: byteLevelPreName(tokenizerJson.pre_tokenizer, origin) },
      { key: 'tokenizer.ggml.tokens', type: 'array', itemType: 'string', value: tokens },
      { key: 'tokenizer.ggml.token_type', type: 'array', itemType: 'i32', value: types },
      { key: 'tokenizer.ggml.merges', type: 'array', itemType: 'string', value: mergeLines(merges, origin) },
    );
  }

  const ids: [string, number | null | undefined][] = [
    ['tokenizer.ggml.bos_token_id', tokenizer.bosId],
    ['tokenizer.ggml.eos_token_id', tokenizer.eosId],
    ['tokenizer.ggml.unknown_token_id', unkId],
    ['tokenizer.ggml.padding_token_id', padId],
  ];
  for (const [key, id] of ids) if (id !== null && id !== undefined) entries.push({ key, type: 'u32', value: id });
  entries.push(
    { key: 'tokenizer.ggml.add_bos_token', type: 'bool', value: tokenizer.addBosByDefault },
    { key: 'tokenizer.ggml.add_eos_token', type: 'bool', value: config.add_eos_token === true },
  );
  if (tokenizer.chatTemplate !== null) entries.push({ key: 'tokenizer.chat_template', type: 'string', value: tokenizer.chatTemplate });
  return entries;
}

/**
 * SPM scores that make llama.cpp merge in BPE's order: a token's score is minus the rank of the
 * first merge that makes it (-1 for merge 0, -2 for merge 1, ...), and tokens no merge makes
 * (characters, byte and special tokens, pieces BPE cannot reach) score below every merge.
 *
 * Why: BPE takes, among adjacent pairs, the merge of lowest rank; SPM takes the pair whose joined
 * token scores highest. With these scores the two agree on every pair that is a merge. They part
 * only where two adjacent pieces spell a token without being one of its merges (BPE made "▁the"
 * from "▁t"+"he", and now meets "▁th"+"e"): SPM joins them, BPE does not. SentencePiece's own
 * BPE scores follow the same rule (pieces in order of creation), so a LLaMA-2 tokenizer.json,
 * whose merges transformers sorted by those scores, gets its original order back.
 * (llama.cpp's converter gives every piece of a tokenizer.json -1000, which leaves SPM merging
 * left to right.) Ranks below 2^24 are exact in f32.
 */
function spmScores(tokens: readonly string[], merges: readonly Merge[]): number[] {
  const firstRank = new Map<string, number>();
  merges.forEach(([left, right], rank) => {
    const token = left + right;
    if (!firstRank.has(token)) firstRank.set(token, rank);
  });
  return tokens.map((token) => -((firstRank.get(token) ?? merges.length) + 1));
}

/**
 * Tokens in id order: the model's vocabulary and the added tokens (added -> special?). Ids no
 * token holds become "[PAD<id>]" (`gaps`), as llama.cpp's converter fills them.
 */
function tokensById(
  tokenizerJson: Json,
  model: Json,
  origin: string,
): { tokens: string[]; added: Map<number, boolean>; gaps: Set<number> } {
  const byId: (string | undefined)[] = [];
  const place = (token: string, id: unknown, where: string) => {
    if (!Number.isSafeInteger(id) || (id as number) < 0) {
      throw new FormatError(origin, `${where}: id of ${JSON.stringify(token)} must be an integer >= 0, got ${JSON.stringify(id)}`);
    }
    const other = byId[id as number];
    if (other !== undefined && other !== token) {
      throw new FormatError(origin, `${where}: id ${id} is both ${JSON.stringify(other)} and ${JSON.stringify(token)}`);
    }
    byId[id as number] = token;
  };
  for (const [token, id] of Object.entries(asObject(model.vocab, origin, 'model.vocab'))) place(token, id, 'model.vocab');
  const added = new Map<number, boolean>();
  const addedList = tokenizerJson.added_tokens ?? [];
  if (!Array.isArray(addedList)) throw new FormatError(origin, 'added_tokens must be an array');
  for (const entry of addedList as Json[]) {
    if (typeof entry?.content !== 'string') throw new FormatError(origin, 'added_tokens: every entry needs a string "content"');
    place(entry.content, entry.id, 'added_tokens');
    added.set(entry.id as number, entry.special === true);
  }
  const gaps = new Set<number>();
  const tokens = Array.from(byId, (token, id) => {
    if (token !== undefined) return token;
    gaps.add(id);
    return `[PAD${id}]`;
  });
  const seen = new Set<string>();
  for (const token of tokens) {
    if (seen.has(token)) throw new FormatError(origin, `token ${JSON.stringify(token)} has two ids`);
    seen.add(token);
  }
  return { tokens, added, gaps };
}

/** model.merges as pairs: "left right" strings or [left, right] arrays. */
function readMerges(model: Json, origin: string): Merge[] {
  const merges = model.merges ?? [];
  if (!Array.isArray(merges)) throw new FormatError(origin, 'model.merges must be an array');
  return merges.map((merge: unknown, i) => {
    if (typeof merge === 'string') {
      const parts = merge.split(' ');
      if (parts.length === 2) return [parts[0], parts[1]] as const;
    } else if (Array.isArray(merge) && merge.length === 2 && merge.every((part) => typeof part === 'string')) {
      return [merge[0], merge[1]] as const;
    }
    throw new FormatError(origin, `model.merges[${i}] must be "left right" or [left, right], got ${JSON.stringify(merge)}`);
  });
}

/** GGUF spells a merge "left right", so neither side may hold a space. */
function mergeLines(merges: readonly Merge[], origin: string): string[] {
  return merges.map(([left, right]) => {
    if (left.includes(' ') || right.includes(' ')) {
      throw new ModelError(`${origin}: merge ${JSON.stringify([left, right])} holds a space, which GGUF merges cannot spell`);
    }
    return `${left} ${right}`;
  });
}

/**
 * How a byte-fallback tokenizer turns spaces into "▁", in the terms llama.cpp knows: spaces
 * always become "▁", and add_space_prefix says whether the text gets a leading one. A
 * normalizer or pre-tokenizer step llama.cpp cannot do is an error, not a silent difference.
 */
function llamaWhitespace(tokenizerJson: Json, origin: string): { addSpacePrefix: boolean } {
  let addSpacePrefix = false;
  let escapesSpaces = false;
  const visit = (step: Json | null, where: string): void => {
    if (step === null) return;
    if (step.type === 'Sequence') {
      const steps = step.normalizers ?? step.pretokenizers ?? [];
      for (const inner of steps as unknown[]) visit(asObjectOrNull(inner), where);
    } else if (step.type === 'Prepend' && step.prepend === SPACE_PIECE) {
      addSpacePrefix = true;
    } else if (step.type === 'Replace' && (step.pattern as Json | undefined)?.String === ' ' && step.content === SPACE_PIECE) {
      escapesSpaces = true;
    } else if (step.type === 'Metaspace' && (step.replacement ?? SPACE_PIECE) === SPACE_PIECE) {
      // Older files say add_prefix_space, newer ones prepend_scheme ("always", "first", "never").
      const scheme = step.prepend_scheme ?? (step.add_prefix_space === false ? 'never' : 'always');
      escapesSpaces = true;
      if (scheme !== 'never') addSpacePrefix = true;
    } else {
      throw new ModelError(`${origin}: ${where} step ${JSON.stringify(step.type)} has no GGUF equivalent`);
    }
  };
  visit(asObjectOrNull(tokenizerJson.normalizer), 'normalizer');
  visit(asObjectOrNull(tokenizerJson.pre_tokenizer), 'pre_tokenizer');
  if (!escapesSpaces) throw new ModelError(`${origin}: tokenizer does not turn spaces into "${SPACE_PIECE}", as GGUF "llama" tokenizers do`);
  return { addSpacePrefix };
}

function hasByteLevel(preTokenizer: unknown): boolean {
  const step = asObjectOrNull(preTokenizer);
  if (step === null) return false;
  if (step.type === 'Sequence' && Array.isArray(step.pretokenizers)) return step.pretokenizers.some(hasByteLevel);
  return step.type === 'ByteLevel';
}

/** llama.cpp's name for a byte-level pre-tokenizer: LLaMA-3's split, or GPT-2's. */
function byteLevelPreName(preTokenizer: unknown, origin: string): string {
  const step = asObjectOrNull(preTokenizer);
  if (step?.type === 'ByteLevel' && step.use_regex !== false && step.add_prefix_space !== true) return 'gpt-2';
  if (step?.type === 'Sequence' && Array.isArray(step.pretokenizers) && step.pretokenizers.length === 2) {
    const [split, byteLevel] = step.pretokenizers.map(asObjectOrNull);
    const isLlama3Split =
      split?.type === 'Split' &&
      (split.pattern as Json | undefined)?.Regex === LLAMA3_SPLIT &&
      split.behavior === 'Isolated' &&
      split.invert !== true;
    if (isLlama3Split && byteLevel?.type === 'ByteLevel' && byteLevel.use_regex === false && byteLevel.add_prefix_space !== true) {
      return 'llama-bpe';
    }
  }
  throw new ModelError(`${origin}: byte-level pre-tokenizer is neither LLaMA-3's nor GPT-2's, so llama.cpp has no name for it`);
}

/** A special token as tokenizer_config.json writes it: a string or an AddedToken object. */
function specialTokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  const content = asObjectOrNull(value)?.content;
  return typeof content === 'string' ? content : undefined;
}

function asObjectOrNull(value: unknown): Json | null {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Json) : null;
}

function asObject(value: unknown, origin: string, field: string): Json {
  const object = asObjectOrNull(value);
  if (object === null) throw new FormatError(origin, `field "${field}" must be an object`);
  return object;
}
