/**
 * Parity with llama.cpp (node-llama-cpp 3.21.1, a dev dependency): a model exported by ppd's GGUF
 * writer loads in llama.cpp, and both engines give the same next-token distributions for the same
 * ids, and the same greedy continuation on the bundled model. This is the check that the export
 * (names, Q/K permutation, metadata, tokens, and the quantized blocks ppd writes and reads) means
 * to llama.cpp what it means to ppd.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { LlamaCppPeer } from '../bench/peers/llamacpp.ts';
import { writeLlamaGguf, type GgufOutputType } from '../src/checkpoint/gguf-export.ts';
import { openModelDir } from '../src/checkpoint/model-dir.ts';
import { newCache } from '../src/decode/autoregressive.ts';
import { promptIds, startGeneration } from '../src/generate/request.ts';
import { loadModel } from '../src/checkpoint/load.ts';
import type { QuantizedMatmul } from '../src/model/llama-graph.ts';
import { causalMask } from '../src/model/llama-model.ts';
import { argmax } from '../src/sampling/sampler.ts';
import { writeByteModel } from './helpers/byte-model.ts';

const root = mkdtempSync(join(tmpdir(), 'ppd-llamacpp-'));
const BUNDLED = fileURLToPath(new URL('../models/ppd-base', import.meta.url));

function exportGguf(dir: string, type: GgufOutputType): string {
  const out = join(root, `${type}.gguf`);
  const model = openModelDir(dir);
  try {
    writeLlamaGguf(model, out, type);
  } finally {
    model.tensors.close();
  }
  return out;
}

/** ppd's next-token distributions after each prefix of `ids`, [T][V]. */
async function ppdProbabilities(file: string, ids: number[], matmul?: QuantizedMatmul): Promise<Float32Array[]> {
  const loaded = await loadModel(file, { threads: 1, cacheDir: false, ...(matmul ? { matmul } : {}) });
  try {
    const V = loaded.config.vocabSize;
    const out = await loaded.model.forward({ embeds: loaded.model.embed(ids), positions: ids.map((_, i) => i), mask: causalMask(ids.length, 0), cache: newCache(loaded.model) });
    return ids.map((_, t) => {
      const row = out.logits.subarray(t * V, (t + 1) * V);
      const max = Math.max(...row);
      const exp = row.map((x) => Math.exp(x - max));
      const total = exp.reduce((a, b) => a + b, 0);
      return exp.map((x) => x / total);
    });
  } finally {
    await loaded.model.release();
  }
}

/**
 * Largest difference of log-probabilities: a random tiny model's distributions are near uniform,
 * so probabilities of unrelated models differ by only ~3e-3, their logs by ~0.5.
 */
const maxLogDiff = (a: Float32Array[], b: Float32Array[]) => Math.max(...a.map((row, t) => Math.max(...row.map((x, v) => Math.abs(Math.log(x) - Math.log(b[t]![v]!))))));

describe('llama.cpp parity', () => {
  let modelDir: string;
  // Byte ids of a sentence after BOS: any ids work, text ones keep the check readable.
  const ids = [1, ...Array.from(Buffer.from('The quick brown fox jumps over the lazy dog.'), (b) => b + 4)];

  before(() => {
    modelDir = writeByteModel(join(root, 'byte-model'), { model_type: 'llama', vocab_size: 260, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 256, rms_norm_eps: 1e-5, bos_token_id: 1, eos_token_id: 2 }, 11);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  for (const type of ['F32', 'F16'] as const) {
    test(`${type} export: llama.cpp's next-token distributions equal ppd's at every position`, async () => {
      const file = exportGguf(modelDir, type);
      const peer = await LlamaCppPeer.open(file, { threads: 1, contextSize: 128 });
      try {
        const theirs = await peer.nextTokenProbabilities(ids, 260);
        const ours = await ppdProbabilities(file, ids);
        // Measured 3e-4 (llama.cpp keeps its KV cache in f16); another model of this shape gives ~0.5.
        const diff = maxLogDiff(ours, theirs);
        assert.ok(diff < 2e-3, `max |log p_ppd - log p_llama.cpp| = ${diff}`);
      } finally {
        await peer.close();
      }
    });
  }

  test('Q8_0 export: llama.cpp and ppd (weights kept Q8_0 in MatMulNBits) agree to quantisation noise', async () => {
    const file = exportGguf(modelDir, 'Q8_0');
    const peer = await LlamaCppPeer.open(file, { threads: 1, contextSize: 128 });
    try {
      const theirs = await peer.nextTokenProbabilities(ids, 260);
      const ours = await ppdProbabilities(file, ids);
      const diff = maxLogDiff(ours, theirs);
      // Both quantise activations to int8 their own way; a layout error gives an unrelated model.
      assert.ok(diff < 0.05, `max |log p_ppd - log p_llama.cpp| = ${diff}`);
    } finally {
      await peer.close();
    }
  });

  test('Q4_K_M and Q3_K_M exports (every K type, Q5_0/Q5_1/Q8_0 fallbacks aside): llama.cpp and ppd agree to quantisation noise', async () => {
    // Rows of 256: whole K super-blocks. Q4_K_M holds Q4_K and Q6_K; Q3_K_M Q3_K, Q4_K, Q5_K, Q6_K.
    const kModel = writeByteModel(join(root, 'k-model'), { model_type: 'llama', vocab_size: 260, hidden_size: 256, intermediate_size: 512, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 256, rms_norm_eps: 1e-5, bos_token_id: 1, eos_token_id: 2 }, 12);
    for (const type of ['Q4_K_M', 'Q3_K_M'] as const) {
      const file = exportGguf(kModel, type);
      const peer = await LlamaCppPeer.open(file, { threads: 1, contextSize: 128 });
      try {
        const theirs = await peer.nextTokenProbabilities(ids, 260);
        // ppd's products in f32 over the stored weights: what is left is llama.cpp's rounding of
        // the activations to 8 bits (its Q8_K rows); a block read wrong gives an unrelated model.
        const diff = maxLogDiff(await ppdProbabilities(file, ids, 'f32'), theirs);
        assert.ok(diff < 0.05, `${type}: max |log p_ppd - log p_llama.cpp| = ${diff}`);
      } finally {
        await peer.close();
      }
    }
  });

  // F32: the same weights and the same arithmetic up to summation order, so the same greedy ids.
  // Q4_K_M: ppd multiplies in f32 (the stored weights exactly) where llama.cpp rounds activations
  // to 8 bits, so a step where the model's top two logits nearly tie may go either way (the
  // bundled model repeats itself and has such steps). The invariant there: along llama.cpp's
  // continuation, every token it picks is ppd's argmax or within NEAR_TIE of ppd's best logit.
  // 8-bit activations cost ~0.4 % per product (test/kquant-model.test.ts), ~0.06 on the 20.5M-token
  // bundled model's logits (up to 16 on these prompts); a near-tie of 0.052 was measured on it
  // (0.05 held on the shorter-trained models). A wrong layout or rounding rule misses by whole units.
  const NEAR_TIE = 0.08;
  const PROMPTS = ["const fs = require('fs')", 'export function parse(text: string) {', '// lib/index.js', 'import { describe, it } from'];
  for (const [type, matmul] of [['F32', undefined], ['Q4_K_M', 'f32']] as const) {
    const exact = type === 'F32';
    const claim = exact ? "with exactly ppd's ids" : "with ppd's argmax at every step, ties within quantisation noise aside";
    test(`the bundled model exported ${type}: llama.cpp continues 4 prompts greedily ${claim}`, { skip: !existsSync(join(BUNDLED, 'model.safetensors')) && 'no bundled model' }, async () => {
      const file = exportGguf(BUNDLED, type);
      const loaded = await loadModel(file, { threads: 1, needsTokenizer: true, cacheDir: false, ...(matmul ? { matmul } : {}) });
      const peer = await LlamaCppPeer.open(file, { threads: 1, contextSize: 256 });
      try {
        for (const prompt of PROMPTS) {
          const prompted = promptIds(loaded, prompt);
          const theirs = await peer.generate(prompted, 32, []);
          if (exact) {
            const ours = await startGeneration({ ...loaded, eosIds: [] }, { prompt, maxTokens: 32, sampling: { temperature: 0 } }).complete();
            assert.deepEqual(theirs.ids, ours.ids, `prompt ${JSON.stringify(prompt)}`);
            continue;
          }
          // One uncached forward over the prompt and llama.cpp's continuation: row t scores token t + 1.
          const all = [...prompted, ...theirs.ids];
          const out = await loaded.model.forward({ embeds: loaded.model.embed(all), positions: all.map((_, i) => i), mask: causalMask(all.length, 0), cache: newCache(loaded.model) });
          const V = loaded.config.vocabSize;
          theirs.ids.forEach((id, i) => {
            const row = out.logits.subarray((prompted.length - 1 + i) * V, (prompted.length + i) * V);
            const best = row[argmax(row)]!;
            assert.ok(best - row[id]! <= NEAR_TIE, `prompt ${JSON.stringify(prompt)}, token ${i}: llama.cpp picked ${id}, ${(best - row[id]!).toFixed(4)} below ppd's best logit`);
          });
        }
      } finally {
        await peer.close();
        await loaded.model.release();
      }
    });
  }
});
