/**
 * GGUF tokenizer metadata (tokenizer.ggml.*) to a Hugging Face tokenizer.json: the "llama"
 * (SentencePiece-style) and "gpt2" (byte-level) models; see common.ts for how the two relate.
 */
import { FormatError, ModelError } from '../../errors.ts';
import type { GgufMetadata, GgufValue } from '../../format/gguf/types.ts';
import { llamaDecoder, SPACE_PIECE } from '../byte-tokenizer.ts';
import { byteLevelPreTokenizerNamed, BYTE_LEVEL_PRE_TOKENIZERS, TokenType, type Json, type Merge } from './common.ts';

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
    decoder: llamaDecoder(addSpacePrefix),
    model: bpeModel(vocab.tokens, merges, { unkToken, byteFallback: true, ignoreMerges: false }),
  };
  return { tokenizerJson, tokenizerConfig: tokenizerConfig(vocab, 'LlamaTokenizer', false), chatTemplate: vocab.chatTemplate };
}

/** "gpt2" (byte-level BPE) metadata with a pre-tokenizer name ppd knows (common.ts) -> tokenizer.json. */
function gpt2FromGguf(read: MetadataReader) {
  const name = read.string('tokenizer.ggml.pre');
  const pre = name === undefined ? undefined : byteLevelPreTokenizerNamed(name);
  if (pre === undefined) {
    // Without a name llama.cpp falls back to its "default" split (warning that quality will
    // suffer); other names are other models' splits. Refuse rather than tokenize differently.
    const what = name === undefined ? 'no tokenizer.ggml.pre' : `tokenizer.ggml.pre "${name}"`;
    const known = BYTE_LEVEL_PRE_TOKENIZERS.map((p) => `"${p.name}"`).join(', ');
    throw new ModelError(`${read.origin}: byte-level tokenizer with ${what} is not supported (ppd reads ${known})`);
  }
  const vocab = readVocab(read, { addBos: pre.addBos });
  const merges = read.merges(vocab.tokens);
  if (merges === undefined) throw new FormatError(read.origin, 'a "gpt2" tokenizer needs tokenizer.ggml.merges');

  const tokenizerJson: Json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens(vocab),
    normalizer: pre.normalizer,
    pre_tokenizer: pre.preTokenizer,
    post_processor: templateProcessor(vocab),
    decoder: pre.decoder,
    // llama.cpp sets ignore_merges for LLaMA-3 (a word that is a token is not split), as its
    // tokenizer.json does.
    model: bpeModel(vocab.tokens, merges, { unkToken: null, byteFallback: false, ignoreMerges: pre.ignoreMerges }),
  };
  // Whether llama.cpp cleans up spaces when detokenizing; the families' tokenizer_config.json
  // files ask for the same (LLaMA-3 yes, Qwen and SmolLM no).
  return { tokenizerJson, tokenizerConfig: tokenizerConfig(vocab, 'PreTrainedTokenizerFast', pre.cleanUpSpaces), chatTemplate: vocab.chatTemplate };
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
