/**
 * Token streams for training (src/data/tokenize.ts): each document becomes BOS + its tokens + EOS,
 * documents of any length included; how text files divide into documents (and prompts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DOCUMENT_SEPARATOR, formatSplitFile, parseSplitFile, type CorpusDocument } from '../src/data/corpus.ts';
import { cachedTokenStream, documentsOf, noteTextFile, promptSourcesOf, tokenizeDocuments } from '../src/data/tokenize.ts';
import { byteFallbackTokenizerConfig, byteFallbackTokenizerJson } from '../src/tokenizer/byte-tokenizer.ts';
import { Tokenizer } from '../src/tokenizer/tokenizer.ts';

const tokenizer = Tokenizer.fromJson(byteFallbackTokenizerJson(), byteFallbackTokenizerConfig());
const makeDoc = (i: number, text: string): CorpusDocument => ({ id: `t/${i}`, source: 't', text });

test('tokenizeDocuments: BOS + tokens + EOS per document, in order', () => {
  const docs = documentsOf(['first doc', 'second\nline', 'é'].join(DOCUMENT_SEPARATOR) + '\n');
  assert.equal(docs.length, 3);
  const expected = docs.flatMap((doc) => [tokenizer.bosId!, ...tokenizer.encode(doc, { addBos: false }), tokenizer.eosId!]);
  assert.deepEqual([...tokenizeDocuments(tokenizer, docs)], expected);
  assert.deepEqual(documentsOf('plain text, no separator'), ['plain text, no separator']);
});

test('tokenizeDocuments takes a document longer than a call can spread (200k tokens)', () => {
  const long = 'ab'.repeat(100_000);
  const ids = tokenizeDocuments(tokenizer, ['x', long]);
  const longIds = tokenizer.encode(long, { addBos: false });
  assert.ok(longIds.length >= 150_000, `${longIds.length} tokens`);
  assert.equal(ids.length, tokenizer.encode('x', { addBos: false }).length + longIds.length + 4);
  assert.equal(ids[ids.length - 1], tokenizer.eosId);
  assert.equal(ids[ids.length - 2], longIds.at(-1));
});

test('text files: <|endoftext|> separates documents on a line of its own, between blank lines or inline; the corpora\'s format round-trips', () => {
  // ppd's corpora: a blank line, the separator, a blank line; documents may begin or end with line breaks of their own.
  const docs = ['first\n', '\nsecond  ', 'third\n\n', '  indented'];
  const text = formatSplitFile(docs.map((doc, i) => makeDoc(i, doc)));
  assert.deepEqual(parseSplitFile(text), docs);
  // By hand or other tools: a line of its own (TinyStories' text files), CRLF, inline (GPT-2-style dumps).
  assert.deepEqual(documentsOf('Once upon a time.\n<|endoftext|>\nThe end.\n'), ['Once upon a time.', 'The end.']);
  assert.deepEqual(documentsOf('one\r\n<|endoftext|>\r\ntwo\r\n'), ['one', 'two']);
  assert.deepEqual(documentsOf('one<|endoftext|>two<|endoftext|>'), ['one', 'two']);
  // A separator first, last or twice in a row makes no empty document.
  assert.deepEqual(documentsOf('<|endoftext|>\na\n<|endoftext|>\n<|endoftext|>\nb\n<|endoftext|>\n'), ['a', 'b']);
});

test('text files: plain text is one document, said in one note; prompts come from its paragraphs', () => {
  const plain = 'A first paragraph\nwrapped.\n\n\nA second one.\n  \nA third.\n';
  assert.deepEqual(documentsOf(plain), [plain]);
  assert.deepEqual(promptSourcesOf(plain), ['A first paragraph\nwrapped.', 'A second one.', 'A third.\n']);
  const split = 'a\n\n<|endoftext|>\n\nb\n\nc\n';
  assert.deepEqual(promptSourcesOf(split), ['a', 'b\n\nc'], 'a split file: its documents, paragraphs and all');
  const notes: string[] = [];
  noteTextFile('book.txt', plain, (line) => notes.push(line));
  noteTextFile('corpus.txt', split, (line) => notes.push(line));
  assert.equal(notes.length, 1);
  assert.match(notes[0]!, /^note: book\.txt has no <\|endoftext\|> separator, so it is read as one document/);
});

test('cachedTokenStream is keyed by the documents: a stream cached under an older separator rule is not reused; the corpora keep their keys', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ppd-tokens-'));
  try {
    const tokenizerKey = 'byte-fallback';
    const lenient = 'Once upon a time.\n<|endoftext|>\nThe end.\n';
    // What the stricter rule cached for this file, keyed by its bytes: one document, separator and all.
    const byBytes = createHash('sha256').update(tokenizerKey).update('\0').update(lenient).digest('hex').slice(0, 24);
    const stale = tokenizeDocuments(tokenizer, [lenient]);
    writeFileSync(join(dir, `tokens-${byBytes}.i32`), new Uint8Array(stale.buffer));
    const expected = tokenizeDocuments(tokenizer, ['Once upon a time.', 'The end.']);
    assert.deepEqual(cachedTokenStream(tokenizer, tokenizerKey, lenient, dir), expected);
    // The same documents spelt the corpora's way share that stream (one more cache file, not two).
    const before = readdirSync(dir).length;
    assert.deepEqual(cachedTokenStream(tokenizer, tokenizerKey, 'Once upon a time.' + DOCUMENT_SEPARATOR + 'The end.\n', dir), expected);
    assert.equal(readdirSync(dir).length, before);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // A split file as the corpora write it reads back to its own bytes, so its cache key is unchanged.
  for (const corpus of ['corpus', 'prose-corpus', 'code-corpus']) {
    const text = readFileSync(new URL(`../data/${corpus}/valid.txt`, import.meta.url), 'utf8');
    assert.ok(documentsOf(text).join(DOCUMENT_SEPARATOR) + '\n' === text, `data/${corpus}/valid.txt`);
  }
});
