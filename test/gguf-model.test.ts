/**
 * LLaMA models through GGUF: tensor names and the Q/K row permutation; LlamaConfig to metadata
 * and back (same config hash); refusals of what ppd cannot run; tiny random models exported to
 * GGUF (f32, f16, q8_0, q4_0) and opened again (exact tensors for f32, permuted rows on disk,
 * readBlockQuantized consistent with readF32); the same logits through loadModel as the
 * safetensors original (exact for f32, close for f16/q8_0); GGUF back to a Hugging Face folder;
 * and the compile cache noticing a rewritten .gguf.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ModelError } from '../src/errors.ts';
import { writeLlamaGguf, type GgufOutputType } from '../src/checkpoint/gguf-export.ts';
import { llamaConfigFromGguf, llamaGgufEntries, tokenIdEntries } from '../src/checkpoint/gguf-config.ts';
import { ggufRowOfHfRow, ggufTensorName, hfTensorName } from '../src/checkpoint/gguf-tensors.ts';
import { dequantize } from '../src/format/gguf/quant.ts';
import { openGguf } from '../src/format/gguf/open.ts';
import type { GgufEntry } from '../src/format/gguf/types.ts';
import { writeGguf } from '../src/format/gguf/write.ts';
import { writeHfModel } from '../src/checkpoint/hf-export.ts';
import { openModelDir, type ModelDir } from '../src/checkpoint/model-dir.ts';
import { newCache } from '../src/decode/autoregressive.ts';
import { loadModel } from '../src/checkpoint/load.ts';
import { parseLlamaConfig, type LlamaConfig } from '../src/model/config.ts';
import { causalMask } from '../src/model/llama-model.ts';
import { writeRandomModel } from '../src/checkpoint/random-init.ts';
import { expectedTensors } from '../src/model/weights.ts';
import { configHash } from '../src/ppd/adapter.ts';
import { compileGraph } from '../src/runtime/compile.ts';
import { inferenceGraph } from '../src/model/llama-graph.ts';
import { BYTE_MODEL_SHAPE, writeByteModel } from './helpers/byte-model.ts';
import { maxAbsDiff } from './helpers/tiny-model.ts';

const root = mkdtempSync(join(tmpdir(), 'ppd-gguf-model-'));
after(() => rmSync(root, { recursive: true, force: true }));

const SHAPE = BYTE_MODEL_SHAPE;
/** Tied embeddings, head_dim apart from hidden / heads, linear rope scaling, a padded vocabulary. */
const TIED_SHAPE = { ...SHAPE, vocab_size: 288, head_dim: 16, tie_word_embeddings: true, rope_theta: 500000, rope_scaling: { type: 'linear', factor: 2 } };

let count = 0;
const hfModel = (shape: object, seed: number) => writeByteModel(join(root, `hf-${count++}`), shape, seed);

function open<T>(path: string, use: (m: ModelDir) => T): T {
  const model = openModelDir(path);
  try {
    return use(model);
  } finally {
    model.tensors.close();
  }
}

function exportGguf(from: string, type: GgufOutputType, out = join(root, `${count++}-${type}.gguf`)): string {
  open(from, (m) => writeLlamaGguf(m, out, type));
  return out;
}

let hfDir: string;
let tiedDir: string;
before(() => {
  hfDir = hfModel(SHAPE, 3);
  tiedDir = hfModel(TIED_SHAPE, 4);
});

describe('LLaMA tensors in GGUF', () => {
  test('names map both ways', () => {
    const config = parseLlamaConfig(SHAPE);
    for (const name of expectedTensors(config).keys()) assert.equal(hfTensorName(ggufTensorName(name)!), name);
    assert.equal(ggufTensorName('model.layers.1.self_attn.o_proj.weight'), 'blk.1.attn_output.weight');
    assert.equal(ggufTensorName('model.layers.0.post_attention_layernorm.weight'), 'blk.0.ffn_norm.weight');
    assert.equal(hfTensorName('output.weight'), 'lm_head.weight');
    assert.equal(hfTensorName('blk.3.ffn_down.weight'), 'model.layers.3.mlp.down_proj.weight');
    assert.equal(hfTensorName('rope_freqs.weight'), undefined);
    assert.equal(ggufTensorName('model.layers.0.mlp.other.weight'), undefined);
  });

  test('q/k rows: within a head, HF row half * D/2 + i is GGUF row 2i + half', () => {
    assert.deepEqual([...ggufRowOfHfRow(8, 1)], [0, 2, 4, 6, 1, 3, 5, 7]);
    assert.deepEqual([...ggufRowOfHfRow(8, 2)], [0, 2, 1, 3, 4, 6, 5, 7]);
  });
});

describe('LlamaConfig as GGUF metadata', () => {
  const roundTrip = (config: LlamaConfig, extra: GgufEntry[] = []) => {
    const path = join(root, `${count++}-meta.gguf`);
    writeGguf(path, [...llamaGgufEntries(config, { fileType: 'F32' }), ...tokenIdEntries(config), ...extra], []);
    const file = openGguf(path);
    file.close();
    return { file, read: () => llamaConfigFromGguf(file.metadata, { hasOutput: !config.tieWordEmbeddings, embeddingRows: config.vocabSize, names: [] }, path) };
  };

  for (const [what, shape] of [['untied', SHAPE], ['tied, head_dim, rope scaling', TIED_SHAPE]] as const) {
    test(`comes back equal, with the same adapter config hash (${what})`, () => {
      const config = parseLlamaConfig(shape);
      const { file, read } = roundTrip(config);
      assert.equal(file.metadataTypes.get('llama.block_count'), 'u32');
      assert.equal(file.metadataTypes.get('llama.attention.layer_norm_rms_epsilon'), 'f32');
      assert.deepEqual(read(), config);
      assert.equal(configHash(read()), configHash(config));
    });
  }

  const config = parseLlamaConfig(SHAPE);
  const refusals: [string, GgufEntry[], RegExp][] = [
    ['another architecture', [{ key: 'general.architecture', type: 'string', value: 'gemma' }], /"general\.architecture" is "gemma"; ppd runs "llama", "qwen2", "qwen3"/],
    ['mixture of experts', [{ key: 'llama.expert_count', type: 'u32', value: 8 }], /"llama\.expert_count" is 8: mixture-of-experts/],
    ['yarn rope scaling', [{ key: 'llama.rope.scaling.type', type: 'string', value: 'yarn' }], /"llama\.rope\.scaling\.type" "yarn" is not supported/],
    ['partial rotary', [{ key: 'llama.rope.dimension_count', type: 'u32', value: 4 }], /"llama\.rope\.dimension_count" is 4, but ppd rotates whole heads of 8/],
    ['a count of the wrong type', [{ key: 'llama.block_count', type: 'string', value: '2' }], /"llama\.block_count" must be a positive integer, got "2"/],
  ];
  for (const [what, replace, detail] of refusals) {
    test(`refuses ${what} with a ModelError naming the key`, () => {
      const keys = new Set(replace.map((e) => e.key));
      const entries = [...llamaGgufEntries(config, { fileType: 'F32' }).filter((e) => !keys.has(e.key)), ...replace];
      const path = join(root, `${count++}-bad.gguf`);
      writeGguf(path, entries, []);
      const file = openGguf(path);
      file.close();
      assert.throws(() => llamaConfigFromGguf(file.metadata, { hasOutput: true, names: [] }, path), (err: unknown) => err instanceof ModelError && err.message.startsWith(path) && detail.test(err.message));
    });
  }

  test('refuses a missing key, and rope frequencies that are not one per rotated pair', () => {
    const entries = llamaGgufEntries(config, { fileType: 'F32' }).filter((e) => e.key !== 'llama.block_count');
    const path = join(root, `${count++}-missing.gguf`);
    writeGguf(path, entries, []);
    const file = openGguf(path);
    file.close();
    assert.throws(() => llamaConfigFromGguf(file.metadata, { hasOutput: true, names: [] }, path), /"llama\.block_count" is missing/);
    const complete = openGguf(roundTrip(config).file.path);
    complete.close();
    assert.throws(() => llamaConfigFromGguf(complete.metadata, { hasOutput: true, names: ['rope_freqs.weight'], ropeFreqs: [1, 2] }, path), /tensor "rope_freqs\.weight" must hold 4 positive factors/);
  });
});

describe('tiny models exported to GGUF and opened again', () => {
  for (const [what, dirOf] of [['untied', () => hfDir], ['tied', () => tiedDir]] as const) {
    test(`f32 (${what}): same config, hash, end ids and tensors; q/k rows permuted on disk`, () => {
      const gguf = exportGguf(dirOf(), 'F32');
      open(dirOf(), (hf) =>
        open(gguf, (g) => {
          assert.equal(g.dir, gguf);
          assert.deepEqual(g.config, hf.config);
          assert.equal(configHash(g.config), configHash(hf.config));
          assert.deepEqual(g.eosTokenIds, hf.eosTokenIds);
          assert.ok(g.tokenizerJson && !g.tokenizerFile);
          assert.deepEqual(new Set(g.tensors.list().map((t) => t.name)), new Set(hf.tensors.list().map((t) => t.name)));
          for (const { name, shape } of hf.tensors.list()) {
            assert.deepEqual(g.tensors.list().find((t) => t.name === name)!.shape, shape);
            assert.deepEqual(g.tensors.readF32(name), hf.tensors.readF32(name), name);
          }
          // On disk, GGUF row ggufRowOfHfRow[r] of attn_q holds HF row r.
          const file = openGguf(gguf);
          const stored = file.tensor('blk.1.attn_q.weight')!;
          const onDisk = dequantize('F32', file.readBytes(stored), stored.elements);
          file.close();
          const hfQ = hf.tensors.readF32('model.layers.1.self_attn.q_proj.weight');
          const cols = hf.config.hiddenSize;
          const order = ggufRowOfHfRow(hf.config.numHeads * hf.config.headDim, hf.config.numHeads);
          order.forEach((g, r) => assert.deepEqual(onDisk.subarray(g * cols, (g + 1) * cols), hfQ.subarray(r * cols, (r + 1) * cols)));
          assert.notDeepEqual(onDisk, hfQ);
        }),
      );
    });
  }

  test('the tokenizer is padded to the embedding rows with [PAD] tokens, as llama.cpp needs', () => {
    const gguf = exportGguf(tiedDir, 'F32');
    const file = openGguf(gguf);
    const [tokens, scores, types] = ['tokens', 'scores', 'token_type'].map((k) => file.metadata.get(`tokenizer.ggml.${k}`) as unknown[]);
    file.close();
    assert.deepEqual([tokens.length, scores.length, types.length], [288, 288, 288]);
    assert.deepEqual([tokens[287], scores[287], types[287]], ['[PAD287]', -1000, 5]);
  });

  test('q8_0: matrices Q8_0, norms F32; readBlockQuantized is readF32, unpermuted the same way', () => {
    const gguf = exportGguf(hfDir, 'Q8_0');
    open(hfDir, (hf) =>
      open(gguf, (g) => {
        const types = new Map(g.tensors.list().map((t) => [t.name, t.dtype]));
        for (const [name, dtype] of types) assert.equal(dtype, name.endsWith('norm.weight') ? 'F32' : 'Q8_0', name);
        assert.equal(g.tensors.readBlockQuantized!('model.norm.weight'), undefined);
        for (const name of ['model.layers.0.self_attn.q_proj.weight', 'model.layers.1.self_attn.k_proj.weight', 'model.layers.0.mlp.down_proj.weight']) {
          const f32 = g.tensors.readF32(name);
          const bq = g.tensors.readBlockQuantized!(name)!;
          const fromBlocks = Float32Array.from(bq.data, (q, i) => bq.scales[Math.floor(i / 32)] * (q - 128));
          assert.deepEqual(fromBlocks, f32, name);
          const original = hf.tensors.readF32(name);
          const step = Math.max(...original.map(Math.abs)) / 127;
          assert.ok(maxAbsDiff(f32, original) <= step, `${name}: within one quantisation step of the original`);
        }
      }),
    );
  });

  test('q4_0: matrices Q4_0 except the logits matrix (Q8_0); a tied model keeps token_embd at Q8_0', () => {
    for (const [dir, logits] of [[hfDir, 'lm_head.weight'], [tiedDir, 'model.embed_tokens.weight']]) {
      const gguf = exportGguf(dir, 'Q4_0');
      open(gguf, (g) => {
        for (const { name, dtype } of g.tensors.list()) {
          assert.equal(dtype, name.endsWith('norm.weight') ? 'F32' : name === logits ? 'Q8_0' : 'Q4_0', name);
        }
        assert.equal(g.tensors.readBlockQuantized!('model.layers.0.mlp.up_proj.weight')!.bits, 4);
      });
    }
  });

  test('rows that are not whole blocks fall back to F16', () => {
    const small = hfModel({ ...SHAPE, hidden_size: 16, intermediate_size: 24 }, 5);
    const out = join(root, 'small.gguf');
    const summary = open(small, (m) => writeLlamaGguf(m, out, 'Q8_0'));
    assert.ok(summary.fallbacks.includes('model.layers.0.self_attn.q_proj.weight'));
    assert.equal(summary.types.Q8_0, undefined);
    open(out, (g) => assert.equal(g.tensors.list().find((t) => t.name === 'lm_head.weight')!.dtype, 'F16'));
  });

  test('GGUF back to a Hugging Face folder gives the original tensors, config and tokenizer', () => {
    const gguf = exportGguf(tiedDir, 'F32');
    const back = join(root, 'back');
    open(gguf, (g) => writeHfModel(g, back, 'F32'));
    open(tiedDir, (hf) =>
      open(back, (b) => {
        assert.deepEqual(b.config, hf.config);
        assert.ok(b.tokenizerFile && b.chatTemplate === hf.chatTemplate);
        for (const { name } of hf.tensors.list()) assert.deepEqual(b.tensors.readF32(name), hf.tensors.readF32(name), name);
      }),
    );
  });
});

describe('GGUF models through loadModel', () => {
  const ids = [1, 72, 101, 108, 108, 111, 33];
  async function logits(path: string): Promise<{ logits: Float32Array; encoded: number[] }> {
    const loaded = await loadModel(path, { cacheDir: false, needsTokenizer: true });
    const { model } = loaded;
    const out = await model.forward({ embeds: model.embed(ids), positions: ids.map((_, i) => i), mask: causalMask(ids.length, 0), cache: newCache(model) });
    await model.release();
    return { logits: out.logits, encoded: loaded.tokenizer!.encode('Hello, GGUF!') };
  }

  test('f32 gives the same logits as the original, f16 and q8_0 close ones, and the same tokenizer', async () => {
    const original = await logits(hfDir);
    const scale = Math.max(...original.logits.map(Math.abs));
    const f32 = await logits(exportGguf(hfDir, 'F32'));
    assert.deepEqual(f32.logits, original.logits);
    assert.deepEqual(f32.encoded, original.encoded);
    for (const [type, tolerance] of [['F16', 0.002], ['Q8_0', 0.03]] as const) {
      const { logits: got } = await logits(exportGguf(hfDir, type));
      const diff = maxAbsDiff(got, original.logits);
      assert.ok(diff > 0 && diff <= tolerance * scale, `${type}: max diff ${diff} vs logit scale ${scale}`);
    }
  });

  test('a model without a tokenizer: ids from the config, and commands that need one refuse it', async () => {
    const bare = join(root, 'bare');
    writeRandomModel(bare, SHAPE, { seed: 8 });
    const gguf = exportGguf(bare, 'F32');
    open(gguf, (g) => {
      assert.equal(g.tokenizerJson, undefined);
      assert.deepEqual(g.eosTokenIds, [2]);
      assert.equal(g.config.bosTokenId, 1);
    });
    await assert.rejects(loadModel(gguf, { cacheDir: false, needsTokenizer: true }), (err: unknown) =>
      err instanceof ModelError && err.message === `${gguf}: no tokenizer in its metadata (tokenizer.ggml.*), which this command needs`,
    );
  });

  test('the compile cache notices a rewritten .gguf file', () => {
    const cacheDir = join(root, 'cache');
    const gguf = join(root, 'cached.gguf');
    const compile = () => open(gguf, (m) => compileGraph(inferenceGraph(m.config, m.tensors), { cacheDir }).path);
    exportGguf(hfDir, 'F32', gguf);
    const first = compile();
    assert.equal(compile(), first);
    exportGguf(hfModel(SHAPE, 99), 'F32', gguf);
    assert.notEqual(compile(), first);
  });
});
