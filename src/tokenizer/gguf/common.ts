/**
 * Tokenizers to and from GGUF metadata (from-gguf.ts, to-gguf.ts; what both share is here) (the `tokenizer.*` keys), so that a GGUF file carries the
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
 *   "gpt2"   byte-level BPE with ranked merges and a named pre-tokenizer split: LLaMA-3's
 *            "llama-bpe", Qwen2/Qwen3's "qwen2", SmolLM's "smollm", GPT-2's "gpt-2"
 *            (BYTE_LEVEL_PRE_TOKENIZERS).
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

/** tokenizer.json and tokenizer_config.json objects, as parsed JSON. */
export type Json = Record<string, unknown>;

/** Token types as llama.cpp numbers them (gguf-py's TokenType; 0 is "undefined"). */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/** LLaMA-3's pre-tokenizer split, as its tokenizer.json spells it (llama.cpp: pre "llama-bpe"). */
export const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/** Qwen2's (Qwen2.5, Qwen3): LLaMA-3's with one digit at a time (llama.cpp: pre "qwen2"). */
export const QWEN2_SPLIT = LLAMA3_SPLIT.replace('\\p{N}{1,3}', '\\p{N}');

/**
 * A byte-level ("gpt2") vocabulary's pre-tokenizer as llama.cpp names it (`tokenizer.ggml.pre`)
 * and as a tokenizer.json spells it, with what llama.cpp does differently per name: whether it
 * skips merges for words that are whole tokens (ignore_merges), adds BOS unless told, cleans up
 * spaces when detokenizing. `normalizer` is what the family's tokenizer.json carries: Qwen's NFC,
 * which llama.cpp does not apply (text already in NFC, nearly all text, tokenizes the same).
 */
export interface ByteLevelPreTokenizer {
  name: string;
  /** Other names llama.cpp maps to the same split. */
  aliases: readonly string[];
  preTokenizer: Json;
  normalizer: Json | null;
  decoder: Json;
  ignoreMerges: boolean;
  addBos: boolean;
  cleanUpSpaces: boolean;
}

const byteLevel = (useRegex: boolean, trimOffsets = true): Json => ({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: trimOffsets, use_regex: useRegex });
const split = (regex: string): Json => ({ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false });
const GPT2_DECODER: Json = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };

export const BYTE_LEVEL_PRE_TOKENIZERS: readonly ByteLevelPreTokenizer[] = [
  {
    name: 'llama-bpe', aliases: ['llama3', 'llama-v3'],
    preTokenizer: { type: 'Sequence', pretokenizers: [split(LLAMA3_SPLIT), byteLevel(false)] },
    normalizer: null, decoder: GPT2_DECODER, ignoreMerges: true, addBos: true, cleanUpSpaces: true,
  },
  {
    name: 'qwen2', aliases: ['deepseek-r1-qwen'],
    preTokenizer: { type: 'Sequence', pretokenizers: [split(QWEN2_SPLIT), byteLevel(false, false)] },
    normalizer: { type: 'NFC' }, decoder: byteLevel(false, false), ignoreMerges: false, addBos: false, cleanUpSpaces: false,
  },
  {
    name: 'smollm', aliases: [],
    preTokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, byteLevel(true)] },
    normalizer: null, decoder: GPT2_DECODER, ignoreMerges: false, addBos: false, cleanUpSpaces: false,
  },
  {
    name: 'gpt-2', aliases: [],
    preTokenizer: byteLevel(true),
    normalizer: null, decoder: GPT2_DECODER, ignoreMerges: false, addBos: false, cleanUpSpaces: true,
  },
];

/**
 * What a pre_tokenizer does, as a string two spellings of the same split share: each step's type
 * and the fields that change its output (not trim_offsets, which only moves offsets).
 */
export function preTokenizerSignature(step: unknown): string {
  if (step === null || typeof step !== 'object' || Array.isArray(step)) return String(step);
  const s = step as Json;
  switch (s.type) {
    case 'Sequence':
      return Array.isArray(s.pretokenizers) ? s.pretokenizers.map(preTokenizerSignature).join(' | ') : 'Sequence?';
    case 'Split': {
      const pattern = s.pattern as Json | undefined;
      return `Split(${JSON.stringify(pattern?.Regex ?? pattern?.String)}, ${s.behavior}, invert ${s.invert === true})`;
    }
    case 'ByteLevel':
      return `ByteLevel(regex ${s.use_regex !== false}, prefix ${s.add_prefix_space === true})`;
    case 'Digits':
      return `Digits(individual ${s.individual_digits === true})`;
    default:
      return JSON.stringify(s);
  }
}

/** The llama.cpp name of a byte-level tokenizer.json pre_tokenizer, or undefined. */
export function byteLevelPreTokenizerOf(preTokenizer: unknown): ByteLevelPreTokenizer | undefined {
  const signature = preTokenizerSignature(preTokenizer);
  return BYTE_LEVEL_PRE_TOKENIZERS.find((p) => preTokenizerSignature(p.preTokenizer) === signature);
}

/** The byte-level pre-tokenizer llama.cpp calls `name` (an alias included), or undefined. */
export function byteLevelPreTokenizerNamed(name: string): ByteLevelPreTokenizer | undefined {
  return BYTE_LEVEL_PRE_TOKENIZERS.find((p) => p.name === name || p.aliases.includes(name));
}

/** A merge as a pair of tokens: "left right" in GGUF and old tokenizer.json files. */
export type Merge = readonly [left: string, right: string];
