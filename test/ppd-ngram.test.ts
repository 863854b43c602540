/**
 * The static n-gram table (src/ppd/ngram-table.ts) and the chain it drafts (src/ppd/draft.ts):
 * counts and proposals on hand-built sequences; the file round trip and every way a file can be
 * wrong (one error naming the file); the binding to tokenizer and model; the context lookup
 * first, the table where it has nothing; and resuming an interrupted build's generations.
 * Decoding with a table (greedy identity, kept distribution) is in ppd-decode.test.ts; the
 * commands in ngram-cli.test.ts.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError } from '../src/errors.ts';
import { loadModel, type LoadedModel } from '../src/checkpoint/load.ts';
import { ChainDraft } from '../src/ppd/draft.ts';
import { countNgrams, NgramTable, vocabularyDigest, type NgramBinding } from '../src/ppd/ngram-table.ts';
import { loadNgramTable, saveNgramTable } from '../src/ppd/ngram-files.ts';
import { generateSequences } from '../src/train/ngram-build.ts';
import { BYTE_MODEL_SHAPE, writeByteModel } from './helpers/byte-model.ts';

const BINDING: NgramBinding = { vocabSize: 20, tokenizer: vocabularyDigest(['a', 'b']), configHash: 'cafe0123cafe0123' };
const HEADER = { binding: BINDING, minCount: 1, topK: 3, source: { test: true }, created: '2026-12-06T00:00:00.000Z' };

let work: string;
before(() => {
  work = mkdtempSync(join(tmpdir(), 'ppd-ngram-'));
});
after(() => rmSync(work, { recursive: true, force: true }));

/** A table of `sequences` (all positions counted) through the file format and back. */
function tableOf(sequences: number[][], o = { maxNgram: 3, minCount: 1, topK: 3 }, name = 'table.bin'): NgramTable {
  const sections = countNgrams(sequences.map((ids) => ({ ids, countFrom: 1 })), o);
  const path = join(work, name);
  saveNgramTable(path, NgramTable.encode(sections, { ...HEADER, minCount: o.minCount, topK: o.topK }));
  return loadNgramTable(path);
}

test('counts: every context of 1..maxNgram tokens before a counted position, continuations most frequent first', () => {
  const table = tableOf([
    [1, 2, 3, 1, 2, 4, 1, 2, 3],
    [5, 1, 2, 3],
  ]);
  const after12 = table.continuations([1, 2], 0, 2)!;
  assert.equal(after12.total, 4); // "1 2" is followed by 3, 4, 3, 3
  assert.deepEqual([...after12.tokens], [3, 4]);
  assert.deepEqual([...after12.counts], [3, 1]);
  assert.equal(table.continuations([9, 9], 0, 2), undefined);
  // Positions before countFrom are context, never continuation: 5 is never counted as following anything.
  assert.equal(table.continuations([5], 0, 1)!.total, 1);
  assert.ok(![...(table.continuations([3], 0, 1)?.tokens ?? [])].includes(5));
  // A sequence's generated part only: countFrom = 3 counts the 3 and 4 after "1 2", not the 2 after "1".
  const generated = countNgrams([{ ids: [1, 2, 3, 4], countFrom: 2 }], { maxNgram: 2, minCount: 1, topK: 2 });
  assert.deepEqual([...generated[0]!.keys], [2, 3]); // contexts "2" → 3 and "3" → 4
  assert.deepEqual([...generated[1]!.keys], [1, 2, 2, 3]);
});

test('proposes the most frequent continuation of the longest confident context, and chains on its own guesses', () => {
  const table = tableOf([
    [7, 1, 2, 3, 4, 5],
    [8, 1, 2, 3, 4, 5],
    [9, 2, 6],
    [9, 2, 6],
    [9, 2, 6],
  ]);
  // After "... 1 2", the 2-token context says 3 (twice); "2" alone would say 6 (3 of 5).
  assert.deepEqual(table.propose([0, 1], 2, 4), [3, 4, 5]); // then nothing follows 5: the chain stops
  // Thresholds: requiring 3 sightings drops "1 2" (seen twice) and falls back to "2" → 6.
  assert.deepEqual(table.propose([0, 1], 2, 1, { minTotal: 3, minShare: 0.5 }), [6]);
  // A share of 0.7 is more than "2" → 6 has (3 of 5): nothing.
  assert.deepEqual(table.propose([4], 2, 1, { minTotal: 3, minShare: 0.7 }), []);
  assert.deepEqual(table.propose([0, 1], 2, 0), []);
  assert.deepEqual(table.next([1, 2, 3]), { token: 4, context: 3 });
  assert.deepEqual(table.next([]), { token: -1, context: 0 });
  assert.deepEqual(table.draft([0, 1], 2, 4), { tokens: [3, 4, 5], context: 2 });
});

test('minCount leaves rare contexts out, topK keeps the most frequent continuations, totals stay whole', () => {
  const table = tableOf([[1, 2, 1, 3, 1, 3, 1, 4, 1, 3, 5, 6]], { maxNgram: 2, minCount: 2, topK: 1 });
  const after1 = table.continuations([1], 0, 1)!;
  assert.equal(after1.total, 5); // 2, 3, 3, 4, 3
  assert.deepEqual([...after1.tokens], [3]);
  assert.equal(table.continuations([5], 0, 1), undefined); // seen once
  assert.equal(table.header.minCount, 2);
});

test('a bad file is one FormatError naming it and what is wrong', () => {
  tableOf([[1, 2, 3, 1, 2]], undefined, 'good.bin');
  const bytes = readFileSync(join(work, 'good.bin'));
  const broken = (name: string, edit: (b: Buffer) => Buffer): string => {
    const path = join(work, name);
    writeFileSync(path, edit(Buffer.from(bytes)));
    return path;
  };
  const headerLength = bytes.readUInt32LE(12);
  const cases: [string, (b: Buffer) => Buffer, RegExp][] = [
    ['magic.bin', (b) => (b.write('NOTATABL', 0), b), /not an n-gram table/],
    ['version.bin', (b) => (b.writeUInt32LE(7, 8), b), /format version 7; this ppd reads version 1/],
    ['truncated.bin', (b) => b.subarray(0, b.length - 4), /truncated or padded/],
    ['short.bin', (b) => b.subarray(0, 10), /not an n-gram table \(10 bytes\)/],
    ['flipped.bin', (b) => ((b[b.length - 1] ^= 1), b), /corrupt: the body's digest/],
    ['header.bin', (b) => (b.write('}', 16), b), /malformed header/],
  ];
  for (const [name, edit, message] of cases) {
    const path = broken(name, edit);
    assert.throws(() => loadNgramTable(path), (err: Error) => err instanceof FormatError && err.message.startsWith(`${path}: `) && message.test(err.message) && !err.message.includes('\n'), name);
  }
  // A header field: the schema names it.
  const header = JSON.parse(bytes.subarray(16, 16 + headerLength).toString('utf8'));
  header.maxNgram = 0;
  const json = Buffer.from(JSON.stringify(header).padEnd(headerLength, ' '));
  const path = broken('field.bin', (b) => (json.copy(b, 16), b));
  assert.throws(() => loadNgramTable(path), /field "header\.maxNgram" must be an integer/);
});

test('a table built for another tokenizer or model is refused with the command that rebuilds it', () => {
  tableOf([[1, 2, 3]], undefined, 'bound.bin');
  const path = join(work, 'bound.bin');
  const expected = { modelDir: 'models/x' };
  assert.doesNotThrow(() => loadNgramTable(path, { ...expected, binding: BINDING }));
  assert.doesNotThrow(() => loadNgramTable(path, { ...expected, binding: { vocabSize: 20, configHash: BINDING.configHash } })); // no tokenizer: not checked
  const refusals: [Partial<NgramBinding>, RegExp][] = [
    [{ tokenizer: vocabularyDigest(['a', 'c']) }, /built for another tokenizer/],
    [{ configHash: '0000000000000000' }, /built for another model \(config hash cafe0123cafe0123/],
    [{ vocabSize: 21 }, /built for a vocabulary of 20 tokens, the model has 21/],
  ];
  for (const [change, message] of refusals) {
    assert.throws(
      () => loadNgramTable(path, { ...expected, binding: { ...BINDING, ...change } }),
      (err: Error) => err instanceof FormatError && message.test(err.message) && err.message.includes(`ppd ngram build --model models/x --data TEXT --out ${path}`),
    );
  }
  assert.throws(() => loadNgramTable(join(work, 'missing.bin')), /missing\.bin: no n-gram table here/);
});

test('the drafted chain: from the source that matched the longer context (the lookup on a tie), each adapting its own length', () => {
  const table = tableOf([[10, 11, 12, 13, 14], [10, 11, 12, 13, 14]], undefined, "chain.bin");
  const draft = new ChainDraft({ lookup: 4, ngram: { table, tokens: 3 } });
  draft.push(5, 6, 7, 5);
  // 5 recurs: the lookup copies what followed it (6 7 5 6).
  assert.deepEqual(draft.propose(6, 8), { tokens: [7, 5, 6, 7], source: 'lookup' });
  // 10 never occurred: the table proposes 11 12 13 (its length, 3).
  const fromTable = draft.propose(10, 8);
  assert.deepEqual(fromTable, { tokens: [11, 12, 13], source: 'ngram' });
  assert.deepEqual(draft.propose(10, 2).tokens, [11, 12]); // the row budget caps it
  // "12" recurs (the lookup would copy 5 11 12 5, a 1-token match) but the table knows "11 12": its 2-token context wins.
  const longer = new ChainDraft({ lookup: 4, ngram: { table, tokens: 3 } });
  longer.push(12, 5, 11);
  assert.deepEqual(longer.propose(12, 8), { tokens: [13, 14], source: 'ngram' });
  // Tied at one token ("11" recurs, the token just before; the table knows "11" → 12 too): the lookup.
  assert.deepEqual(longer.propose(11, 3), { tokens: [11, 11, 11], source: 'lookup' });
  // Rejected at the first token: the table's length backs off to 2; the lookup's is untouched.
  assert.deepEqual(draft.record(fromTable, [99]), { source: 'ngram', proposed: 3, accepted: 0 });
  assert.deepEqual(draft.propose(10, 8).tokens, [11, 12]);
  assert.equal(draft.propose(6, 8).tokens.length, 4);
  // Nothing from either: no chain.
  assert.deepEqual(draft.propose(99, 8), { tokens: [], source: null });
  assert.equal(new ChainDraft({ lookup: 0 }).active, false);
  assert.equal(new ChainDraft({ ngram: { table, tokens: 2 } }).active, true);
  const tableOnly = new ChainDraft({ ngram: { table, tokens: 2 } });
  tableOnly.push(6, 5);
  assert.deepEqual(tableOnly.propose(5, 8), { tokens: [], source: null }); // no lookup: 5's recurrence is not copied
});

let loaded: LoadedModel;
before(async () => {
  const dir = join(work, 'model');
  writeByteModel(dir, { ...BYTE_MODEL_SHAPE, max_position_embeddings: 64 }, 5);
  loaded = await loadModel(dir, { cacheDir: false, threads: 1 });
});
after(async () => loaded?.model.release());

test('an interrupted build resumes its generations: the same sequences as one uninterrupted run', async () => {
  const documents = ['the quick brown fox jumps over the lazy dog and runs away', 'a second document with other words in it, for variety'];
  const text = documents.join('\n');
  const binding = { vocabSize: 260, tokenizer: '0123456789abcdef', configHash: 'x' };
  const weights = 'model.safetensors:1234:5678';
  const plan = { generate: 60, length: 12, promptTokens: 8, seed: 3 };
  const whole = await generateSequences(loaded, documents, plan, { binding, weights, text, partialFile: join(work, 'whole.partial') });
  assert.ok(whole.generatedTokens >= 60);

  const partialFile = join(work, 'resumed.partial');
  const first = await generateSequences(loaded, documents, { ...plan, generate: 20 }, { binding, weights, text, partialFile });
  // An interruption mid-write leaves half a record: it is dropped.
  writeFileSync(partialFile, Buffer.concat([readFileSync(partialFile), Buffer.from([1, 0, 0])]));
  const notices: string[] = [];
  const resumed = await generateSequences(loaded, documents, plan, { binding, weights, text, partialFile, onNotice: (line) => notices.push(line) });
  assert.equal(resumed.resumedTokens, first.generatedTokens);
  assert.match(notices.join('\n'), /resuming from .*resumed\.partial: \d+ generations/);
  assert.deepEqual(resumed.sequences.map((s) => [...s.ids]), whole.sequences.map((s) => [...s.ids]));
  assert.deepEqual(resumed.sequences.map((s) => s.countFrom), whole.sequences.map((s) => s.countFrom));

  // Other weights of the same shape (a retrained model), or another plan, start over, and say so.
  const retrained = await generateSequences(loaded, documents, plan, { binding, weights: 'model.safetensors:1234:9999', text, partialFile, onNotice: (line) => notices.push(line) });
  assert.equal(retrained.resumedTokens, 0);
  assert.match(notices.at(-1)!, /made for another model, text or plan: starting over/);
  const other = await generateSequences(loaded, documents, { ...plan, seed: 4, generate: 10 }, { binding, weights, text, partialFile, onNotice: (line) => notices.push(line) });
  assert.equal(other.resumedTokens, 0);
  assert.match(notices.at(-1)!, /made for another model, text or plan: starting over/);
});
