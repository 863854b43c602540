import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError, InputError } from '../src/errors.ts';
import { Rng } from '../src/sampling/rng.ts';
import {
  BYTE_TOKENIZER_VOCAB_SIZE,
  byteFallbackTokenizerConfig,
  byteFallbackTokenizerJson,
} from '../src/tokenizer/byte-tokenizer.ts';
import { encodePrompt } from '../src/tokenizer/prompt.ts';
import { StreamDecoder } from '../src/tokenizer/stream-decoder.ts';
import { INLINE_PROMPT_CHARS, promptChars, TokenizerThread } from '../src/tokenizer/thread.ts';
import { Tokenizer } from '../src/tokenizer/tokenizer.ts';
import { openForReading } from '../src/format/file-io.ts';

const tok = Tokenizer.fromJson(byteFallbackTokenizerJson(), byteFallbackTokenizerConfig());

/** The byte tokenizer plus a few multi-character pieces and merges, and a Metaspace decoder. */
function piecesTokenizer(): Tokenizer {
  const json = byteFallbackTokenizerJson() as { model: { vocab: Record<string, number>; merges: string[] }; decoder: object };
  const pieces = ['▁▁', 'he', '▁t', '▁the', 'é', '😀'];
  pieces.forEach((p, i) => (json.model.vocab[p] = 260 + i));
  json.model.merges = ['▁ ▁', 'h e', '▁ t', '▁t he'];
  json.decoder = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true };
  return Tokenizer.fromJson(json, byteFallbackTokenizerConfig());
}

const SAMPLES = [
  'Hello, world!',
  'héllo wörld — ünïcödé ñ',
  '日本語のテキスト',
  '😀👍🏽👨‍👩‍👧 🇺🇳',
  '  leading and   inner   and trailing  ',
  ' ',
  '\n\n\t\r\n x',
  '\x00\x01\x1f\x7f control',
  '\uFEFFstarts with a byte order mark',
  'mixed 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and ascii',
];

/** Random text from a seeded Rng: ASCII, whitespace runs, accents, CJK and astral characters. */
function randomText(rng: Rng, length: number): string {
  const pools = [' ', '  ', '\n', '\t', 'a', 'Z', '.', 'é', 'ß', '中', '€', '😀', '𝔘', '\u0301', '\x00', '\uFEFF'];
  let s = '';
  for (let i = 0; i < length; i++) {
    s += rng.next() < 0.5 ? String.fromCharCode(32 + Math.floor(rng.next() * 95)) : pools[Math.floor(rng.next() * pools.length)];
  }
  return s.replaceAll('<s>', '').replaceAll('</s>', '').replaceAll('<unk>', '');
}

test('byte tokenizer: LLaMA ids, vocab size, BOS on by default', () => {
  assert.equal(tok.vocabSize, BYTE_TOKENIZER_VOCAB_SIZE);
  assert.equal(tok.bosId, 1);
  assert.equal(tok.eosId, 2);
  assert.equal(tok.addBosByDefault, true);
  assert.equal(tok.idToToken(3), '<0x00>');
  assert.equal(tok.idToToken(258), '<0xFF>');
  assert.equal(tok.idToToken(259), '▁');
  assert.deepEqual(tok.encode('Hi'), [1, 259, 3 + 0x48, 3 + 0x69]);
  assert.deepEqual(tok.encode('Hi', { addBos: false }), [259, 3 + 0x48, 3 + 0x69]);
  assert.deepEqual(tok.encode(''), [1]);
  assert.deepEqual(tok.encode('', { addBos: false }), []);
  assert.ok(tok.chatTemplate?.includes('add_generation_prompt'));
});

test('byte tokenizer round-trips Unicode, whitespace, control bytes, emoji and the empty string', () => {
  const rng = new Rng(7);
  const texts = [...SAMPLES, ''];
  for (let i = 0; i < 200; i++) texts.push(randomText(rng, 1 + Math.floor(rng.next() * 40)));
  for (const text of texts) {
    const ids = tok.encode(text);
    assert.equal(tok.decode(ids, { skipSpecial: true }), text, JSON.stringify(text));
    assert.ok(ids.every((id) => id >= 0 && id < BYTE_TOKENIZER_VOCAB_SIZE));
  }
});

test('decode: special tokens kept or skipped, unknown ids ignored, bad ids rejected', () => {
  const ids = [1, ...tok.encode('ok', { addBos: false }), 2];
  assert.equal(tok.decode(ids), '<s> ok</s>');
  assert.equal(tok.decode(ids, { skipSpecial: true }), 'ok');
  assert.equal(tok.decode([]), '');
  assert.equal(tok.decode([...ids.slice(0, 4), 999, 300]), '<s> ok');
  assert.throws(() => tok.decode([-1]), InputError);
  assert.throws(() => tok.decode([1.5]), InputError);
});

test('BOS default follows add_bos_token, then the post-processor template', () => {
  const json = byteFallbackTokenizerJson();
  const { add_bos_token: _, ...noFlag } = byteFallbackTokenizerConfig() as Record<string, unknown>;
  assert.equal(Tokenizer.fromJson(json, { ...noFlag, add_bos_token: false }).encode('a')[0], 259);
  assert.equal(Tokenizer.fromJson(json, noFlag).addBosByDefault, true); // template starts with <s>
  const noTemplate = { ...(json as object), post_processor: null };
  assert.equal(Tokenizer.fromJson(noTemplate, noFlag).addBosByDefault, false);
});

test('without tokenizer_config.json, BOS is what tokenizer.json\'s post-processor adds, whatever its kind', () => {
  const withProcessor = (post_processor: object | null) => Tokenizer.fromJson({ ...(byteFallbackTokenizerJson() as object), post_processor });
  const template = { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }], pair: [], special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } } };
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const cases: [string, object | null, number | null][] = [
    ['TemplateProcessing "<s> $A"', template, 1],
    ['RobertaProcessing', { type: 'RobertaProcessing', cls: ['<s>', 1], sep: ['</s>', 2], trim_offsets: true, add_prefix_space: false }, 1],
    ['BertProcessing', { type: 'BertProcessing', cls: ['<s>', 1], sep: ['</s>', 2] }, 1],
    ['Sequence [ByteLevel, TemplateProcessing]', { type: 'Sequence', processors: [byteLevel, template] }, 1],
    ['ByteLevel alone (adds nothing)', byteLevel, null],
    ['no post-processor', null, null],
  ];
  for (const [what, processor, bos] of cases) {
    const t = withProcessor(processor);
    assert.equal(t.bosId, bos, what);
    assert.equal(t.addBosByDefault, bos !== null, what);
    assert.deepEqual(t.encode('Hi').slice(0, bos === null ? 1 : 2), bos === null ? [259] : [1, 259], what);
  }
  // tokenizer_config.json's add_bos_token still wins over the post-processor.
  assert.equal(Tokenizer.fromJson({ ...(byteFallbackTokenizerJson() as object), post_processor: template }, { add_bos_token: false }).addBosByDefault, false);
});

test('fromFile: loads tokenizer.json; FormatError names a missing or malformed file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ppd-tok-'));
  const good = join(dir, 'tokenizer.json');
  writeFileSync(good, JSON.stringify(byteFallbackTokenizerJson()));
  assert.deepEqual(Tokenizer.fromFile(openForReading(good), byteFallbackTokenizerConfig()).encode('x'), [1, 259, 3 + 0x78]);

  const bad = join(dir, 'bad.json');
  writeFileSync(bad, '{"model": ');
  for (const path of [bad, join(dir, 'missing.json')]) {
    assert.throws(
      () => Tokenizer.fromFile(openForReading(path)),
      (e: unknown) => e instanceof FormatError && e.message.includes(path),
    );
  }
  writeFileSync(bad, '{"model": {"type": "Nope"}}');
  assert.throws(() => Tokenizer.fromFile(openForReading(bad)), FormatError);
});

/** Feeds ids to a StreamDecoder in random-sized chunks and concatenates what comes out. */
function streamAll(t: Tokenizer, ids: number[], rng: Rng, skipSpecial: boolean): { text: string; pieces: string[] } {
  const stream = new StreamDecoder(t, { skipSpecial });
  const pieces: string[] = [];
  for (let i = 0; i < ids.length; ) {
    const n = rng.next() < 0.7 ? 1 : 1 + Math.floor(rng.next() * 4);
    pieces.push(stream.push(ids.slice(i, i + n)));
    i += n;
  }
  pieces.push(stream.flush());
  return { text: pieces.join(''), pieces };
}

test('stream decoder: concatenation equals full decode for random id sequences', () => {
  const rng = new Rng(11);
  for (const t of [tok, piecesTokenizer()]) {
    for (let trial = 0; trial < 400; trial++) {
      const length = Math.floor(rng.next() * 30);
      // Mostly real token ids (specials and bytes of all kinds), some beyond the tokenizer's vocab.
      const ids = Array.from({ length }, () => Math.floor(rng.next() * (t.vocabSize + 5)));
      for (const skipSpecial of [true, false]) {
        const expected = t.decode(ids, { skipSpecial, cleanUpSpaces: false });
        assert.equal(streamAll(t, ids, rng, skipSpecial).text, expected, JSON.stringify(ids));
      }
    }
  }
});

test('stream decoder: valid text never shows U+FFFD and splits only between characters', () => {
  const rng = new Rng(5);
  for (const t of [tok, piecesTokenizer()]) {
    const texts = [...SAMPLES];
    for (let i = 0; i < 100; i++) texts.push(randomText(rng, 1 + Math.floor(rng.next() * 60)));
    for (const text of texts) {
      const ids = [...t.encode(text), ...t.encode(' again 😀', { addBos: false })];
      const { text: streamed, pieces } = streamAll(t, ids, rng, true);
      assert.equal(streamed, t.decode(ids, { skipSpecial: true }));
      for (const piece of pieces) {
        assert.ok(!piece.includes('\uFFFD'), `U+FFFD streamed for ${JSON.stringify(text)}`);
        assert.ok(!/^[\uDC00-\uDFFF]|[\uD800-\uDBFF]$/.test(piece), 'a piece splits a surrogate pair');
      }
    }
  }
});

test('stream decoder: an emoji spelled in four byte tokens appears once, whole', () => {
  const ids = tok.encode('a😀', { addBos: false }); // ▁ a F0 9F 98 80
  const stream = new StreamDecoder(tok);
  const out = ids.map((id) => stream.push(id));
  assert.deepEqual(out, ['', 'a', '', '', '', '😀']);
  assert.equal(stream.flush(), '');
});

test('stream decoder: the space of a mid-text "▁word" survives window restarts', () => {
  const ids = tok.encode('one two  three', { addBos: false });
  const stream = new StreamDecoder(tok);
  const text = ids.map((id) => stream.push(id)).join('') + stream.flush();
  assert.equal(text, 'one two  three');
  // A skipped special token between words must not eat the following space.
  const withEos = [...tok.encode('a'), 2, ...tok.encode('b', { addBos: false })];
  const stream2 = new StreamDecoder(tok);
  assert.equal(withEos.map((id) => stream2.push(id)).join('') + stream2.flush(), 'a b');
});

test('stream decoder: an incomplete character is released by flush', () => {
  const stream = new StreamDecoder(tok);
  assert.equal(stream.push([259, 3 + 0xe2, 3 + 0x82]), '');
  assert.equal(stream.flush(), '\uFFFD');
});

test('minTokens is a lower bound on the encoded length (samples, random text, merges, the bundled tokenizer)', () => {
  const bundled = join(import.meta.dirname, '..', 'models', 'ppd-base', 'tokenizer.json');
  const tokenizers = [tok, piecesTokenizer(), ...(existsSync(bundled) ? [Tokenizer.fromFile(openForReading(bundled))] : [])];
  const rng = new Rng(5);
  const texts = [...SAMPLES, ...Array.from({ length: 40 }, (_, i) => randomText(rng, 1 + i * 7)), 'the '.repeat(300), 'he'.repeat(500), 'x'.repeat(2000)];
  for (const t of tokenizers) {
    for (const text of texts) {
      const bound = t.minTokens(text);
      assert.ok(bound <= t.encode(text).length, `minTokens ${bound} > encoded length for ${JSON.stringify(text.slice(0, 40))}`);
    }
    assert.ok(t.minTokens('x'.repeat(100_000)) >= 1000, 'and it grows with the text');
  }
});

test('encodePrompt refuses a prompt certain to exceed the context before encoding it', () => {
  assert.deepEqual(encodePrompt(tok, 'short', { contextLength: 64 }), tok.encode('short'));
  assert.throws(() => encodePrompt(tok, 'y'.repeat(10_000), { contextLength: 64 }), (e: Error) => e instanceof InputError && /at least \d+ tokens; the model's context is 64/.test(e.message));
});

test('with the tokenizer at hand, short prompts are encoded on the calling thread, long ones on the thread; the same ids and errors either way', async () => {
  const where: string[] = [];
  const thread = new TokenizerThread(tok.source, { local: tok, onEncode: (w) => where.push(w) });
  try {
    const short = randomText(new Rng(4), INLINE_PROMPT_CHARS).slice(0, INLINE_PROMPT_CHARS - 1).padEnd(INLINE_PROMPT_CHARS - 1, 'x') + '.';
    assert.equal(promptChars(short), INLINE_PROMPT_CHARS);
    let timerFired = false;
    setTimeout(() => (timerFired = true), 0);
    assert.deepEqual(await thread.encodePrompt(short), tok.encode(short));
    assert.equal(timerFired, false, 'a short prompt is answered without waiting for the event loop');
    const chat = [{ role: 'user', content: 'hi there' }];
    assert.equal(promptChars(chat), 12);
    assert.deepEqual(await thread.encodePrompt(chat), encodePrompt(tok, chat));
    const long = short + '!';
    const pending = thread.encodePrompt(long);
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.ok(timerFired);
    assert.deepEqual(await pending, tok.encode(long), 'a longer one through the thread');
    await assert.rejects(thread.encodePrompt(''), (e: Error) => e instanceof InputError && /the prompt is empty/.test(e.message));
    await assert.rejects(thread.encodePrompt('z'.repeat(400), { contextLength: 16 }), (e: Error) => e instanceof InputError && /context is 16/.test(e.message));
    const controller = new AbortController();
    controller.abort(new Error('gone'));
    await assert.rejects(thread.encodePrompt('short', {}, controller.signal), /gone/);
    assert.deepEqual(where, ['inline', 'inline', 'thread', 'inline', 'inline'], 'where each prompt went (the aborted one nowhere)');
    await thread.start();
    assert.equal(where.length, 5, 'start() warms the thread up with a job of its own, whatever its size');
  } finally {
    await thread.close();
  }
  await assert.rejects(thread.encodePrompt('after close'), /closed/);
});

test('the tokenizer thread encodes like the tokenizer, off the event loop; errors come back as they were raised', async () => {
  const thread = new TokenizerThread(tok.source);
  try {
    const text = randomText(new Rng(9), 3000);
    let timerFired = false;
    setTimeout(() => (timerFired = true), 1);
    const ids = await thread.encodePrompt(text);
    assert.ok(timerFired, 'the event loop ran while the thread encoded');
    assert.deepEqual(ids, tok.encode(text));
    // Jobs queue in order; a job aborted while it waits is dropped with the signal's reason.
    const controller = new AbortController();
    const [a, b, c] = [thread.encodePrompt('one'), thread.encodePrompt('two', {}, controller.signal), thread.encodePrompt('three')];
    const bRefused = assert.rejects(b, /gone/);
    controller.abort(new Error('gone'));
    assert.deepEqual(await a, tok.encode('one'));
    await bRefused;
    assert.deepEqual(await c, tok.encode('three'));
    await assert.rejects(thread.encodePrompt('z'.repeat(5000), { contextLength: 16 }), (e: Error) => e instanceof InputError && /context is 16/.test(e.message));
    await assert.rejects(thread.encodePrompt(''), (e: Error) => e instanceof InputError && /the prompt is empty/.test(e.message));
    const chat = [{ role: 'user', content: 'hi' }];
    assert.deepEqual(await thread.encodePrompt(chat), encodePrompt(tok, chat));
  } finally {
    await thread.close();
  }
  await assert.rejects(thread.encodePrompt('after close'), /closed/);
});
