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

/** tokenizer.json and tokenizer_config.json objects, as parsed JSON. */
export type Json = Record<string, unknown>;

/** Token types as llama.cpp numbers them (gguf-py's TokenType; 0 is "undefined"). */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/** LLaMA-3's pre-tokenizer split, as its tokenizer.json spells it (llama.cpp: pre "llama-bpe"). */
export const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** A merge as a pair of tokens: "left right" in GGUF and old tokenizer.json files. */
export type Merge = readonly [left: string, right: string];
