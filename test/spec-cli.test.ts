/**
 * Speculative decoding from model folders: through `startGeneration` (the API the CLI and the
 * server share), greedy SD stops exactly like plain decoding at EOS, stop strings and limits;
 * the draft's vocabulary is checked before it is loaded (a different vocab_size, or the same
 * size with other tokens, is one clear error); and `ppd generate --draft [--draft-ppd]` on the
 * command line prints plain decoding's greedy output.
 */
import { BYTE_MODEL_SHAPE } from './helpers/byte-model.ts';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModelError } from '../src/errors.ts';
import { startGeneration } from '../src/generate/request.ts';
import { loadModel, type LoadedModel } from '../src/checkpoint/load.ts';
import { writeRandomModel } from '../src/checkpoint/random-init.ts';
import { PromptAdapter } from '../src/ppd/adapter.ts';
import { saveAdapter } from '../src/ppd/adapter-files.ts';
import { buildTreeSet } from '../src/ppd/tree-builder.ts';
import { saveTreeSet } from '../src/ppd/tree-files.ts';
import { Rng } from '../src/sampling/rng.ts';
import { loadDraft, type DraftSetup } from '../src/spec/setup.ts';
import { byteFallbackTokenizerConfig, byteFallbackTokenizerJson, llamaTokenizerJson } from '../src/tokenizer/byte-tokenizer.ts';
import { runPpd } from './helpers/cli.ts';

const SHAPE = { ...BYTE_MODEL_SHAPE, max_position_embeddings: 128 };
const DRAFT_SHAPE = { ...SHAPE, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 };
const ACC = [0, 1, 2].map((i) => Array.from({ length: 4 }, (_, k) => 0.45 * Math.pow(0.5, k) * Math.pow(0.8, i)));

let work: string;
let targetDir: string;
let draftDir: string;
let draftAdapterDir: string;
/** A draft with vocab_size 300 (the same tokenizer): the mismatch case. */
let biggerDir: string;
let target: LoadedModel;
let draft: DraftSetup;

function modelFolder(name: string, shape: object, seed: number, tokenizerJson = byteFallbackTokenizerJson()): string {
  const dir = join(work, name);
  writeRandomModel(dir, shape, { seed, tokenizerJson });
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(byteFallbackTokenizerConfig()));
  return dir;
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'ppd-spec-'));
  targetDir = modelFolder('target', SHAPE, 4);
  draftDir = modelFolder('draft', DRAFT_SHAPE, 9);
  biggerDir = modelFolder('draft-300', { ...DRAFT_SHAPE, vocab_size: 300 }, 9);
  target = await loadModel(targetDir, { cacheDir: false, threads: 1 });
  draft = await loadDraft(target, draftDir, { cacheDir: false, threads: 1, draftTokens: 3 });
  // The draft's own PPD adapter (random: initialised from token embeddings) and trees.
  draftAdapterDir = join(work, 'draft-ppd');
  saveAdapter(PromptAdapter.initialise(draft.model.config, (ids) => draft.model.embed(ids), [70, 80], { promptTokens: 3, virtualTokens: 1, attention: 'ensemble', initText: 't' }), draftAdapterDir);
  saveTreeSet(join(draftAdapterDir, 'trees.json'), buildTreeSet(ACC, { budget: 8, promptTokens: 3, virtualTokens: 1 }));
});

after(async () => {
  await target.model.release();
  await draft.model.release();
  rmSync(work, { recursive: true, force: true });
});

test('through startGeneration, greedy SD stops exactly like plain decoding at EOS, stop strings and limits', async () => {
  const rng = new Rng(5);
  for (let p = 0; p < 12; p++) {
    const prompt = `prompt ${p} ${'ab'.repeat(1 + (p % 5))}`;
    const reference = await startGeneration(target, { prompt, maxTokens: 40 }).complete();
    const variants = [
      { maxTokens: 40, stop: undefined },
      { maxTokens: 40, stop: [reference.text.slice(5, 7) || 'zz'] },
      { maxTokens: 1 + Math.floor(rng.next() * 20), stop: undefined },
    ];
    for (const v of variants) {
      const plain = await startGeneration(target, { prompt, ...v }).complete();
      let steps = 0;
      const sd = await startGeneration(target, { prompt, ...v, draft, onStep: () => steps++ }).complete();
      assert.deepEqual(sd.ids, plain.ids);
      assert.equal(sd.text, plain.text);
      assert.equal(sd.stats.finishReason, plain.stats.finishReason);
      assert.equal(sd.stats.steps, steps);
    }
  }
});

test('the draft must share the target vocabulary: a clear error before it is loaded', async () => {
  await assert.rejects(loadDraft(target, biggerDir, { cacheDir: false }), (e: Error) => {
    assert.ok(e instanceof ModelError);
    assert.match(e.message, /draft model .*draft-300: vocab_size 300 differs from the target's 260 .*must share the target's tokenizer and vocabulary/);
    return true;
  });
  // Same size, but id 259 spells "x" instead of "▁".
  const other = modelFolder('draft-other-tokens', DRAFT_SHAPE, 9, llamaTokenizerJson(['x'], []));
  await assert.rejects(loadDraft(target, other, { cacheDir: false }), /token id 259 is "x" there but "▁" in the target's tokenizer/);
});

/** Runs `ppd ...args`; resolves with exit code and output. */
const ppd = (...args: string[]) => runPpd(join(work, 'cache'), args);

test('ppd generate --draft [--draft-ppd] prints plain greedy output; a vocabulary mismatch is one error line', async () => {
  const common = ['generate', '--model', targetDir, '--prompt', 'hello there', '--max-tokens', '24', '--json', '--threads', '1'];
  const [plain, sd, sdPpd, mismatch] = await Promise.all([
    ppd(...common),
    ppd(...common, '--draft', draftDir, '--draft-tokens', '4'),
    ppd(...common, '--draft', draftDir, '--draft-ppd', draftAdapterDir),
    ppd(...common, '--draft', biggerDir),
  ]);
  for (const run of [plain, sd, sdPpd]) assert.equal(run.code, 0, run.stderr);
  const ids = (run: { stdout: string }) => JSON.parse(run.stdout).ids as number[];
  assert.deepEqual(ids(sd), ids(plain));
  assert.deepEqual(ids(sdPpd), ids(plain));
  assert.equal(mismatch.code, 1);
  assert.equal(mismatch.stdout, '');
  assert.match(mismatch.stderr, /^error: draft model [^\n]*vocab_size 300 differs from the target's 260[^\n]*\n$/);
});
