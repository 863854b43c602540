/**
 * A minimal LLaMA-style byte-fallback tokenizer, built in memory, for random-weight demo and
 * test models that ship no tokenizer.json.
 *
 * It has the same pipeline as LLaMA-2's tokenizer.json (metaspace normalizer, BPE with
 * byte_fallback, Replace/ByteFallback/Fuse/Strip decoder, BOS template) but no merges: every
 * space is "▁" and every other character is spelled as its UTF-8 bytes. So it encodes any text
 * and round-trips it exactly, with BYTE_TOKENIZER_VOCAB_SIZE ids. Not a real model's tokenizer.
 *
 * Ids: <unk>=0, <s>=1, </s>=2, <0x00>..<0xFF>=3..258, "▁"=259.
 *
 * The tokenizer.json skeleton (`llamaTokenizerJson`) is shared with train-bpe.ts, whose trained
 * tokenizers are this one plus learned pieces and merges.
 */

export const BYTE_TOKENIZER_VOCAB_SIZE = 260;

/** "▁", SentencePiece's visible space. */
export const SPACE_PIECE = '\u2581';

/** Id of the first piece after <unk>, <s>, </s> and the 256 byte tokens. */
export const FIRST_PIECE_ID = 259;

/** Byte token name as SentencePiece spells it: <0x0A>. */
function byteToken(byte: number): string {
  return `<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`;
}

function specialToken(id: number, content: string): object {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

/** <unk>, <s>, </s> and <0x00>..<0xFF>, by id. */
function reservedVocab(): Record<string, number> {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[byteToken(b)] = 3 + b;
  return vocab;
}

/** Token strings a learned piece must never spell: the vocabulary maps each string to one id. */
export const RESERVED_PIECES: ReadonlySet<string> = new Set(Object.keys(reservedVocab()));

/** The tokenizer.json object (same schema as Hugging Face's). */
export function byteFallbackTokenizerJson(): object {
  return llamaTokenizerJson([SPACE_PIECE], []);
}

/**
 * A LLaMA-2-style tokenizer.json: `pieces` get ids FIRST_PIECE_ID, FIRST_PIECE_ID + 1, ...;
 * `merges` are "left right" strings in rank order (pieces never hold U+0020, which the
 * normalizer turns into "▁", so the space separator is unambiguous).
 */
export function llamaTokenizerJson(pieces: readonly string[], merges: readonly string[]): object {
  const vocab = reservedVocab();
  pieces.forEach((piece, i) => {
    if (Object.hasOwn(vocab, piece)) throw new Error(`piece ${JSON.stringify(piece)} is already in the vocabulary`);
    vocab[piece] = FIRST_PIECE_ID + i;
  });

  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [specialToken(0, '<unk>'), specialToken(1, '<s>'), specialToken(2, '</s>')],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: SPACE_PIECE },
        { type: 'Replace', pattern: { String: ' ' }, content: SPACE_PIECE },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<s>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<s>', type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: llamaDecoder(true),
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      vocab,
      merges: [...merges],
    },
  };
}

/**
 * A Zephyr-style chat template that writes bos_token first, as LLaMA-2's does: rendered chats
 * are encoded without adding BOS (see chat-template.ts).
 */
const CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}" +
  "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";

/**
 * The matching tokenizer_config.json object, also for train-bpe.ts's tokenizers: it depends only
 * on the special tokens, which they share.
 */
export function byteFallbackTokenizerConfig(): object {
  return {
    add_bos_token: true,
    add_eos_token: false,
    bos_token: '<s>',
    eos_token: '</s>',
    unk_token: '<unk>',
    clean_up_tokenization_spaces: false,
    model_max_length: 4096,
    tokenizer_class: 'LlamaTokenizer',
    chat_template: CHAT_TEMPLATE,
  };
}

/**
 * The LLaMA-2 (SentencePiece-style) tokenizer.json decoder: "▁" back to spaces, <0xNN> tokens to
 * bytes, and, when encoding prepended a space, that space stripped again.
 */
export function llamaDecoder(stripPrependedSpace: boolean): Record<string, unknown> {
  return {
    type: 'Sequence',
    decoders: [
      { type: 'Replace', pattern: { String: SPACE_PIECE }, content: ' ' },
      { type: 'ByteFallback' },
      { type: 'Fuse' },
      ...(stripPrependedSpace ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
    ],
  };
}
