/**
 * The schema reader (format/schema.ts) and the documents read through it: every bad field is one
 * error line naming the file and the field with what it must be and what it was; cross checks run
 * only on well-typed documents; config.json's families and RoPE scalings; adapter_config.json and
 * accuracy.json. (Trees and hardware profiles have their own cases in ppd-tree and calibrate.)
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { z } from 'zod';
import { FormatError, InputError, ModelError } from '../src/errors.ts';
import {
  arrayOf, crossCheck, fieldPath, integer, literal, number, object, oneOf, orDefault, parseWithSchema, positiveNumber, text,
} from '../src/format/schema.ts';
import { readJsonWithSchema } from '../src/format/text-file.ts';
import { CONFIG_FAMILY_NAMES, parseLlamaConfig } from '../src/model/config.ts';
import { readAccuracyTable } from '../src/ppd/accuracy-files.ts';
import { PromptAdapter } from '../src/ppd/adapter.ts';
import { loadAdapter, loadAdapterConfig, saveAdapter } from '../src/ppd/adapter-files.ts';
import { tinyConfig } from './helpers/tiny-model.ts';

const dir = mkdtempSync(join(tmpdir(), 'ppd-schema-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The message of the error `fn` throws, after checking its type. */
function messageOf(fn: () => unknown, type: new (...args: never[]) => Error = FormatError): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof type, `${type.name} expected, got ${err}`);
    return err.message;
  }
  assert.fail('no error thrown');
}

describe('schema reader', () => {
  const doc = crossCheck(object({
    schema: literal('x/1'),
    count: integer(1),
    share: number(0),
    rate: positiveNumber(),
    name: text(),
    mode: oneOf(['a', 'b']),
    depth: orDefault(integer(0, 8), 3),
    items: arrayOf(object({ id: integer(0, 9) }), 'a list of items'),
  }), (d, fail) => {
    if (d.items.length !== d.count) fail(['items'], `must hold ${d.count} items, got ${d.items.length}`);
  });
  const good = { schema: 'x/1', count: 1, share: 0, rate: 0.5, name: 'n', mode: 'a', items: [{ id: 3 }] };
  const read = (raw: unknown) => parseWithSchema(doc, raw, { file: 'f.json' });

  test('a good document parses; absent or null defaults take their fallback', () => {
    assert.deepEqual(read(good), { ...good, depth: 3 });
    assert.equal(read({ ...good, depth: null }).depth, 3);
    assert.equal(read({ ...good, depth: 8 }).depth, 8);
  });

  const cases: [string, Record<string, unknown>, string][] = [
    ['wrong tag', { schema: 'x/2' }, 'f.json: field "schema" must be "x/1", got "x/2"'],
    ['missing field', { count: undefined }, 'f.json: field "count" must be an integer >= 1, got undefined'],
    ['a string for a number', { count: '1' }, 'f.json: field "count" must be an integer >= 1, got "1"'],
    ['a fraction for an integer', { count: 1.5 }, 'f.json: field "count" must be an integer >= 1, got 1.5'],
    ['below the minimum', { share: -0.1 }, 'f.json: field "share" must be a number >= 0, got -0.1'],
    ['zero for a positive number', { rate: 0 }, 'f.json: field "rate" must be a positive number, got 0'],
    ['an empty string', { name: '' }, 'f.json: field "name" must be a non-empty string, got ""'],
    ['not one of the values', { mode: 'c' }, 'f.json: field "mode" must be one of a, b, got "c"'],
    ['over the maximum', { depth: 9 }, 'f.json: field "depth" must be an integer in 0..8, got 9'],
    ['a nested field', { items: [{ id: 10 }] }, 'f.json: field "items[0].id" must be an integer in 0..9, got 10'],
    ['not an array', { items: {} }, 'f.json: field "items" must be a list of items, got {}'],
    ['a cross check', { count: 2 }, 'f.json: field "items" must hold 2 items, got 1'],
  ];
  for (const [name, edit, message] of cases) {
    test(`one line naming the file and the field: ${name}`, () => {
      assert.equal(messageOf(() => read({ ...good, ...edit })), message);
    });
  }

  test('the first problem is the one reported; cross checks wait for well-typed fields', () => {
    assert.equal(messageOf(() => read({ ...good, count: 0, name: 3 })), 'f.json: field "count" must be an integer >= 1, got 0');
    // count is wrong, so the cross check (which compares it with items) does not run at all.
    let ran = false;
    const watched = crossCheck(object({ count: integer(1) }), () => (ran = true));
    assert.throws(() => parseWithSchema(watched, { count: 0 }, { file: 'f' }));
    assert.equal(ran, false);
  });

  test('a whole document of the wrong kind, a root prefix, a bare label and another error type', () => {
    assert.equal(messageOf(() => read([1])), 'f.json: must hold a JSON object, got [1]');
    assert.equal(messageOf(() => parseWithSchema(doc, 'x', { file: 'f', root: 'tree' })), 'f: field "tree" must be a JSON object, got "x"');
    assert.equal(
      messageOf(() => parseWithSchema(doc, { ...good, count: 0 }, { file: 'f', root: 'tree', label: (p) => p, error: (d) => new InputError(d) }), InputError),
      'tree.count must be an integer >= 1, got 0',
    );
    assert.equal(fieldPath(['trees', 2, 'candidates', 0, 'path']), 'trees[2].candidates[0].path');
  });

  test('files: missing, malformed JSON, and a schema error all name the file', () => {
    const path = join(dir, 'doc.json');
    assert.match(messageOf(() => readJsonWithSchema(doc, path)), /doc\.json: file not found/);
    writeFileSync(path, '{"schema": ');
    assert.match(messageOf(() => readJsonWithSchema(doc, path)), /doc\.json: malformed JSON/);
    writeFileSync(path, JSON.stringify({ ...good, mode: 'z' }));
    assert.equal(messageOf(() => readJsonWithSchema(doc, path)), `${path}: field "mode" must be one of a, b, got "z"`);
  });

  test('schemas are plain zod: an unknown field is dropped by object, a zod schema nests', () => {
    const withZod = object({ n: z.number().int() });
    assert.deepEqual(parseWithSchema(withZod, { n: 1, extra: true }, { file: 'f' }), { n: 1 });
  });
});

describe('config.json', () => {
  const base = {
    model_type: 'llama', vocab_size: 32, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 4,
    num_key_value_heads: 2, bos_token_id: 1, eos_token_id: 2,
  };
  const parse = (edit: Record<string, unknown>) => parseLlamaConfig({ ...base, ...edit }, 'm/config.json');

  test('fields map to LlamaConfig with the documented defaults', () => {
    assert.deepEqual(parse({}), {
      modelType: 'llama', vocabSize: 32, hiddenSize: 16, intermediateSize: 24, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 4,
      rmsNormEps: 1e-6, ropeTheta: 10000, ropeScaling: { type: 'none' }, bias: { qkv: false, output: false, mlp: false }, qkNorm: false,
      tieWordEmbeddings: false, maxPositionEmbeddings: 2048, bosTokenId: 1, eosTokenIds: [2],
    });
    const c = parse({ num_key_value_heads: null, head_dim: 8, eos_token_id: [2, 5], tie_word_embeddings: true, rope_scaling: { type: 'linear', factor: 4 } });
    assert.deepEqual([c.numKvHeads, c.headDim, c.eosTokenIds, c.tieWordEmbeddings, c.ropeScaling], [4, 8, [2, 5], true, { type: 'linear', factor: 4 }]);
    assert.deepEqual(parse({ rope_scaling: { rope_type: 'default' } }).ropeScaling, { type: 'none' });
    assert.equal(parse({ model_type: 'mistral' }).modelType, 'mistral');
  });

  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['an unknown family', { model_type: 'gpt2' }, /field "model_type" "gpt2" is not supported \(expected "llama", "mistral", "qwen2" or "qwen3"\)/],
    ['a count as a string', { hidden_size: '16' }, /field "hidden_size" must be a positive integer, got "16"/],
    ['kv heads that do not divide', { num_key_value_heads: 3 }, /field "num_key_value_heads" \(3\) must divide num_attention_heads \(4\)/],
    ['a hidden size heads do not divide', { hidden_size: 18 }, /field "hidden_size" \(18\) must be divisible by num_attention_heads \(4\)/],
    ['an odd head dim', { head_dim: 3 }, /field "head_dim" must be even for rotary embeddings, got 3/],
    ['another activation', { hidden_act: 'gelu' }, /field "hidden_act" "gelu" is not supported \(only "silu"\)/],
    ['Mistral attention biases', { model_type: 'mistral', attention_bias: true }, /field "attention_bias" true is not supported/],
    ['an unknown RoPE scaling', { rope_scaling: { type: 'yarn', factor: 4 } }, /field "rope_scaling.rope_type" "yarn" is not supported \(supported: "default", "linear", "llama3"\)/],
    ['a RoPE factor of 0', { rope_scaling: { rope_type: 'linear', factor: 0 } }, /field "rope_scaling.factor" must be a positive number, got 0/],
    ['RoPE scaling not an object', { rope_scaling: 2 }, /field "rope_scaling" must be an object or null, got 2/],
    ['a negative eos id', { eos_token_id: [2, -1] }, /field "eos_token_id\[1\]" must be a token id, got -1/],
    ['an eos id as text', { eos_token_id: '2' }, /field "eos_token_id" must be a token id or a list of ids, got "2"/],
  ];
  for (const [name, edit, message] of cases) {
    test(`ModelError naming the file and the field: ${name}`, () => {
      const text = messageOf(() => parse(edit), ModelError);
      assert.match(text, /^m\/config\.json: /);
      assert.match(text, message);
    });
  }

  test('every family name has a reader', () => {
    for (const name of CONFIG_FAMILY_NAMES) assert.equal(parse({ model_type: name }).modelType, name);
  });
});

describe('adapter_config.json and accuracy.json', () => {
  const adapterDir = join(dir, 'adapter');
  mkdirSync(adapterDir, { recursive: true });
  const base = tinyConfig();
  saveAdapter(PromptAdapter.initialise(base, new Float32Array(base.vocabSize * base.hiddenSize), [1, 2], { promptTokens: 2, virtualTokens: 1, attention: 'ensemble', initText: 'x' }), adapterDir);
  const configPath = join(adapterDir, 'adapter_config.json');
  const good = loadAdapterConfig(adapterDir);

  test('a saved adapter config reads back as written, training record included', () => {
    writeFileSync(configPath, JSON.stringify({ ...good, training: { steps: 3 }, note: 'kept' }));
    assert.deepEqual(loadAdapterConfig(adapterDir), { ...good, training: { steps: 3 }, note: 'kept' });
  });

  const cases: [Record<string, unknown>, RegExp][] = [
    [{ schema: 'ppd.adapter/2' }, /field "schema" must be "ppd\.adapter\/1", got "ppd\.adapter\/2"/],
    [{ promptTokens: 0 }, /field "promptTokens" must be a positive integer, got 0/],
    [{ attention: 'causal' }, /field "attention" must be ensemble, decoder or encoder, got "causal"/],
    [{ baseModel: undefined }, /field "baseModel" must be an object/],
  ];
  for (const [edit, message] of cases) {
    test(`adapter config: ${message.source.slice(0, 40)}`, () => {
      writeFileSync(configPath, JSON.stringify({ ...good, ...edit }));
      const text = messageOf(() => loadAdapter(adapterDir, base));
      assert.ok(text.startsWith(`${configPath}: `), text);
      assert.match(text, message);
    });
  }

  test('accuracy tables: a table of shares, non-empty', () => {
    const path = join(dir, 'accuracy.json');
    writeFileSync(path, JSON.stringify({ schema: 'ppd.accuracy/1', accuracy: [[0.5, 0.1], [0.3]] }));
    assert.deepEqual(readAccuracyTable(path), [[0.5, 0.1], [0.3]]);
    writeFileSync(path, JSON.stringify({ accuracy: [] }));
    assert.match(messageOf(() => readAccuracyTable(path)), /field "accuracy" must be a non-empty table/);
    writeFileSync(path, JSON.stringify({ accuracy: [[0.5, 'x']] }));
    assert.match(messageOf(() => readAccuracyTable(path)), /field "accuracy\[0\]\[1\]" must be a number >= 0, got "x"/);
  });
});
