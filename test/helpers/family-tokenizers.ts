/**
 * Small tokenizers in the exact file formats of the byte-level BPE families ppd supports, for
 * tests that cannot download the real ones: Llama 3.x (`tokenizer.json` with LLaMA-3's split,
 * BOS from the post-processor), Qwen2.5/Qwen3 (NFC normalizer, Qwen's split, ChatML specials,
 * no BOS) and SmolLM2 (digits split one by one, then GPT-2's byte-level regex). Each comes with
 * its tokenizer_config.json, the family's real chat template (test/fixtures/chat-templates/)
 * and the stop ids its generation_config.json lists.
 *
 * The vocabularies are 256 byte symbols, merges learned from a few sentences, then the family's
 * special tokens (at small ids: the real ones sit at 128000+ or 151643+). Structure, flags and
 * special-token handling are the real files'; only the sizes differ.
 */
import { readFileSync } from 'node:fs';

type Json = Record<string, unknown>;

export type TokenizerFamily = 'llama3' | 'qwen2' | 'qwen3' | 'smollm2';

export interface FamilyTokenizer {
  tokenizerJson: Json;
  tokenizerConfig: Json;
  chatTemplate: string;
  /** generation_config.json as the instruct model ships it (stop ids). */
  generationConfig: Json;
  /** One past the largest id. */
  size: number;
  /** Ids of the special tokens by content. */
  ids: Record<string, number>;
}

/** LLaMA-3's pre-tokenizer split, as its tokenizer.json spells it. */
export const LLAMA3_SPLIT_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/** Qwen2's: LLaMA-3's with single digits. */
export const QWEN2_SPLIT_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** GPT-2's byte -> printable character table: printable Latin-1 bytes map to themselves. */
export function byteLevelAlphabet(): string[] {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  let next = 256;
  return Array.from({ length: 256 }, (_, b) => String.fromCharCode(printable(b) ? b : next++));
}

const TRAINING_TEXT = [
  'The quick brown fox jumps over the lazy dog. The dog sleeps in the sun.',
  "It's 2024 and they're here: 12 apples, 345 pears, and the rest of the harvest.",
  'def main():\n    return [x * 2 for x in range(10)]\n\n',
  'Café, naïve, über — déjà vu. Ça va? 日本語のテキスト。',
  'system user assistant: You are a helpful assistant. Hello! How are you today?',
];

/**
 * `count` BPE merges learned greedily over the training text's words (a word: a run of letters
 * with an optional leading space, a digit, a run of other symbols, or whitespace), each word as
 * its byte-level symbols. Any merge list makes a valid BPE model; these make real-looking tokens.
 */
function learnMerges(alphabet: readonly string[], count: number): string[][] {
  const bytes = new TextEncoder();
  const words = TRAINING_TEXT.join(' ')
    .match(/ ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+/gu)!
    .map((word) => Array.from(bytes.encode(word), (b) => alphabet[b]!));
  const merges: string[][] = [];
  for (let m = 0; m < count; m++) {
    const pairs = new Map<string, number>();
    for (const word of words) {
      for (let i = 0; i + 1 < word.length; i++) {
        const key = `${word[i]}\u0000${word[i + 1]}`;
        pairs.set(key, (pairs.get(key) ?? 0) + 1);
      }
    }
    let best: string | undefined;
    for (const [key, n] of pairs) if (best === undefined || n > pairs.get(best)! || (n === pairs.get(best)! && key < best)) best = key;
    if (best === undefined) break;
    const [left, right] = best.split('\u0000') as [string, string];
    merges.push([left, right]);
    for (const word of words) {
      for (let i = 0; i + 1 < word.length; i++) {
        if (word[i] === left && word[i + 1] === right) word.splice(i, 2, left + right);
      }
    }
  }
  return merges;
}

function addedToken(id: number, content: string, special = true): Json {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special };
}

/** tokenizer_config.json's added_tokens_decoder for the added tokens. */
function addedTokensDecoder(added: Json[]): Json {
  return Object.fromEntries(added.map(({ id, ...rest }) => [String(id), rest]));
}

function bpeVocab(alphabet: readonly string[], merges: readonly string[][]): Record<string, number> {
  const vocab: Record<string, number> = {};
  alphabet.forEach((symbol, id) => (vocab[symbol] = id));
  for (const [left, right] of merges) vocab[left! + right!] ??= Object.keys(vocab).length;
  return vocab;
}

const template = (name: string) => readFileSync(new URL(`../fixtures/chat-templates/${name}.jinja`, import.meta.url), 'utf8');

/** A tokenizer in `family`'s exact format, with `merges` learned merges (default 120). */
export function familyTokenizer(family: TokenizerFamily, merges = 120): FamilyTokenizer {
  const alphabet = byteLevelAlphabet();
  // Digit merges, so that the families' different digit splits show in the tokens.
  const learned = [...learnMerges(alphabet, merges), ['1', '2'], ['12', '3'], ['4', '5']];
  const vocab = bpeVocab(alphabet, learned);
  const first = Object.keys(vocab).length;
  switch (family) {
    case 'llama3':
      return llama3(vocab, learned, first);
    case 'qwen2':
    case 'qwen3':
      return qwen(family, vocab, learned, first);
    case 'smollm2':
      return smollm2(vocab, learned, first);
  }
}

function llama3(vocab: Record<string, number>, merges: string[][], first: number): FamilyTokenizer {
  const names = ['<|begin_of_text|>', '<|end_of_text|>', '<|reserved_special_token_0|>', '<|reserved_special_token_1|>', '<|finetune_right_pad_id|>', '<|reserved_special_token_2|>', '<|start_header_id|>', '<|end_header_id|>', '<|eom_id|>', '<|eot_id|>', '<|python_tag|>'];
  const added = names.map((content, i) => addedToken(first + i, content));
  const ids = Object.fromEntries(names.map((content, i) => [content, first + i]));
  const bos = '<|begin_of_text|>';
  const tokenizerJson: Json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: LLAMA3_SPLIT_REGEX }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: 'Sequence',
      processors: [
        { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
        {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
          special_tokens: { [bos]: { id: bos, ids: [ids[bos]], tokens: [bos] } },
        },
      ],
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: true, vocab, merges,
    },
  };
  // Llama-3.2-1B-Instruct's: no add_bos_token (the post-processor adds BOS), eos = <|eot_id|>.
  const tokenizerConfig: Json = {
    added_tokens_decoder: addedTokensDecoder(added),
    bos_token: bos,
    chat_template: template('llama-3.2'),
    clean_up_tokenization_spaces: true,
    eos_token: '<|eot_id|>',
    model_input_names: ['input_ids', 'attention_mask'],
    model_max_length: 131072,
    tokenizer_class: 'PreTrainedTokenizerFast',
  };
  const eos = [ids['<|end_of_text|>']!, ids['<|eom_id|>']!, ids['<|eot_id|>']!];
  return {
    tokenizerJson, tokenizerConfig, chatTemplate: template('llama-3.2'), ids, size: first + names.length,
    generationConfig: { bos_token_id: ids[bos], do_sample: true, eos_token_id: eos, temperature: 0.6, top_p: 0.9 },
  };
}

function qwen(family: 'qwen2' | 'qwen3', vocab: Record<string, number>, merges: string[][], first: number): FamilyTokenizer {
  const specials = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|object_ref_start|>', '<|object_ref_end|>', '<|box_start|>', '<|box_end|>', '<|quad_start|>', '<|quad_end|>', '<|vision_start|>', '<|vision_end|>', '<|vision_pad|>', '<|image_pad|>', '<|video_pad|>'];
  // Added tokens that are not special: they are matched whole, but kept when decoding.
  const plain = ['<tool_call>', '</tool_call>', '<|fim_prefix|>', '<|fim_middle|>', '<|fim_suffix|>', '<|fim_pad|>', '<|repo_name|>', '<|file_sep|>', ...(family === 'qwen3' ? ['<tool_response>', '</tool_response>', '<think>', '</think>'] : [])];
  const isSpecial = (content: string) => specials.includes(content) || content.startsWith('<|fim') || content === '<|repo_name|>' || content === '<|file_sep|>';
  const names = [...specials, ...plain];
  const added = names.map((content, i) => addedToken(first + i, content, isSpecial(content)));
  const ids = Object.fromEntries(names.map((content, i) => [content, first + i]));
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  const tokenizerJson: Json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: { type: 'NFC' },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [{ type: 'Split', pattern: { Regex: QWEN2_SPLIT_REGEX }, behavior: 'Isolated', invert: false }, byteLevel],
    },
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges,
    },
  };
  const chatTemplate = template(family === 'qwen3' ? 'qwen3' : 'qwen2.5');
  const tokenizerConfig: Json = {
    add_bos_token: false,
    add_prefix_space: false,
    added_tokens_decoder: addedTokensDecoder(added),
    additional_special_tokens: ['<|im_start|>', '<|im_end|>'],
    bos_token: null,
    chat_template: chatTemplate,
    clean_up_tokenization_spaces: false,
    eos_token: '<|im_end|>',
    errors: 'replace',
    model_max_length: 131072,
    pad_token: '<|endoftext|>',
    split_special_tokens: false,
    tokenizer_class: 'Qwen2Tokenizer',
    unk_token: null,
  };
  const generationConfig =
    family === 'qwen3'
      ? { bos_token_id: ids['<|endoftext|>'], do_sample: true, eos_token_id: [ids['<|im_end|>'], ids['<|endoftext|>']], pad_token_id: ids['<|endoftext|>'], temperature: 0.6, top_k: 20, top_p: 0.95 }
      : { bos_token_id: ids['<|endoftext|>'], pad_token_id: ids['<|endoftext|>'], do_sample: true, eos_token_id: [ids['<|im_end|>'], ids['<|endoftext|>']], repetition_penalty: 1.05, temperature: 0.7, top_p: 0.8, top_k: 20 };
  return { tokenizerJson, tokenizerConfig, chatTemplate, generationConfig, ids, size: first + names.length };
}

function smollm2(vocab: Record<string, number>, merges: string[][], first: number): FamilyTokenizer {
  // SmolLM2 puts its specials first (ids 0..16); here they follow the bytes, as everywhere above.
  const names = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<repo_name>', '<reponame>', '<file_sep>', '<filename>', '<gh_stars>', '<issue_start>', '<issue_comment>', '<issue_closed>', '<jupyter_start>', '<jupyter_text>', '<jupyter_code>', '<jupyter_output>', '<jupyter_script>', '<empty_output>'];
  const added = names.map((content, i) => addedToken(first + i, content));
  const ids = Object.fromEntries(names.map((content, i) => [content, first + i]));
  const tokenizerJson: Json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [{ type: 'Digits', individual_digits: true }, { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }],
    },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges,
    },
  };
  const tokenizerConfig: Json = {
    add_prefix_space: false,
    added_tokens_decoder: addedTokensDecoder(added),
    additional_special_tokens: ['<|im_start|>', '<|im_end|>'],
    bos_token: '<|im_start|>',
    chat_template: template('smollm2'),
    clean_up_tokenization_spaces: false,
    eos_token: '<|im_end|>',
    model_max_length: 8192,
    pad_token: '<|im_end|>',
    tokenizer_class: 'GPT2Tokenizer',
    unk_token: '<|endoftext|>',
    vocab_size: 49152,
  };
  return {
    tokenizerJson, tokenizerConfig, chatTemplate: template('smollm2'), ids, size: first + names.length,
    generationConfig: { bos_token_id: ids['<|im_start|>'], eos_token_id: ids['<|im_end|>'], pad_token_id: ids['<|im_end|>'] },
  };
}
