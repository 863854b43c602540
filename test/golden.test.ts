/**
 * The bundled model's exact greedy text, pinned (as llama2.c's test pins its model's): greedy
 * decoding of the golden prompt gives exactly the golden ids (test/golden/bundled-greedy.json),
 * and so do greedy PPD with the bundled adapter and the context lookup, which must equal greedy
 * decoding. When the bundled model is retrained the file is regenerated on purpose (its
 * `regenerate` command); until then a changed model fails here naming that command.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DEFAULT_ADAPTER, DEFAULT_MODEL } from '../src/cli/demo.ts';
import { promptHeadOf } from '../src/ppd/adapter-files.ts';
import { loadModel, type LoadedModel } from '../src/checkpoint/load.ts';
import { startGeneration } from '../src/generate/request.ts';
import { DEFAULT_LOOKUP_TOKENS, loadPpdSetup } from '../src/ppd/setup.ts';
import { readGolden, REGENERATE, weightsDigest, type Golden } from './helpers/golden.ts';

let loaded: LoadedModel;
let golden: Golden;

before(async () => {
  golden = readGolden();
  loaded = await loadModel(DEFAULT_MODEL, { threads: 1, promptHead: promptHeadOf(DEFAULT_ADAPTER) });
});

after(async () => {
  await loaded.model.release();
});

test('the golden file is for the bundled weights', () => {
  assert.equal(weightsDigest(DEFAULT_MODEL), golden.weightsDigest, `the bundled model changed: regenerate the golden file with \`${REGENERATE}\``);
  assert.ok(golden.minMargin >= 1e-3, 'the golden continuation must not pass near a tie');
});

test('greedy decoding gives exactly the golden continuation', async () => {
  const { ids, text } = await startGeneration(loaded, { prompt: golden.prompt, maxTokens: golden.maxTokens }).complete();
  assert.deepEqual(ids, golden.ids);
  assert.equal(text, golden.text);
});

test('greedy PPD (bundled adapter and trees, with and without context lookup) gives it too', async () => {
  const ppd = loadPpdSetup(loaded.config, DEFAULT_ADAPTER, { trees: join(DEFAULT_ADAPTER, 'trees.json'), lookup: 0 });
  for (const lookup of [0, DEFAULT_LOOKUP_TOKENS]) {
    const { ids } = await startGeneration(loaded, { prompt: golden.prompt, maxTokens: golden.maxTokens, ppd: { ...ppd, lookup } }).complete();
    assert.deepEqual(ids, golden.ids, `lookup ${lookup}`);
  }
});
