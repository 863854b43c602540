/**
 * The PPD reference implementation's adapters (PEFT prompt-tuning folders, as its
 * PromptDecoder.save_pretrained writes them) in ppd: loaded as they are (F16 weights, with or
 * without peft_type, which the reference's loader deletes), used by `generate --ppd` with trees
 * built for them, refused clearly where they hold what ppd cannot run (pickles, weighted
 * aggregation, custom heads, another base model), and written back by `ppd convert-adapter`
 * with the trees as the reference's dictionary.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { convertAdapterCommand } from '../src/cli/adapter.ts';
import { FormatError, InputError, ModelError } from '../src/errors.ts';
import { autoregressive } from '../src/decode/autoregressive.ts';
import { promptIds } from '../src/generate/request.ts';
import { loadModel } from '../src/checkpoint/load.ts';
import { ppdDecode } from '../src/ppd/decode.ts';
import { Sampler } from '../src/sampling/sampler.ts';
import { take } from './helpers/decoding.ts';
import { writeSafetensors } from '../src/format/safetensors-write.ts';
import { parseLlamaConfig } from '../src/model/config.ts';
import { PromptAdapter } from '../src/ppd/adapter.ts';
import { loadAdapter, loadAdapterShape, saveAdapter } from '../src/ppd/adapter-files.ts';
import { pickReferenceTrees, readReferenceTreeFile, treeSetFromReference } from '../src/ppd/reference-trees.ts';
import { loadPpdSetup } from '../src/ppd/setup.ts';
import { saveTreeSet } from '../src/ppd/tree-files.ts';
import { buildTreeSet } from '../src/ppd/tree-builder.ts';
import { writeAccuracyFile } from '../src/ppd/accuracy-files.ts';
import { Rng } from '../src/sampling/rng.ts';
import { runPpdOk } from './helpers/cli.ts';
import { BYTE_MODEL_SHAPE, writeByteModel } from './helpers/byte-model.ts';

const root = mkdtempSync(join(tmpdir(), 'ppd-peft-'));
after(() => rmSync(root, { recursive: true, force: true }));

const modelDir = writeByteModel(join(root, 'model'));
const base = parseLlamaConfig(BYTE_MODEL_SHAPE);
const C = base.hiddenSize;

/** adapter_config.json exactly as the reference's PromptConfig serialises (train.py's defaults, N = 3). */
function referenceConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    auto_mapping: null,
    base_model_name_or_path: 'lmsys/vicuna-7b-v1.3',
    inference_mode: true,
    num_attention_heads: 4,
    num_layers: 2,
    num_transformer_submodules: 1,
    num_virtual_tokens: 3,
    peft_type: 'PROMPT_TUNING',
    prompt_tuning_init: 'TEXT',
    prompt_tuning_init_text: 'Next 2 word Next 3 word Next 4 word',
    revision: null,
    task_type: 'CAUSAL_LM',
    token_dim: C,
    tokenizer_kwargs: null,
    tokenizer_name_or_path: 'lmsys/vicuna-7b-v1.3',
    num_special_tokens: 3,
    virtual_tokens_per_special_token: 1,
    use_cache: true,
    num_exits: 1,
    use_custom_lm_head: false,
    use_prefix_tuning: false,
    prefix_virtual_tokens: 10,
    vt_attention_type: 'ensemble',
    aggregation_type: 'mean',
    ...overrides,
  };
}

let folders = 0;
/** A reference folder: its config and adapter_model.safetensors ("prompt_embeddings", F16 as a half-precision model saves it). */
function referenceFolder(config: Record<string, unknown>, embeddings?: Float32Array): { dir: string; embeddings: Float32Array } {
  const dir = join(root, `reference-${folders++}`);
  mkdirSync(dir, { recursive: true });
  const rows = config.num_virtual_tokens as number;
  const rng = new Rng(folders);
  const values = embeddings ?? Float32Array.from({ length: rows * (config.token_dim as number) }, () => Math.fround(rng.next() - 0.5));
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify(config, null, 2));
  writeSafetensors(join(dir, 'adapter_model.safetensors'), [{ name: 'prompt_embeddings', dtype: 'F16', shape: [rows, config.token_dim as number], data: () => values }], { metadata: { format: 'pt' } });
  return { dir, embeddings: values };
}

test('a reference adapter loads as it is: rows, N, V and attention from its fields, with or without peft_type', () => {
  for (const config of [referenceConfig(), (({ peft_type: _, ...rest }) => rest)(referenceConfig()), referenceConfig({ num_special_tokens: 2, virtual_tokens_per_special_token: 2, num_virtual_tokens: 4, vt_attention_type: 'decoder' })]) {
    const { dir, embeddings } = referenceFolder(config);
    const adapter = loadAdapter(dir, base);
    assert.equal(adapter.promptTokens, config.num_special_tokens);
    assert.equal(adapter.virtualTokens, config.virtual_tokens_per_special_token);
    assert.equal(adapter.config.attention, config.vt_attention_type);
    // Stored F16: the rows come back as the nearest halves of what was written.
    embeddings.forEach((x, i) => assert.ok(Math.abs(adapter.embeddings[i]! - x) <= 1e-3, `row value ${i}`));
    assert.deepEqual(loadAdapterShape(dir), { promptTokens: adapter.promptTokens, virtualTokens: adapter.virtualTokens, attention: adapter.config.attention });
  }
});

test('what ppd cannot run from a reference folder is one error naming the file and field', () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ aggregation_type: 'weighted' }, /field "aggregation_type" must be "mean", got "weighted"/],
    [{ use_custom_lm_head: true }, /field "use_custom_lm_head" true is not supported/],
    [{ use_prefix_tuning: true }, /field "use_prefix_tuning" true is not supported/],
    [{ num_exits: 2 }, /field "num_exits" must be 1/],
    [{ num_virtual_tokens: 4 }, /field "num_virtual_tokens" \(4\) must be num_special_tokens × virtual_tokens_per_special_token \(3\)/],
    [{ peft_type: 'LORA' }, /field "peft_type" must be "PROMPT_TUNING", got "LORA"/],
    [{ vt_attention_type: 'causal' }, /field "vt_attention_type" must be ensemble, decoder or encoder/],
  ];
  for (const [overrides, message] of cases) {
    const { dir } = referenceFolder(referenceConfig({ num_virtual_tokens: 3, ...overrides }));
    assert.throws(() => loadAdapter(dir, base), (e: Error) => e instanceof FormatError && e.message.startsWith(join(dir, 'adapter_config.json')) && message.test(e.message), JSON.stringify(overrides));
  }
  // Another base model: its hidden size or layer count differs.
  const wide = referenceFolder(referenceConfig({ token_dim: 64 }));
  assert.throws(() => loadAdapter(wide.dir, base), (e: Error) => e instanceof ModelError && /field "token_dim" is 64, but the loaded model's hidden size is 32: this adapter was trained for another base model \(lmsys\/vicuna-7b-v1\.3\)/.test(e.message));
  const deep = referenceFolder(referenceConfig({ num_layers: 32 }));
  assert.throws(() => loadAdapter(deep.dir, base), /field "num_layers" is 32, but the loaded model's layer count is 2/);
  // A pickle instead of safetensors: say how to convert it.
  const pickled = referenceFolder(referenceConfig());
  rmSync(join(pickled.dir, 'adapter_model.safetensors'));
  writeFileSync(join(pickled.dir, 'adapter_model.bin'), 'PK\u0003\u0004 not read');
  assert.throws(() => loadAdapter(pickled.dir, base), (e: Error) => e instanceof FormatError && /adapter_model\.bin: is a PyTorch pickle.*save_file\(torch\.load\('adapter_model\.bin'\), 'adapter_model\.safetensors'\)/.test(e.message));
});

test('--ppd takes a reference folder as it is: trees built for it (with a notice), greedy output equal to plain', async () => {
  const { dir } = referenceFolder(referenceConfig());
  const notices: string[] = [];
  const setup = loadPpdSetup(base, dir, { onNotice: (line) => notices.push(line) });
  assert.equal(setup.trees.promptTokens, 3);
  assert.equal(setup.trees.budget, 16);
  assert.match(notices.join('\n'), /has no trees\.json or accuracy\.json: using trees of 16 rows from a prior guess.*ppd tree convert --from FILE\.py --adapter/);
  const loaded = await loadModel(modelDir, { threads: 1, cacheDir: root });
  try {
    const prompt = promptIds(loaded, 'The quick brown fox');
    const plain = await take(autoregressive(loaded.model, prompt, new Sampler({ temperature: 0 })), 24);
    const ppd = await take(ppdDecode(loaded.model, prompt, { ...setup, sampler: new Sampler({ temperature: 0 }) }), 24);
    assert.deepEqual(ppd, plain);
    // And through the command line, as a user runs it.
    const run = await runPpdOk(root, ['generate', '--model', modelDir, '--prompt', 'The quick brown fox', '--max-tokens', '24', '--json', '--threads', '1', '--ppd', dir]);
    assert.deepEqual(JSON.parse(run.stdout).ids, plain);
  } finally {
    await loaded.model.release();
  }
});

test('convert-adapter: ppd -> reference -> ppd keeps the rows; the trees go out as the reference\'s dictionary and come back', async () => {
  const ppdDir = join(root, 'ppd-adapter');
  const table = new Float32Array(base.vocabSize * C).map((_, i) => Math.sin(i));
  const adapter = PromptAdapter.initialise(base, table, [5, 9, 14], { promptTokens: 3, virtualTokens: 1, attention: 'ensemble', initText: 'Next 2 word' });
  saveAdapter(adapter, ppdDir);
  const acc = [0, 1, 2].map((i) => Array.from({ length: 6 }, (_, k) => 0.45 * 0.5 ** k * 0.8 ** i));
  writeAccuracyFile(join(ppdDir, 'accuracy.json'), acc, 100, 'test');
  const trees = buildTreeSet(acc, { budget: 20, promptTokens: 3 });
  saveTreeSet(join(ppdDir, 'trees.json'), trees);

  const peftDir = join(root, 'as-peft');
  const run = await runPpdOk(root, ['convert-adapter', '--ppd', ppdDir, '--model', modelDir, '--to', 'peft', '--out', peftDir, '--base-model-name', 'me/tiny']);
  assert.match(run.stdout, /PEFT prompt-tuning adapter.*3 prompt tokens × 1 virtual, trees as dynamic_sparse_trees_20 in dynamic_sparse_trees\.py/);
  const written = JSON.parse(readFileSync(join(peftDir, 'adapter_config.json'), 'utf8'));
  assert.deepEqual(
    [written.peft_type, written.num_virtual_tokens, written.token_dim, written.num_special_tokens, written.vt_attention_type, written.aggregation_type, written.base_model_name_or_path],
    ['PROMPT_TUNING', 3, C, 3, 'ensemble', 'mean', 'me/tiny'],
  );
  assert.deepEqual(loadAdapter(peftDir, base).embeddings, adapter.embeddings);
  const dict = pickReferenceTrees(readReferenceTreeFile(readFileSync(join(peftDir, 'dynamic_sparse_trees.py'), 'utf8'), 'dynamic_sparse_trees.py'), 'dynamic_sparse_trees.py');
  const back = treeSetFromReference(dict, { ...loadAdapterShape(peftDir), source: 'back' });
  for (let d = 1; d <= 3; d++) assert.deepEqual(back.trees[d]!.candidates, trees.trees[d]!.candidates, `d=${d}`);

  const againDir = join(root, 'as-ppd');
  const quiet = { write: process.stdout.write };
  process.stdout.write = () => true;
  try {
    convertAdapterCommand({ ppd: peftDir, model: modelDir, to: 'ppd', out: againDir });
    assert.throws(() => convertAdapterCommand({ ppd: peftDir, model: modelDir, to: 'ppd', out: againDir }), (e: Error) => e instanceof InputError && e.message.includes('already holds an adapter'));
  } finally {
    process.stdout.write = quiet.write;
  }
  const again = loadAdapter(againDir, base);
  assert.deepEqual(again.embeddings, adapter.embeddings);
  assert.equal(again.config.schema, 'ppd.adapter/1');
});
