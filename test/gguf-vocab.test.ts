import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LlamaCppPeer } from '../bench/peers/llamacpp.ts';
import { FormatError, ModelError } from '../src/errors.ts';
import { llamaGgufEntries } from '../src/checkpoint/gguf-config.ts';
import { ggufTensorName } from '../src/checkpoint/gguf-tensors.ts';
import { openGguf } from '../src/format/gguf/open.ts';
import type { GgufEntry, GgufValue } from '../src/format/gguf/types.ts';
import { writeGguf } from '../src/format/gguf/write.ts';
import { readJsonFile } from '../src/format/text-file.ts';
import { expectedTensors } from '../src/model/weights.ts';
import { tokenizerFromGguf } from '../src/tokenizer/gguf/from-gguf.ts';
import { ggufTokenizerEntries } from '../src/tokenizer/gguf/to-gguf.ts';
import { Tokenizer } from '../src/tokenizer/tokenizer.ts';
import { byteLevelAlphabet, familyTokenizer } from './helpers/family-tokenizers.ts';
import { tinyConfig } from './helpers/tiny-model.ts';

type Json = Record<string, unknown>;

const TOKENIZER_DIR = new URL('../models/tokenizer-8k/', import.meta.url);
const projectJson = readJsonFile(new URL('tokenizer.json', TOKENIZER_DIR).pathname) as Json;
const projectConfig = readJsonFile(new URL('tokenizer_config.json', TOKENIZER_DIR).pathname) as Json;

/** Every fourth non-empty line of the held-out corpus (about 330 lines, 63 kB): enough to meet most pieces. */
const CORPUS_LINES = readFileSync(new URL('../data/corpus/test.txt', import.meta.url), 'utf8')
  .split('\n')
  .filter((line, i) => line.length > 0 && i % 4 === 0);

const TRICKY = [
  ' leading space',
  '   three leading spaces',
  'inner   runs  of spaces ',
  'trailing spaces   ',
  ' ',
  '\n',
  'new\nlines\n\n\nand a blank line\n',
  '\ttabs\tand\r\nCRLF',
  'emoji 😀👍🏽👨‍👩‍👧 and flags 🇺🇳',
  'bytes \x00\x01\x1f\x7f and BOM \uFEFF',
  'unknown characters: 日本語 ∮ ₪ ῼ 𝔘𝔫𝔦',
  "it's, isn't; they'll — 'quoted'",
  'numbers 1234567 and 3.14159',
];

/** GGUF metadata as the reader gives it: the entries' values under their keys. */
function asMetadata(entries: GgufEntry[]): Map<string, GgufValue> {
  return new Map(entries.map((e) => [e.key, e.type === 'array' ? [...e.value] : e.value]));
}

function roundTrip(meta: Map<string, GgufValue>): Tokenizer {
  const back = tokenizerFromGguf(meta, 'model.gguf');
  assert.ok(back !== undefined);
  return Tokenizer.fromJson(back.tokenizerJson, back.tokenizerConfig, back.chatTemplate, 'model.gguf');
}

/** Asserts equal ids (without BOS) and equal decoding for every text. */
function assertSameTokenization(original: Tokenizer, copy: Tokenizer, texts: readonly string[]): void {
  for (const text of texts) {
    const ids = original.encode(text, { addBos: false });
    assert.deepEqual(copy.encode(text, { addBos: false }), ids, `ids of ${JSON.stringify(text.slice(0, 80))}`);
    assert.equal(copy.decode(ids), original.decode(ids), `decoding of ${JSON.stringify(text.slice(0, 80))}`);
  }
}

function entry(entries: GgufEntry[], key: string): GgufEntry['value'] | undefined {
  return entries.find((e) => e.key === key)?.value;
}

// ---------------------------------------------------------------------------------------------
// "llama" (SentencePiece-style)

const projectTokenizer = Tokenizer.fromJson(projectJson, projectConfig);
const projectEntries = ggufTokenizerEntries(projectJson, projectConfig, undefined, 'models/tokenizer-8k');

test('llama: the project tokenizer comes back from GGUF metadata with identical ids and decoding', () => {
  const copy = roundTrip(asMetadata(projectEntries));
  assertSameTokenization(projectTokenizer, copy, [...CORPUS_LINES, ...TRICKY]);
  assert.equal(copy.vocabSize, projectTokenizer.vocabSize);
  assert.equal(copy.bosId, 1);
  assert.equal(copy.eosId, 2);
  assert.equal(copy.addBosByDefault, true);
  assert.equal(copy.chatTemplate, projectTokenizer.chatTemplate);
  assert.deepEqual(copy.encode('Hi'), projectTokenizer.encode('Hi'));
});

test('llama: without tokenizer.ggml.merges (as llama.cpp writes it), merges derived from the scores give the same ids', () => {
  const meta = asMetadata(projectEntries.filter((e) => e.key !== 'tokenizer.ggml.merges'));
  assertSameTokenization(projectTokenizer, roundTrip(meta), [...CORPUS_LINES, ...TRICKY]);
});

test('llama: entries hold tokens in id order, types, rank scores, special ids and flags', () => {
  const tokens = entry(projectEntries, 'tokenizer.ggml.tokens') as string[];
  const types = entry(projectEntries, 'tokenizer.ggml.token_type') as number[];
  const scores = entry(projectEntries, 'tokenizer.ggml.scores') as number[];
  const merges = entry(projectEntries, 'tokenizer.ggml.merges') as string[];
  assert.equal(entry(projectEntries, 'tokenizer.ggml.model'), 'llama');
  assert.equal(tokens.length, projectTokenizer.vocabSize);
  tokens.forEach((token, id) => assert.equal(token, projectTokenizer.idToToken(id)));
  assert.deepEqual(types.slice(0, 4), [2, 3, 3, 6]); // <unk> unknown, <s> </s> control, <0x00> byte
  assert.equal(types[258], 6); // <0xFF>
  assert.equal(types[259], 1); // ▁
  assert.equal(types.filter((t) => t === 6).length, 256);
  // The first merge's token scores -1, the second's -2; tokens no merge makes score lowest.
  const [left0, right0] = merges[0].split(' ');
  const [left1, right1] = merges[1].split(' ');
  assert.equal(scores[tokens.indexOf(left0 + right0)], -1);
  assert.equal(scores[tokens.indexOf(left1 + right1)], -2);
  assert.equal(scores[259], -(merges.length + 1));
  assert.equal(scores[0], -(merges.length + 1));
  assert.equal(entry(projectEntries, 'tokenizer.ggml.bos_token_id'), 1);
  assert.equal(entry(projectEntries, 'tokenizer.ggml.eos_token_id'), 2);
  assert.equal(entry(projectEntries, 'tokenizer.ggml.unknown_token_id'), 0);
  assert.equal(entry(projectEntries, 'tokenizer.ggml.padding_token_id'), undefined);
  assert.equal(entry(projectEntries, 'tokenizer.ggml.add_bos_token'), true);
  assert.equal(entry(projectEntries, 'tokenizer.ggml.add_eos_token'), false);
  assert.equal(entry(projectEntries, 'tokenizer.ggml.add_space_prefix'), true);
  assert.equal(entry(projectEntries, 'tokenizer.chat_template'), projectConfig.chat_template);
  // llama.cpp checks these types.
  const typeOf = (key: string) => projectEntries.find((e) => e.key === key);
  assert.deepEqual(typeOf('tokenizer.ggml.scores'), { ...typeOf('tokenizer.ggml.scores'), type: 'array', itemType: 'f32' });
  assert.deepEqual(typeOf('tokenizer.ggml.token_type'), { ...typeOf('tokenizer.ggml.token_type'), type: 'array', itemType: 'i32' });
  assert.equal(typeOf('tokenizer.ggml.bos_token_id')?.type, 'u32');
});

test('llama: a chat template argument wins over tokenizer_config, and a pad token is written', () => {
  const entries = ggufTokenizerEntries(projectJson, { ...projectConfig, pad_token: { content: '</s>' } }, '{{ x }}', 'dir');
  assert.equal(entry(entries, 'tokenizer.chat_template'), '{{ x }}');
  assert.equal(entry(entries, 'tokenizer.ggml.padding_token_id'), 2);
  const back = tokenizerFromGguf(asMetadata(entries), 'f.gguf');
  assert.equal(back?.chatTemplate, '{{ x }}');
  assert.equal(back?.tokenizerConfig.pad_token, '</s>');
});

/** The project tokenizer without the leading "▁" (normalizer and decoder). */
function withoutSpacePrefix(): Json {
  const json = structuredClone(projectJson) as { normalizer: Json; decoder: { decoders: Json[] } };
  json.normalizer = { type: 'Replace', pattern: { String: ' ' }, content: '▁' };
  json.decoder.decoders = json.decoder.decoders.filter((d) => d.type !== 'Strip');
  return json as Json;
}

test('llama: add_space_prefix follows the normalizer or a Metaspace pre-tokenizer', () => {
  const plain = withoutSpacePrefix();
  const entries = ggufTokenizerEntries(plain, projectConfig, undefined, 'dir');
  assert.equal(entry(entries, 'tokenizer.ggml.add_space_prefix'), false);
  const original = Tokenizer.fromJson(plain, projectConfig);
  assertSameTokenization(original, roundTrip(asMetadata(entries)), [...CORPUS_LINES.slice(0, 50), ...TRICKY]);
  assert.notDeepEqual(original.encode('a b', { addBos: false }), projectTokenizer.encode('a b', { addBos: false }));

  const metaspace = { ...projectJson, normalizer: null, pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false } };
  assert.equal(entry(ggufTokenizerEntries(metaspace, projectConfig, undefined, 'dir'), 'tokenizer.ggml.add_space_prefix'), true);
  const never = { ...metaspace, pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'never', split: false } };
  assert.equal(entry(ggufTokenizerEntries(never, projectConfig, undefined, 'dir'), 'tokenizer.ggml.add_space_prefix'), false);
});

/** A SentencePiece-style GGUF vocabulary as llama.cpp's converter writes it (no merges). */
function spmMetadata(overrides: Record<string, GgufValue | undefined> = {}): Map<string, GgufValue> {
  const bytes = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  const pieces = ['▁', 'a', 'b', 'c', '▁a', 'ab', '▁ab', 'bc', '▁abc', 'abc'];
  // SentencePiece scores: higher merges first. "ab" (-1) beats "▁a" (-2), so "▁ab" comes from "▁" + "ab".
  const pieceScores = [-100, -100, -100, -100, -2, -1, -3, -4, -5, -6];
  const meta = new Map<string, GgufValue>([
    ['tokenizer.ggml.model', 'llama'],
    ['tokenizer.ggml.tokens', ['<unk>', '<s>', '</s>', ...bytes, ...pieces]],
    ['tokenizer.ggml.scores', [0, 0, 0, ...bytes.map(() => 0), ...pieceScores]],
    ['tokenizer.ggml.token_type', [2, 3, 3, ...bytes.map(() => 6), ...pieces.map(() => 1)]],
    ['tokenizer.ggml.bos_token_id', 1],
    ['tokenizer.ggml.eos_token_id', 2],
    ['tokenizer.ggml.unknown_token_id', 0],
    ['tokenizer.chat_template', '{{ messages }}'],
  ]);
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined) meta.delete(key);
    else meta.set(key, value);
  }
  return meta;
}

test('llama: a converter-style GGUF (scores, no merges) tokenizes as SentencePiece does', () => {
  const tok = roundTrip(spmMetadata());
  const pieces = (text: string) => tok.encode(text, { addBos: false }).map((id) => tok.idToToken(id));
  assert.deepEqual(pieces('ab'), ['▁ab']);
  assert.deepEqual(pieces('abc abc'), ['▁abc', '▁abc']);
  assert.deepEqual(pieces('bcd'), ['▁', 'bc', '<0x64>']); // "d" falls back to its byte
  assert.equal(tok.decode(tok.encode('bcd abc', { addBos: false })), 'bcd abc');
  assert.deepEqual(tok.encode('a'), [1, 259 + 4]); // BOS by default (llama.cpp's default for "llama")
  assert.equal(tok.chatTemplate, '{{ messages }}');
});

/**
 * llama.cpp's SPM tokenizer, naively: escape spaces, split into characters, and merge the
 * adjacent pair that spells a token with the highest score (leftmost on ties) until none does;
 * characters that are not tokens become byte tokens.
 */
function spmReference(meta: Map<string, GgufValue>, text: string): number[] {
  const tokens = meta.get('tokenizer.ggml.tokens') as string[];
  const scores = meta.get('tokenizer.ggml.scores') as number[];
  const ids = new Map(tokens.map((t, id) => [t, id]));
  const symbols = Array.from(('▁' + text).replaceAll(' ', '▁'));
  for (;;) {
    let best = -1;
    for (let i = 0; i + 1 < symbols.length; i++) {
      const id = ids.get(symbols[i] + symbols[i + 1]);
      if (id !== undefined && (best < 0 || scores[id] > scores[ids.get(symbols[best] + symbols[best + 1])!])) best = i;
    }
    if (best < 0) break;
    symbols.splice(best, 2, symbols[best] + symbols[best + 1]);
  }
  const byte = (b: number) => ids.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`)!;
  return symbols.flatMap((s) => (ids.has(s) ? [ids.get(s)!] : Array.from(new TextEncoder().encode(s), byte)));
}

test('llama: merges derived from scores reproduce the SPM algorithm on random text', () => {
  const meta = spmMetadata();
  const tok = roundTrip(meta);
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let n = 0; n < 500; n++) {
    const text = Array.from({ length: 1 + Math.floor(random() * 12) }, () => 'abcd  '[Math.floor(random() * 6)]).join('');
    assert.deepEqual(tok.encode(text, { addBos: false }), spmReference(meta, text), JSON.stringify(text));
  }
});

// ---------------------------------------------------------------------------------------------
// "gpt2" (byte-level BPE, LLaMA-3 style)

const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** A small LLaMA-3-shaped tokenizer: 256 byte symbols, a few merges, BOS/EOS as added tokens. */
function byteLevelTokenizer(preTokenizer: 'llama3' | 'gpt2' = 'llama3'): { json: Json; config: Json } {
  const merges = ['Ġ t', 'h e', 'Ġt he', 'Ġ a', 'a n', 'Ġa n', 'Ġan d', 'i n', 'o n', 'Ġ s', '1 2', '12 3', "' s", 'Ċ Ċ', 'Ġ Ġ', 'Ã ©'];
  const vocab: Record<string, number> = {};
  byteLevelAlphabet().forEach((symbol, id) => (vocab[symbol] = id));
  for (const merge of merges) vocab[merge.replace(' ', '')] = Object.keys(vocab).length;
  const bos = Object.keys(vocab).length;
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: preTokenizer === 'gpt2' };
  const json: Json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(bos, '<|begin_of_text|>'), special(bos + 1, '<|end_of_text|>')],
    normalizer: null,
    pre_tokenizer:
      preTokenizer === 'gpt2'
        ? byteLevel
        : { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: LLAMA3_SPLIT }, behavior: 'Isolated', invert: false }, byteLevel] },
    post_processor: {
      type: 'Sequence',
      processors: [
        { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
        {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [],
          special_tokens: { '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [bos], tokens: ['<|begin_of_text|>'] } },
        },
      ],
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: true, vocab, merges },
  };
  // As LLaMA-3's: no add_bos_token (the post-processor adds BOS).
  const config: Json = { bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>', clean_up_tokenization_spaces: false, chat_template: '{{ 1 }}' };
  return { json, config };
}

const BYTE_LEVEL_TEXTS = [
  'the sand and the sea',
  "it's 12345 and 123 o'clock",
  '  the\n\nthe  ',
  'café, naïve 😀',
  'THE AND',
  ...CORPUS_LINES.slice(0, 20),
];

test('gpt2: a LLaMA-3-style byte-level tokenizer comes back with identical ids and decoding', () => {
  const { json, config } = byteLevelTokenizer();
  const original = Tokenizer.fromJson(json, config);
  const entries = ggufTokenizerEntries(json, config, undefined, 'dir');
  assert.equal(entry(entries, 'tokenizer.ggml.model'), 'gpt2');
  assert.equal(entry(entries, 'tokenizer.ggml.pre'), 'llama-bpe');
  assert.deepEqual((entry(entries, 'tokenizer.ggml.merges') as string[]).slice(0, 3), ['Ġ t', 'h e', 'Ġt he']);
  assert.equal(entry(entries, 'tokenizer.ggml.scores'), undefined);
  const types = entry(entries, 'tokenizer.ggml.token_type') as number[];
  assert.deepEqual(types.slice(-3), [1, 3, 3]); // last merge, then the two special tokens
  assert.equal(entry(entries, 'tokenizer.ggml.bos_token_id'), 272);
  assert.equal(entry(entries, 'tokenizer.ggml.add_bos_token'), true); // from the post-processor
  assert.equal(entry(entries, 'tokenizer.ggml.add_space_prefix'), undefined);

  const back = tokenizerFromGguf(asMetadata(entries), 'model.gguf')!;
  assert.equal((back.tokenizerJson.model as Json).ignore_merges, true);
  const copy = Tokenizer.fromJson(back.tokenizerJson, { ...back.tokenizerConfig, clean_up_tokenization_spaces: false }, back.chatTemplate);
  assertSameTokenization(original, copy, BYTE_LEVEL_TEXTS);
  assert.deepEqual(copy.encode('the'), [272, ...original.encode('the', { addBos: false })]);
  assert.equal(copy.eosId, 273);
  assert.equal(copy.chatTemplate, '{{ 1 }}');
  // The split keeps digits in threes and "'s" apart, as LLaMA-3 does.
  const symbols = (text: string) => copy.encode(text, { addBos: false }).map((id) => copy.idToToken(id));
  assert.deepEqual(symbols("1234's"), ['123', '4', "'s"]);
});

test('gpt2: a GPT-2 ByteLevel pre-tokenizer is written and read as "gpt-2"', () => {
  const { json, config } = byteLevelTokenizer('gpt2');
  const entries = ggufTokenizerEntries(json, config, undefined, 'dir');
  assert.equal(entry(entries, 'tokenizer.ggml.pre'), 'gpt-2');
  const back = tokenizerFromGguf(asMetadata(entries), 'model.gguf')!;
  assert.equal((back.tokenizerJson.model as Json).ignore_merges, false);
  const copy = Tokenizer.fromJson(back.tokenizerJson, { ...back.tokenizerConfig, clean_up_tokenization_spaces: false });
  const original = Tokenizer.fromJson({ ...json, model: { ...(json.model as Json), ignore_merges: false } }, config);
  assertSameTokenization(original, copy, BYTE_LEVEL_TEXTS);
});

// ---------------------------------------------------------------------------------------------
// Errors

test('tokenizerFromGguf: no tokenizer, and unsupported tokenizer models', () => {
  assert.equal(tokenizerFromGguf(new Map(), 'f.gguf'), undefined);
  assert.equal(tokenizerFromGguf(new Map([['tokenizer.ggml.model', 'none']]), 'f.gguf'), undefined);
  assert.throws(() => tokenizerFromGguf(new Map([['tokenizer.ggml.model', 'bert']]), 'f.gguf'), (e: Error) => e instanceof ModelError && /f\.gguf.*"bert"/.test(e.message));
  assert.throws(() => tokenizerFromGguf(new Map([['tokenizer.ggml.model', 7]]), 'f.gguf'), FormatError);
});

test('tokenizerFromGguf: malformed "llama" metadata is a FormatError naming the file and key', () => {
  const tokens = spmMetadata().get('tokenizer.ggml.tokens') as string[];
  const cases: [Record<string, GgufValue | undefined>, RegExp][] = [
    [{ 'tokenizer.ggml.tokens': undefined }, /tokenizer\.ggml\.tokens is missing/],
    [{ 'tokenizer.ggml.tokens': [1, 2] }, /tokenizer\.ggml\.tokens must be an array of strings/],
    [{ 'tokenizer.ggml.tokens': [...tokens.slice(0, -1), 'a'] }, /holds "a" twice/],
    [{ 'tokenizer.ggml.scores': [0, 1] }, /tokenizer\.ggml\.scores has 2 entries for 269 tokens/],
    [{ 'tokenizer.ggml.scores': tokens.map(() => 'x') }, /tokenizer\.ggml\.scores must be an array of numbers/],
    [{ 'tokenizer.ggml.token_type': tokens.map(() => 9) }, /token_type\[0\] must be an integer in 0\.\.6, got 9/],
    [{ 'tokenizer.ggml.token_type': [1] }, /token_type has 1 entries for 269 tokens/],
    [{ 'tokenizer.ggml.bos_token_id': 269 }, /bos_token_id is 269, outside the 269 tokens/],
    [{ 'tokenizer.ggml.eos_token_id': -1 }, /eos_token_id must be a token id, got -1/],
    [{ 'tokenizer.ggml.add_bos_token': 'yes' }, /add_bos_token must be a boolean/],
    [{ 'tokenizer.chat_template': 3 }, /chat_template must be a string/],
    [{ 'tokenizer.ggml.scores': undefined }, /needs tokenizer\.ggml\.scores/],
    [{ 'tokenizer.ggml.merges': ['a x'] }, /merges\[0\] "a x" is not two tokens that join into a token/],
  ];
  for (const [overrides, message] of cases) {
    assert.throws(
      () => tokenizerFromGguf(spmMetadata(overrides), 'f.gguf'),
      (e: Error) => e instanceof FormatError && e.message.startsWith('f.gguf: ') && message.test(e.message),
      `${JSON.stringify(Object.keys(overrides))} should fail with ${message}`,
    );
  }
  // add_bos needs a BOS token: here the default id 1 is out of range of a one-token vocabulary.
  const tiny = new Map<string, GgufValue>([['tokenizer.ggml.model', 'llama'], ['tokenizer.ggml.tokens', ['a']], ['tokenizer.ggml.scores', [0]]]);
  assert.throws(() => tokenizerFromGguf(tiny, 'f.gguf'), /add_bos_token is true but there is no BOS token/);
  tiny.set('tokenizer.ggml.add_bos_token', false);
  assert.ok(tokenizerFromGguf(tiny, 'f.gguf'));
});

test('tokenizerFromGguf: "gpt2" needs merges and a pre-tokenizer ppd knows', () => {
  const { json, config } = byteLevelTokenizer();
  const meta = asMetadata(ggufTokenizerEntries(json, config, undefined, 'dir'));
  const without = (key: string) => new Map([...meta].filter(([k]) => k !== key));
  assert.throws(() => tokenizerFromGguf(without('tokenizer.ggml.merges'), 'f.gguf'), /f\.gguf: a "gpt2" tokenizer needs tokenizer\.ggml\.merges/);
  assert.throws(() => tokenizerFromGguf(without('tokenizer.ggml.pre'), 'f.gguf'), (e: Error) => e instanceof ModelError && /no tokenizer\.ggml\.pre/.test(e.message));
  assert.throws(
    () => tokenizerFromGguf(new Map([...meta, ['tokenizer.ggml.pre', 'falcon']]), 'f.gguf'),
    (e: Error) => e instanceof ModelError && /tokenizer\.ggml\.pre "falcon" is not supported \(ppd reads "llama-bpe", "qwen2", "smollm", "gpt-2"\)/.test(e.message),
  );
  assert.ok(tokenizerFromGguf(new Map([...meta, ['tokenizer.ggml.pre', 'llama3']]), 'f.gguf'));
});

test('ggufTokenizerEntries: tokenizers GGUF cannot express are a ModelError naming the file', () => {
  const unigram = { ...projectJson, model: { type: 'Unigram', unk_id: 0, vocab: [['<unk>', 0]] } };
  assert.throws(() => ggufTokenizerEntries(unigram, {}, undefined, 'dir/tokenizer.json'), (e: Error) => e instanceof ModelError && /dir\/tokenizer\.json.*"Unigram"/.test(e.message));
  const wordPiece = { ...projectJson, model: { type: 'WordPiece', unk_token: '[UNK]', vocab: { '[UNK]': 0 } } };
  assert.throws(() => ggufTokenizerEntries(wordPiece, {}, undefined, 'dir'), /"WordPiece" cannot be written to GGUF/);
  const noFallback = { ...projectJson, model: { ...(projectJson.model as Json), byte_fallback: false } };
  assert.throws(() => ggufTokenizerEntries(noFallback, projectConfig, undefined, 'dir'), /without byte_fallback or a ByteLevel pre-tokenizer/);
  const lowercase = { ...projectJson, normalizer: { type: 'Sequence', normalizers: [{ type: 'Lowercase' }, ...((projectJson.normalizer as Json).normalizers as Json[])] } };
  assert.throws(() => ggufTokenizerEntries(lowercase, projectConfig, undefined, 'dir'), /normalizer step "Lowercase" has no GGUF equivalent/);
  const noSpaces = { ...projectJson, normalizer: null };
  assert.throws(() => ggufTokenizerEntries(noSpaces, projectConfig, undefined, 'dir'), /does not turn spaces into "▁"/);
  const { json, config } = byteLevelTokenizer();
  const otherSplit = structuredClone(json) as { pre_tokenizer: { pretokenizers: { pattern: { Regex: string } }[] } };
  otherSplit.pre_tokenizer.pretokenizers[0].pattern.Regex = LLAMA3_SPLIT.replace('{1,3}', '{1,2}');
  assert.throws(() => ggufTokenizerEntries(otherSplit as Json, config, undefined, 'dir'), /none llama\.cpp names \("llama-bpe", "qwen2", "smollm", "gpt-2"\)/);
  assert.throws(() => ggufTokenizerEntries({ ...json, normalizer: { type: 'Lowercase' } }, config, undefined, 'dir'), /normalizer "Lowercase" has no GGUF equivalent/);
  assert.throws(() => ggufTokenizerEntries({ ...projectJson, model: null }, projectConfig, undefined, 'dir'), (e: Error) => e instanceof FormatError && /field "model" must be an object/.test(e.message));
});

// ---------------------------------------------------------------------------------------------
// Through a GGUF file, and llama.cpp

/** A GGUF file llama.cpp loads: a one-layer model of zeros with `vocabSize` rows and `entries`. */
function writeTokenizerGguf(path: string, vocabSize: number, entries: GgufEntry[]): void {
  const config = tinyConfig({ vocabSize, hiddenSize: 32, intermediateSize: 64, numLayers: 1, numHeads: 4, numKvHeads: 4, headDim: 8 });
  const tensors = [...expectedTensors(config)].map(([name, shape]) => ({
    name: ggufTensorName(name)!,
    type: 'F32' as const,
    dims: [...shape].reverse(),
    data: () => new Uint8Array(4 * shape.reduce((a, b) => a * b, 1)),
  }));
  writeGguf(path, [...llamaGgufEntries(config, { fileType: 'F32' }), ...entries], tensors);
}

test('llama.cpp tokenizes text exactly as ppd does from a GGUF file carrying these entries', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ppd-gguf-vocab-'));
  try {
    const { json, config } = byteLevelTokenizer();
    const byteLevel = Tokenizer.fromJson(json, config);
    const cases = [
      { name: 'project (llama)', tokenizer: projectTokenizer, entries: projectEntries, texts: [...CORPUS_LINES, ...TRICKY] },
      { name: 'byte-level (gpt2)', tokenizer: byteLevel, entries: ggufTokenizerEntries(json, config, undefined, 'dir'), texts: BYTE_LEVEL_TEXTS },
      ...(['qwen2', 'smollm2'] as const).map((family) => {
        const t = familyTokenizer(family);
        const entries = ggufTokenizerEntries(t.tokenizerJson, t.tokenizerConfig, t.chatTemplate, family);
        return { name: family, tokenizer: Tokenizer.fromJson(t.tokenizerJson, t.tokenizerConfig), entries, texts: BYTE_LEVEL_TEXTS };
      }),
    ];
    for (const { name, tokenizer, entries, texts } of cases) {
      const path = join(dir, 'tokenizer.gguf');
      writeTokenizerGguf(path, tokenizer.vocabSize, entries);
      // ppd reads the file back to the same tokenizer (f32 scores, i32 types, strings as written).
      const file = openGguf(path);
      const back = tokenizerFromGguf(file.metadata, path)!;
      file.close();
      const copy = Tokenizer.fromJson(back.tokenizerJson, { ...back.tokenizerConfig, clean_up_tokenization_spaces: false }, back.chatTemplate, path);
      assertSameTokenization(tokenizer, copy, texts);

      const peer = await LlamaCppPeer.open(path, { threads: 1, contextSize: 64 });
      try {
        for (const text of texts) {
          assert.deepEqual(peer.tokenize(text), tokenizer.encode(text, { addBos: false }), `${name}: ${JSON.stringify(text.slice(0, 80))}`);
        }
      } finally {
        await peer.close();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
