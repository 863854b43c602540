/**
 * `ppd ngram build` / `ppd ngram info` and `generate --ppd` with a table, end to end on the tiny
 * byte-tokenizer model: the table lands in the adapter folder, generation picks it up and still
 * emits exactly plain greedy decoding's ids, a table that knows the continuation has its chain
 * accepted (fewer steps than without it), and a corrupt or mismatched table, or a table flag
 * without --ppd, is one `error:` line.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openModelDir } from '../src/checkpoint/model-dir.ts';
import { PromptAdapter } from '../src/ppd/adapter.ts';
import { saveAdapter } from '../src/ppd/adapter-files.ts';
import { tokenizerOf } from '../src/checkpoint/loaded-model.ts';
import { bindingOf, countNgrams, NgramTable } from '../src/ppd/ngram-table.ts';
import { saveNgramTable } from '../src/ppd/ngram-files.ts';
import { buildTreeSet } from '../src/ppd/tree-builder.ts';
import { saveTreeSet } from '../src/ppd/tree-files.ts';
import { BYTE_MODEL_SHAPE, writeByteModel } from './helpers/byte-model.ts';
import { assertUserError as assertUserErrorIn, runPpdOk } from './helpers/cli.ts';

const ACC = [0, 1, 2].map((i) => Array.from({ length: 4 }, (_, k) => 0.4 * Math.pow(0.5, k) * Math.pow(0.8, i)));

let work: string;
let modelDir: string;
let adapterDir: string;
let cacheDir: string;
const ppd = (...args: string[]) => runPpdOk(cacheDir, args);
const assertUserError = (args: string[], culprits: string[]) => assertUserErrorIn(cacheDir, args, culprits);

before(() => {
  work = mkdtempSync(join(tmpdir(), 'ppd-ngram-cli-'));
  cacheDir = join(work, 'graphs');
  modelDir = writeByteModel(join(work, 'model'), { ...BYTE_MODEL_SHAPE, max_position_embeddings: 128 }, 11);
  adapterDir = join(modelDir, 'ppd');
  const files = openModelDir(modelDir);
  const embeddings = files.tensors.readF32('model.embed_tokens.weight');
  files.tensors.close();
  mkdirSync(adapterDir);
  saveAdapter(PromptAdapter.initialise(files.config, embeddings, [70, 71, 72], { promptTokens: 3, virtualTokens: 1, attention: 'ensemble', initText: 'FGH' }), adapterDir);
  saveTreeSet(join(adapterDir, 'trees.json'), buildTreeSet(ACC, { budget: 4, promptTokens: 3, virtualTokens: 1, attention: 'ensemble' }));
  const words = (seed: number) => Array.from({ length: 40 }, (_, i) => `w${(i * 7 + seed) % 13}`).join(' ');
  writeFileSync(join(work, 'text.txt'), [1, 2, 3, 4].map(words).join('\n\n<|endoftext|>\n\n'));
});
after(() => rmSync(work, { recursive: true, force: true }));

test('ngram build writes ADAPTER/ngram.bin, info describes it, and generate --ppd picks it up and reports it', async () => {
  const build = await ppd('ngram', 'build', '--model', modelDir, '--ppd', adapterDir, '--data', join(work, 'text.txt'), '--generate', '120', '--length', '24', '--prompt-tokens', '16');
  const table = join(adapterDir, 'ngram.bin');
  assert.equal(build.stdout.trim(), `wrote ${table}`);
  assert.match(build.stderr, /generations: \d+ generations, \d+ tokens/);
  assert.ok(existsSync(table) && !existsSync(`${table}.partial`), 'the table written, the partial file gone');

  const info = await ppd('ngram', 'info', '--table', table);
  assert.match(info.stdout, /bound to: vocabulary of 260 tokens, tokenizer [0-9a-f]{16}, model config/);
  assert.match(info.stdout, /n = 4: \d+ contexts/);

  const text = await ppd('generate', '--model', modelDir, '--ppd', adapterDir, '--prompt', 'w1 w8 w2', '--max-tokens', '20');
  assert.match(text.stderr, /drafted beside the tree: context lookup \d+ of \d+ tokens accepted in \d+ steps; n-gram table .*ngram\.bin \(0\.\d\d MB in memory, up to 8 tokens per step\) \d+ of \d+ tokens accepted in \d+ steps/);
});

test('--ngram FILE: a table that knows the model\'s continuation has its chain accepted beside the trees, same ids; --ngram off decodes without', async () => {
  // A tiny random model's habits are not learnt from a few hundred tokens, so this table is
  // counted from the model's own greedy continuation of the very prompt generated below.
  const files = openModelDir(modelDir);
  const tokenizer = tokenizerOf(files)!;
  files.tensors.close();
  const prompt = 'w5 w12 w6 w0';
  const plain = JSON.parse((await ppd('generate', '--model', modelDir, '--prompt', prompt, '--max-tokens', '40', '--json')).stdout);
  const promptIds = tokenizer.encode(prompt);
  const own = join(work, 'own.bin');
  const sections = countNgrams([{ ids: [...promptIds, ...plain.ids], countFrom: promptIds.length }], { maxNgram: 4, minCount: 1, topK: 2 });
  saveNgramTable(own, NgramTable.encode(sections, { binding: bindingOf(files.config, tokenizer), minCount: 1, topK: 2, source: {}, created: new Date(0).toISOString() }));

  const decode = async (...flags: string[]) => JSON.parse((await ppd('generate', '--model', modelDir, '--ppd', adapterDir, '--lookup', '0', '--prompt', prompt, '--max-tokens', '40', '--json', ...flags)).stdout);
  const withTable = await decode('--ngram', own);
  const without = await decode('--ngram', 'off');
  assert.deepEqual(withTable.ids, plain.ids);
  assert.deepEqual(without.ids, plain.ids);
  assert.ok(withTable.drafts.ngram.accepted > 0 && withTable.drafts.lookup.steps === 0, JSON.stringify(withTable.drafts));
  assert.ok(withTable.stats.steps < without.stats.steps, `${withTable.stats.steps} steps with the table, ${without.stats.steps} without`);
  // The memory it reports is the file's body: all that is held besides a small header.
  const file = readFileSync(own);
  assert.deepEqual(withTable.drafts.ngramTable, { file: own, bytes: file.length - Math.ceil((16 + file.readUInt32LE(12)) / 8) * 8 });
  assert.equal(without.drafts.ngramTable, null);
});

test('a corrupt or mismatched table, and table flags without --ppd, are one error line', async () => {
  const good = join(adapterDir, 'ngram.bin');
  if (!existsSync(good)) await ppd('ngram', 'build', '--model', modelDir, '--ppd', adapterDir, '--data', join(work, 'text.txt'), '--generate', '40', '--length', '20');
  const bytes = readFileSync(good);
  const corrupt = join(work, 'corrupt.bin');
  writeFileSync(corrupt, Buffer.concat([bytes.subarray(0, bytes.length - 1), Buffer.from([bytes[bytes.length - 1]! ^ 0xff])]));
  const generate = ['generate', '--model', modelDir, '--ppd', adapterDir, '--prompt', 'w1 w2', '--max-tokens', '4'];
  await assertUserError([...generate, '--ngram', corrupt], [corrupt, 'corrupt']);

  // The same counts, bound to another model.
  const other = join(work, 'other-model.bin');
  const header = NgramTable.read({ name: good, size: bytes.length, stamp: '', read: (dst, at) => dst.set(bytes.subarray(at, at + dst.length)), close: () => {} }).header;
  const stranger = JSON.parse(JSON.stringify(header).replace(header.binding.configHash, 'feedfeedfeedfeed'));
  const headerLength = bytes.readUInt32LE(12);
  const json = Buffer.from(JSON.stringify(stranger));
  assert.equal(json.length, headerLength); // a config hash for a config hash: the body stays where it was
  const rewritten = Buffer.from(bytes);
  json.copy(rewritten, 16);
  saveNgramTable(other, rewritten);
  await assertUserError([...generate, '--ngram', other], [other, 'built for another model', 'ppd ngram build --model']);

  await assertUserError(['generate', '--model', modelDir, '--prompt', 'hi', '--ngram', good], ['--ngram', '--ppd']);
  await assertUserError(['serve', '--model', modelDir, '--ngram-tokens', '4'], ['--ngram-tokens', '--ppd']);
  await assertUserError(['ngram', 'build', '--model', modelDir, '--data', join(work, 'text.txt')], ['--out', '--ppd']);
  await assertUserError(['ngram', 'info', '--table', join(work, 'text.txt')], ['text.txt', 'not an n-gram table']);
});
