/**
 * Model directories: a random model written by writeRandomModel loads with openModelDir and is
 * deterministic for a seed; sharded weights, generation/tokenizer configs and chat templates are
 * picked up; and every broken directory fails with a typed error naming the file at fault.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { FormatError, ModelError } from '../src/errors.ts';
import { openModelDir, readJsonFile } from '../src/checkpoint/model-dir.ts';
import { writeSafetensors, type TensorToWrite } from '../src/format/safetensors-write.ts';
import { openSafetensors } from '../src/format/file-io.ts';
import { writeRandomModel } from '../src/checkpoint/random-init.ts';
import { FINAL_NORM, layerTensorName } from '../src/model/weights.ts';

const root = mkdtempSync(join(tmpdir(), 'ppd-model-dir-'));
after(() => rmSync(root, { recursive: true, force: true }));

const tinyConfigJson = {
  model_type: 'llama',
  vocab_size: 48,
  hidden_size: 16,
  intermediate_size: 40,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  bos_token_id: 1,
  eos_token_id: 2,
};

let dirCount = 0;
function randomModel(seed = 7, config: object = tinyConfigJson, dtype: 'F32' | 'F16' | 'BF16' = 'F32'): string {
  const dir = join(root, `model-${dirCount++}`);
  writeRandomModel(dir, config, { seed, dtype });
  return dir;
}

/** Rewrites a directory's model.safetensors through `edit`, which may drop, add or reshape entries. */
function editWeights(dir: string, edit: (entries: TensorToWrite[]) => TensorToWrite[]): void {
  const path = join(dir, 'model.safetensors');
  const source = openSafetensors(path);
  const entries = source.list().map((t) => ({ ...t, data: () => source.readF32(t.name) }));
  writeSafetensors(`${path}.new`, edit(entries));
  source.close();
  renameSync(`${path}.new`, path);
}

/** Opens a model directory for its metadata only, closing the tensors at once. */
function openAndClose(dir: string) {
  const model = openModelDir(dir);
  model.tensors.close();
  return model;
}

function assertThrowsNaming(open: () => unknown, type: typeof FormatError | typeof ModelError, names: string, detail: RegExp): void {
  assert.throws(open, (err: unknown) => {
    assert.ok(err instanceof type, `expected ${type.name}, got ${err}`);
    assert.ok(err.message.includes(names), `message names ${names}: ${err.message}`);
    assert.match(err.message, detail);
    return true;
  });
}

describe('writeRandomModel + openModelDir', () => {
  test('a random model loads, with its config, eos ids and every tensor', () => {
    const dir = randomModel();
    const model = openModelDir(dir);
    assert.equal(model.config.hiddenSize, 16);
    assert.deepEqual(model.eosTokenIds, [2]);
    assert.equal(model.tensors.list().length, 1 + 2 * 9 + 1 + 1);
    assert.equal(model.tokenizerFile, undefined);
    const norm = model.tensors.readF32(FINAL_NORM);
    assert.ok(norm.some((v) => Math.abs(v - 1) > 0.01), 'norm weights are not all exactly 1');
    assert.ok(norm.every((v) => Math.abs(v - 1) < 0.5), 'norm weights are near 1');
    const q = model.tensors.readF32(layerTensorName(1, 'self_attn.q_proj'));
    const std = Math.sqrt(q.reduce((s, v) => s + v * v, 0) / q.length);
    assert.ok(std > 0.015 && std < 0.025, `linear weights have std ~0.02, got ${std}`);
    model.tensors.close();
  });

  test('the same seed writes identical bytes; another seed does not', () => {
    const [a, b, c] = [randomModel(3), randomModel(3), randomModel(4)];
    const bytes = (dir: string) => readFileSync(join(dir, 'model.safetensors'));
    assert.ok(bytes(a).equals(bytes(b)));
    assert.ok(!bytes(a).equals(bytes(c)));
  });

  test('F16 and BF16 random models load', () => {
    for (const dtype of ['F16', 'BF16'] as const) {
      const model = openModelDir(randomModel(1, tinyConfigJson, dtype));
      assert.ok(model.tensors.list().every((t) => t.dtype === dtype));
      model.tensors.close();
    }
  });

  test('a tied model has no lm_head, and the tokenizer hook writes tokenizer.json', () => {
    const dir = join(root, `model-${dirCount++}`);
    writeRandomModel(dir, { ...tinyConfigJson, tie_word_embeddings: true }, { seed: 1, tokenizerJson: { version: '1.0' } });
    const model = openModelDir(dir);
    assert.ok(!model.tensors.list().some((t) => t.name === 'lm_head.weight'));
    assert.equal(model.tokenizerFile, join(dir, 'tokenizer.json'));
    assert.deepEqual(readJsonFile(model.tokenizerFile!), { version: '1.0' });
    model.tensors.close();
  });

  test('an invalid config is refused before anything is written', () => {
    assert.throws(() => randomModel(1, { ...tinyConfigJson, model_type: 'gpt2' }), ModelError);
  });
});

describe('openModelDir reads the optional files', () => {
  test('sharded weights load through model.safetensors.index.json', () => {
    const dir = randomModel();
    const single = openSafetensors(join(dir, 'model.safetensors'));
    const tensors = single.list();
    const weightMap: Record<string, string> = {};
    const half = Math.floor(tensors.length / 2);
    for (const [shard, part] of [['a.safetensors', tensors.slice(0, half)], ['b.safetensors', tensors.slice(half)]] as const) {
      writeSafetensors(join(dir, shard), part.map((t) => ({ ...t, data: () => single.readF32(t.name) })));
      for (const t of part) weightMap[t.name] = shard;
    }
    const expected = single.readF32(FINAL_NORM);
    single.close();
    rmSync(join(dir, 'model.safetensors'));
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }));
    const model = openModelDir(dir);
    assert.deepEqual(model.tensors.readF32(FINAL_NORM), expected);
    model.tensors.close();
  });

  test('eos ids from generation_config.json join config.json\'s', () => {
    const dir = randomModel();
    writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [7, 2] }));
    assert.deepEqual(openAndClose(dir).eosTokenIds, [2, 7]);
    writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: 9 }));
    assert.deepEqual(openAndClose(dir).eosTokenIds, [2, 9]);
  });

  test('chat_template: a string, a named list, or chat_template.jinja', () => {
    const dir = randomModel();
    const tokenizerConfig = join(dir, 'tokenizer_config.json');
    writeFileSync(tokenizerConfig, JSON.stringify({ chat_template: '{{ x }}', eos_token: '</s>' }));
    const model = openAndClose(dir);
    assert.equal(model.chatTemplate, '{{ x }}');
    assert.equal(model.tokenizerConfig?.eos_token, '</s>');
    const list = [{ name: 'tool_use', template: 'T' }, { name: 'default', template: 'D' }];
    writeFileSync(tokenizerConfig, JSON.stringify({ chat_template: list }));
    assert.equal(openAndClose(dir).chatTemplate, 'D');
    writeFileSync(tokenizerConfig, JSON.stringify({ chat_template: [{ name: 'rag', template: 'R' }] }));
    assert.equal(openAndClose(dir).chatTemplate, 'R');
    writeFileSync(join(dir, 'chat_template.jinja'), 'J');
    assert.equal(openAndClose(dir).chatTemplate, 'J');
  });
});

describe('openModelDir errors', () => {
  test('missing directory', () => {
    const dir = join(root, 'no-such-model');
    assertThrowsNaming(() => openModelDir(dir), FormatError, dir, /model directory not found/);
  });

  test('missing config.json', () => {
    const dir = randomModel();
    rmSync(join(dir, 'config.json'));
    assertThrowsNaming(() => openModelDir(dir), FormatError, join(dir, 'config.json'), /file not found/);
  });

  for (const file of ['config.json', 'generation_config.json', 'tokenizer_config.json', 'model.safetensors.index.json']) {
    test(`malformed JSON in ${file}`, () => {
      const dir = randomModel();
      if (file === 'model.safetensors.index.json') rmSync(join(dir, 'model.safetensors'));
      writeFileSync(join(dir, file), '{"model_type": "llama",');
      assertThrowsNaming(() => openModelDir(dir), FormatError, join(dir, file), /malformed JSON/);
    });
  }

  test('malformed eos_token_id and chat_template', () => {
    const dir = randomModel();
    writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: '2' }));
    assertThrowsNaming(() => openModelDir(dir), FormatError, 'generation_config.json', /"eos_token_id"/);
    writeFileSync(join(dir, 'generation_config.json'), '{}');
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: [{ name: 'x' }] }));
    assertThrowsNaming(() => openModelDir(dir), FormatError, 'tokenizer_config.json', /"chat_template"/);
  });

  test('unsupported model_type', () => {
    const dir = randomModel();
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...tinyConfigJson, model_type: 'gpt2' }));
    assertThrowsNaming(() => openModelDir(dir), ModelError, join(dir, 'config.json'), /model_type.*"gpt2"/);
  });

  test('tensor shape mismatch', () => {
    const dir = randomModel();
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...tinyConfigJson, intermediate_size: 32 }));
    assertThrowsNaming(() => openModelDir(dir), ModelError, 'model.safetensors', /"model.layers.0.mlp.gate_proj.weight" has shape \[40,16\]/);
  });

  test('missing tensor', () => {
    const dir = randomModel();
    editWeights(dir, (entries) => entries.filter((e) => e.name !== FINAL_NORM));
    assertThrowsNaming(() => openModelDir(dir), ModelError, 'model.safetensors', /"model.norm.weight" is missing/);
  });

  test('unexpected tensor', () => {
    const dir = randomModel();
    const extra = { name: 'model.extra.weight', dtype: 'F32' as const, shape: [2], data: () => new Float32Array(2) };
    editWeights(dir, (entries) => [...entries, extra]);
    assertThrowsNaming(() => openModelDir(dir), ModelError, 'model.safetensors', /unexpected tensor "model.extra.weight"/);
  });

  test('missing weights file', () => {
    const dir = randomModel();
    rmSync(join(dir, 'model.safetensors'));
    assertThrowsNaming(() => openModelDir(dir), FormatError, dir, /no model.safetensors or model.safetensors.index.json/);
    writeFileSync(join(dir, 'pytorch_model.bin'), '');
    assertThrowsNaming(() => openModelDir(dir), FormatError, dir, /PyTorch .bin weights are not supported/);
  });
});
