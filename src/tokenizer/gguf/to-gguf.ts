/**
 * A Hugging Face tokenizer.json to GGUF tokenizer metadata (tokenizer.ggml.*): "llama" for BPE
 * with byte_fallback, "gpt2" for byte-level BPE (LLaMA-3, Qwen2/3, SmolLM, GPT-2 splits); see
 * common.ts for how the two relate.
 */
import { FormatError, ModelError } from '../../errors.ts';
import type { GgufEntry } from '../../format/gguf/types.ts';
import { SPACE_PIECE } from '../byte-tokenizer.ts';
import { Tokenizer } from '../tokenizer.ts';
import { byteLevelPreTokenizerOf, BYTE_LEVEL_PRE_TOKENIZERS, TokenType, type Json, type Merge } from './common.ts';

const BYTE_TOKEN = /^<0x[0-9A-F]{2}>$/;

/**
 * The tokenizer.* metadata entries for a Hugging Face tokenizer: "llama" for BPE with
 * byte_fallback (LLaMA-1/2, ppd's own), "gpt2" for byte-level BPE (LLaMA-3, Qwen, SmolLM). `chatTemplate`
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
    entries.push(
      { key: 'tokenizer.ggml.pre', type: 'string', value: byteLevelPreName(tokenizerJson, origin) },
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

/**
 * llama.cpp's name for a byte-level tokenizer's pre-tokenizer (common.ts lists the ones it
 * knows), checking that its normalizer is the one that family's files carry: none, or Qwen's NFC,
 * which llama.cpp's own converter also writes without (llama.cpp does not normalize).
 */
function byteLevelPreName(tokenizerJson: Json, origin: string): string {
  const pre = byteLevelPreTokenizerOf(tokenizerJson.pre_tokenizer);
  if (pre === undefined) {
    const known = BYTE_LEVEL_PRE_TOKENIZERS.map((p) => `"${p.name}"`).join(', ');
    throw new ModelError(`${origin}: byte-level pre-tokenizer is none llama.cpp names (${known}), so GGUF cannot say how to split text`);
  }
  const normalizer = asObjectOrNull(tokenizerJson.normalizer);
  if (normalizer !== null && !(normalizer.type === 'NFC' && pre.normalizer !== null)) {
    throw new ModelError(`${origin}: a byte-level tokenizer with normalizer ${JSON.stringify(normalizer.type)} has no GGUF equivalent`);
  }
  return pre.name;
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
