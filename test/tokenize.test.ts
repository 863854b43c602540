/**
 * Token streams for training (src/data/tokenize.ts): each document becomes BOS + its tokens + EOS,
 * documents of any length included.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DOCUMENT_SEPARATOR } from '../src/data/corpus.ts';
import { documentsOf, tokenizeDocuments } from '../src/data/tokenize.ts';
import { byteFallbackTokenizerConfig, byteFallbackTokenizerJson } from '../src/tokenizer/byte-tokenizer.ts';
import { Tokenizer } from '../src/tokenizer/tokenizer.ts';

const tokenizer = Tokenizer.fromJson(byteFallbackTokenizerJson(), byteFallbackTokenizerConfig());

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
