/**
 * The PPD reference implementation's sparse-tree dictionaries (dynamic_sparse_trees_*.py) read
 * as ppd tree sets: the Python literal as the reference writes it (comments, several
 * dictionaries, tuples) and its JSON twin; the trees they mean (root with N prompt tokens,
 * candidates in BFS order, the row count the reference's generate_buffers gives); decoding with
 * the converted set is greedy-identical to plain decoding; and what cannot be a tree is an error
 * naming the file and entry.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError, InputError } from '../src/errors.ts';
import { autoregressive } from '../src/decode/autoregressive.ts';
import { loadLlamaModel } from '../src/checkpoint/load.ts';
import { PromptAdapter } from '../src/ppd/adapter.ts';
import { ppdDecode } from '../src/ppd/decode.ts';
import { pickReferenceTrees, readReferenceTreeFile, treeSetFromReference } from '../src/ppd/reference-trees.ts';
import { treeRows } from '../src/ppd/tree.ts';
import { loadTreeSet } from '../src/ppd/tree-files.ts';
import { Rng } from '../src/sampling/rng.ts';
import { Sampler } from '../src/sampling/sampler.ts';
import { assertUserError, runPpdOk } from './helpers/cli.ts';
import { take } from './helpers/decoding.ts';
import { memorySource, randomWeights, tinyConfig } from './helpers/tiny-model.ts';

// As in prompt/inference/dynamic_sparse_trees_3_vicuna_68m.py, cut short.
const PY = `# Dynamic Sparse Trees for input length limit of 12
dynamic_sparse_trees_12 = {1: [[[0], 0.15062, 3], [[1], 0.09205, 2]], 2: [[[0], 0.09241000000000002, 3], [[1], 0.05647, 1], [[0, 0], 0.01159, 1]], 3: [[[0], 0.09241, 2], [[0, 0], 0.01016, 1], [[0, 0, 0], 0.00079, 1], [[1], 0.05647, 1]]}
# Dynamic Sparse Trees for input length limit of 8
dynamic_sparse_trees_8 = {
    1: [([0], 0.15062, 2), ([1], 0.09205, 1),],
    2: [([0], 0.09241, 1)],  # tuples and trailing commas, as Python allows
    3: [([0], 0.09241, 1)],
}
`;

test('reads every dictionary of a .py file and picks one by name; JSON works too', () => {
  const dictionaries = readReferenceTreeFile(PY, 'trees.py');
  assert.deepEqual([...dictionaries.keys()], ['dynamic_sparse_trees_12', 'dynamic_sparse_trees_8']);
  const small = pickReferenceTrees(dictionaries, 'trees.py', 'dynamic_sparse_trees_8');
  assert.deepEqual(small.get(1), [{ path: [0], accuracy: 0.15062, prompts: 2 }, { path: [1], accuracy: 0.09205, prompts: 1 }]);
  assert.throws(() => pickReferenceTrees(dictionaries, 'trees.py'), (e: Error) => e instanceof InputError && /defines 2 tree dictionaries.*--name/.test(e.message));
  assert.throws(() => pickReferenceTrees(dictionaries, 'trees.py', 'x'), /defines no x \(it defines dynamic_sparse_trees_12, dynamic_sparse_trees_8\)/);
  const json = readReferenceTreeFile(JSON.stringify({ 1: [[[0], 0.5, 1]] }), 'trees.json');
  assert.deepEqual(pickReferenceTrees(json, 'trees.json').get(1), [{ path: [0], accuracy: 0.5, prompts: 1 }]);
});

test('converts to a ppd tree set: root with N prompt tokens, BFS candidates, the reference\'s row counts', () => {
  const reference = pickReferenceTrees(readReferenceTreeFile(PY, 'trees.py'), 'trees.py', 'dynamic_sparse_trees_12');
  const set = treeSetFromReference(reference, { source: 'trees.py' });
  assert.equal(set.promptTokens, 3);
  assert.equal(set.trees.length, 4);
  assert.deepEqual(set.trees[0], { schema: 'ppd.tree/1', guessDepth: 0, topK: 2, root: { prompts: 3 }, candidates: [] });
  assert.deepEqual(set.trees[3]!.candidates, [
    { path: [0], prompts: 2 },
    { path: [1], prompts: 1 },
    { path: [0, 0], prompts: 1 },
    { path: [0, 0, 0], prompts: 1 },
  ]);
  // generate_buffers: prompt_length = 1 + candidates + every attached special token (V = 1).
  for (const [d, candidates] of reference) {
    const referenceRows = 1 + candidates.length + 3 + candidates.reduce((s, c) => s + c.prompts, 0);
    assert.equal(treeRows(set.trees[d]!, 1), referenceRows, `d=${d}`);
  }
  assert.equal(set.budget, Math.max(...set.trees.map((t) => treeRows(t, 1))));
  assert.ok(Math.abs(set.expectedAcceptedLength[3]! - (1 + 0.09241 + 0.01016 + 0.00079 + 0.05647)) < 1e-12);
  assert.ok(set.expectedTokensPerStep > 1 && set.expectedTokensPerStep < 1.3, `${set.expectedTokensPerStep}`);
  // With an adapter of more prompt tokens than the deepest key, the missing depths verify nothing.
  const wider = treeSetFromReference(reference, { source: 'trees.py', promptTokens: 4, virtualTokens: 2 });
  assert.equal(wider.trees[4]!.candidates.length, 0);
  assert.equal(wider.budget, Math.max(...wider.trees.map((t) => treeRows(t, 2))));
});

test('what cannot be a tree is an error naming the file, the dictionary and the entry', () => {
  const convert = (text: string, options = {}) => treeSetFromReference(pickReferenceTrees(readReferenceTreeFile(text, 'f.py'), 'f.py'), { source: 'f.py', ...options });
  assert.throws(() => convert('t = {1: [[[0, 1], 0.1, 1]]}'), /\[1\]\.candidates\[0\]\.path \[0,1\] is 2 deep but guessDepth is 1/);
  assert.throws(() => convert('t = {2: [[[0, 1], 0.1, 1]]}'), /has no parent \[0\]/);
  assert.throws(() => convert('t = {1: [[[0], 0.1, 4]]}', { promptTokens: 3 }), /path \[0\] attaches 4 prompt tokens, the adapter has 3/);
  assert.throws(() => convert('t = {3: [[[0], 0.1, 1]]}', { promptTokens: 2 }), /has a tree for 3 guess lists, but the adapter has 2 prompt tokens/);
  assert.throws(() => convert('t = {1: [[[0], 1.5, 1]]}'), (e: Error) => e instanceof FormatError && /f\.py: t: \[1\]\[0\] accuracy must be a probability, got 1\.5/.test(e.message));
  assert.throws(() => convert('t = {1: [[[0], 0.1]]}'), /\[1\]\[0\] must be \[path, accuracy, prompts\]/);
  assert.throws(() => convert('t = {1: [[[0], 0.1, 1]] + os.system("x")}'), /holds something other than numbers/);
  assert.throws(() => convert('import torch\n'), /defines no dictionary/);
  assert.throws(() => convert('t = {1: [[[0], 0.1, 1]]'), /is not closed/);
});

test('greedy PPD with converted reference trees equals greedy plain decoding', async () => {
  const config = tinyConfig({ vocabSize: 40 });
  const weights = randomWeights(config, 31);
  const model = await loadLlamaModel(config, memorySource(config, weights), { cacheDir: false, threads: 1 });
  const adapter = PromptAdapter.initialise(config, weights.get('model.embed_tokens.weight')!, [5, 6, 7], { promptTokens: 3, virtualTokens: 1, attention: 'ensemble', initText: 't' });
  const trees = treeSetFromReference(pickReferenceTrees(readReferenceTreeFile(PY, 'trees.py'), 'trees.py', 'dynamic_sparse_trees_12'), { source: 'trees.py' });
  const rng = new Rng(5);
  for (let p = 0; p < 8; p++) {
    const prompt = Array.from({ length: 2 + Math.floor(rng.next() * 8) }, () => Math.floor(rng.next() * 40));
    const plain = await take(autoregressive(model, prompt, new Sampler({ temperature: 0 })), 24);
    const ppd = await take(ppdDecode(model, prompt, { adapter, trees, sampler: new Sampler({ temperature: 0 }) }), 24);
    assert.deepEqual(ppd, plain, `prompt ${prompt.join(',')}`);
  }
  await model.release();
});

test('ppd tree convert writes the set; a file with several dictionaries and no --name is one error line', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ppd-reference-trees-'));
  try {
    const file = join(dir, 'dynamic_sparse_trees_3_vicuna_68m.py');
    writeFileSync(file, PY);
    const out = join(dir, 'trees.json');
    const run = await runPpdOk(dir, ['tree', 'convert', '--from', file, '--name', 'dynamic_sparse_trees_8', '--out', out]);
    assert.match(run.stdout, /budget 9 rows; expected tokens per step .*wrote /);
    assert.deepEqual(loadTreeSet(out).trees[1]!.candidates, [{ path: [0], prompts: 2 }, { path: [1], prompts: 1 }]);
    await assertUserError(dir, ['tree', 'convert', '--from', file, '--out', out], [file, '--name']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
