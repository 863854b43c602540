import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InputError } from '../src/errors.ts';
import { Rng } from '../src/sampling/rng.ts';
import { byteFallbackTokenizerJson } from '../src/tokenizer/byte-tokenizer.ts';
import { Tokenizer } from '../src/tokenizer/tokenizer.ts';
import { trainBpe } from '../src/tokenizer/train-bpe.ts';

interface TokenizerJson {
  model: { vocab: Record<string, number>; merges: string[] };
}

const WORDS = [
  'the', 'model', 'token', 'decoder', 'parallel', 'prompt', 'tokenizer', 'training', 'of', 'and',
  'a', 'is', 'to', 'in', 'guess', 'tree', 'cache', 'layer', 'attention', 'weights', 'runs', 'fast',
];
const EXTRAS = ['café', 'naïve', '日本語', 'Ελληνικά', 'größer', '😀', '→', '123', '2024-05-01'];

/** A few KB of varied text from a seeded Rng: sentences, punctuation, newlines, indentation. */
function corpus(seed = 1, sentences = 150): string {
  const rng = new Rng(seed);
  const pick = (list: string[]): string => list[Math.floor(rng.next() * list.length)];
  let text = '';
  for (let s = 0; s < sentences; s++) {
    const words: string[] = [];
    const n = 4 + Math.floor(rng.next() * 8);
    for (let w = 0; w < n; w++) words.push(rng.next() < 0.1 ? pick(EXTRAS) : pick(WORDS));
    words[0] = words[0][0].toUpperCase() + words[0].slice(1);
    text += (rng.next() < 0.15 ? '    ' : '') + words.join(' ') + pick(['.', '.', '!', '?', ',']) + pick([' ', ' ', '\n', '\n\n']);
  }
  return text;
}

const CORPUS = corpus();
const VOCAB_SIZE = 500;

const trainStart = performance.now();
const trained = trainBpe(CORPUS, { vocabSize: VOCAB_SIZE });
const trainMs = performance.now() - trainStart;
const tok = Tokenizer.fromJson(trained.tokenizerJson, trained.tokenizerConfig);

const ROUND_TRIPS: Record<string, string[]> = {
  unicode: ['日本語のテキスト 中文 한국어', 'café naïve größer Ελληνικά', 'e\u0301 a\u0308\u0323 ñ', 'mixed 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ascii'],
  whitespace: ['  two leading', 'trailing  ', 'inner     run', '\ttab\t\tstop', 'new\nline\n\n\nruns\r\n', ' ', '   ', '\n'],
  control: ['\u0000', 'a\u0007b', '\u001b[31mred\u001b[0m', '\u0001\u001f\u007f', '\uFEFFbom'],
  emoji: ['😀👍🏽', '👨‍👩‍👧‍👦 family', '🏳️‍🌈 🇯🇵🇺🇸', 'the 😀 model'],
  empty: [''],
  inDomain: [CORPUS.slice(0, 500), 'The parallel prompt decoder runs fast.'],
};

function roundTrip(t: Tokenizer, text: string): void {
  const ids = t.encode(text);
  assert.equal(ids[0], 1, 'BOS first');
  assert.equal(t.decode(ids, { skipSpecial: true }), text, JSON.stringify(text));
  assert.equal(t.decode(ids.slice(1)), text, JSON.stringify(text));
}

test('train-bpe: a few KB train in well under 2 s', () => {
  assert.ok(CORPUS.length > 3000, `corpus is ${CORPUS.length} characters`);
  assert.ok(trainMs < 2000, `trained in ${trainMs.toFixed(0)} ms`);
});

for (const [kind, texts] of Object.entries(ROUND_TRIPS)) {
  test(`train-bpe: ${kind} round-trips through @huggingface/tokenizers`, () => {
    for (const text of texts) roundTrip(tok, text);
  });
}

test('train-bpe: learned merges are used; in-domain text compresses', (t) => {
  assert.deepEqual(tok.encode('tokenizer', { addBos: false }).map((id) => tok.idToToken(id)), ['▁tokenizer']);
  for (const word of WORDS) assert.equal(tok.encode(word, { addBos: false }).length, 1, word);
  const text = corpus(2, 40); // same distribution, other sentences
  const ratio = text.length / tok.encode(text, { addBos: false }).length;
  t.diagnostic(`${ratio.toFixed(2)} characters/token on in-domain text`);
  assert.ok(ratio > 3, `compression ${ratio}`);
});

test('train-bpe: layout: LLaMA ids, "▁" never follows another character in a piece', () => {
  const json = trained.tokenizerJson as TokenizerJson;
  assert.equal(tok.vocabSize, VOCAB_SIZE);
  assert.deepEqual([tok.bosId, tok.eosId, tok.tokenToId('<unk>')], [1, 2, 0]);
  assert.deepEqual([tok.tokenToId('<0x00>'), tok.tokenToId('<0xFF>'), tok.tokenToId('▁')], [3, 258, 259]);
  assert.equal(tok.addBosByDefault, true);
  assert.deepEqual(Object.values(json.model.vocab).sort((a, b) => a - b), [...Array(VOCAB_SIZE).keys()]);
  for (const [piece, id] of Object.entries(json.model.vocab)) {
    if (id >= 259) assert.match(piece, /^▁*[^▁]*$/u, piece);
  }
  for (const merge of json.model.merges) {
    const [left, right] = merge.split(' ');
    assert.ok(Object.hasOwn(json.model.vocab, left + right), merge);
  }
});

test('train-bpe: deterministic for the same input; an iterable of texts trains like an array', () => {
  assert.deepEqual(trainBpe(CORPUS, { vocabSize: VOCAB_SIZE }), trained);
  const lines = CORPUS.split('\n');
  const fromLines = trainBpe(lines, { vocabSize: VOCAB_SIZE });
  assert.deepEqual(trainBpe(lines.values(), { vocabSize: VOCAB_SIZE }), fromLines);
  roundTrip(Tokenizer.fromJson(fromLines.tokenizerJson, fromLines.tokenizerConfig), CORPUS);
});

test('train-bpe: vocabSize is an upper bound; 260 is the byte tokenizer; minFrequency stops early', () => {
  for (const vocabSize of [260, 300, 1000]) {
    const json = trainBpe(CORPUS, { vocabSize }).tokenizerJson as TokenizerJson;
    assert.ok(Object.keys(json.model.vocab).length <= vocabSize, String(vocabSize));
  }
  assert.deepEqual(trainBpe(CORPUS, { vocabSize: 260 }).tokenizerJson, byteFallbackTokenizerJson());
  const strict = trainBpe(CORPUS, { vocabSize: VOCAB_SIZE, minFrequency: 1_000_000 }).tokenizerJson as TokenizerJson;
  assert.deepEqual(strict.model.merges, []);
});

test('train-bpe: no piece spells a reserved token, characters outside the alphabet fall back to bytes', () => {
  // "<0x41>" after many different letters: the pair ("<0x41", ">") is the most frequent.
  const text = [...'abcdefghijklmnopqrstuvwxyz'].map((c) => `${c}<0x41> ${c}</s> `).join('').repeat(8) + 'rare: ☃';
  const json = trainBpe(text, { vocabSize: 320 }).tokenizerJson as TokenizerJson;
  const t = Tokenizer.fromJson(json, trained.tokenizerConfig);
  assert.ok(Object.hasOwn(json.model.vocab, '<0x4') && Object.hasOwn(json.model.vocab, '1>'), 'the guard was reached');
  assert.ok(!json.model.merges.includes('<0x4 1>'));
  assert.equal(t.tokenToId('<0x41>'), 3 + 0x41);
  roundTrip(t, 'x<0x41> y<0x41>');
  // ☃ is 1 character in ~4000: below the coverage threshold, so it is spelled as 3 bytes.
  assert.equal(t.tokenToId('☃'), undefined);
  assert.deepEqual(t.encode('☃', { addBos: false }).slice(1), [3 + 0xe2, 3 + 0x98, 3 + 0x83]);
});

test('train-bpe: bad options and empty corpora are InputErrors', () => {
  for (const vocabSize of [0, 259, 300.5, NaN, 2 ** 30]) {
    assert.throws(() => trainBpe(CORPUS, { vocabSize }), InputError, String(vocabSize));
  }
  assert.throws(() => trainBpe(CORPUS, { vocabSize: 300, minFrequency: 0 }), InputError);
  assert.throws(() => trainBpe('', { vocabSize: 300 }), /no text/);
  assert.throws(() => trainBpe([], { vocabSize: 300 }), InputError);
});
