/**
 * The model families end to end, on tiny random checkpoints written in each family's Hugging Face
 * layout (weights named and shaped as the independent reference, reference/hf-causal-lm.ts, says
 * transformers builds them, the tokenizer in the family's format):
 * - logits from the Hugging Face folder equal the reference within the 2e-3 target;
 * - exported to GGUF (F32, llama.cpp's architecture names), the same logits, the same config and
 *   adapter hash, and back to a Hugging Face folder unchanged;
 * - llama.cpp (node-llama-cpp) loads ppd's GGUF: the same greedy ids and next-token
 *   log-probabilities within the parity test's tolerance;
 * - greedy PPD equals greedy plain decoding;
 * - prompt-token training lowers the training loss.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LlamaCppPeer } from '../bench/peers/llamacpp.ts';
import { ModelError } from '../src/errors.ts';
import { writeLlamaGguf } from '../src/checkpoint/gguf-export.ts';
import { openGguf } from '../src/format/gguf/open.ts';
import { writeHfModel } from '../src/checkpoint/hf-export.ts';
import { openModelDir } from '../src/checkpoint/model-dir.ts';
import { writeSafetensors } from '../src/format/safetensors-write.ts';
import { autoregressive, newCache } from '../src/decode/autoregressive.ts';
import { loadModel, type LoadedModel } from '../src/checkpoint/load.ts';
import { causalMask } from '../src/model/llama-model.ts';
import { parseLlamaConfig } from '../src/model/config.ts';
import { configHash, PromptAdapter } from '../src/ppd/adapter.ts';
import { buildTeacherSequences } from '../src/train/distill.ts';
import { ppdDecode } from '../src/ppd/decode.ts';
import { heldOutKl, promptGraphShape, PromptSession, trainPrompts } from '../src/train/train-prompts.ts';
import { buildTreeSet } from '../src/ppd/tree-builder.ts';
import { Rng } from '../src/sampling/rng.ts';
import { Sampler } from '../src/sampling/sampler.ts';
import { take } from './helpers/decoding.ts';
import { familyTokenizer, type TokenizerFamily } from './helpers/family-tokenizers.ts';
import { hfForward, hfTensorShapes } from './reference/hf-causal-lm.ts';

type Json = Record<string, unknown>;

const TARGET = 2e-3; // the parity target for logits
/** Rows of 32: whole Q8_0 blocks. */
const SHAPE = { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, max_position_embeddings: 256 };

interface Family {
  name: string;
  tokenizer: TokenizerFamily;
  config: Json;
  /** Why llama.cpp is not a peer for this one, if it is not. */
  noLlamaCpp?: string;
  /** Why it has no GGUF form, if it has none. */
  noGguf?: RegExp;
}

const FAMILIES: Family[] = [
  {
    name: 'Llama 3.2 (llama3 RoPE, head_dim, tied, eos list)',
    tokenizer: 'llama3',
    // D = 16, theta 1e4, original context 64: two of the 8 frequencies fall in llama3's interpolated band.
    config: { model_type: 'llama', ...SHAPE, head_dim: 16, rope_theta: 10000, tie_word_embeddings: true, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } },
  },
  {
    name: 'Llama with attention and MLP biases, written by transformers 5 (rope_parameters)',
    tokenizer: 'llama3',
    config: { model_type: 'llama', ...SHAPE, attention_bias: true, mlp_bias: true, rope_parameters: { rope_type: 'linear', factor: 2, rope_theta: 500 } },
  },
  { name: 'SmolLM2', tokenizer: 'smollm2', config: { model_type: 'llama', ...SHAPE, rope_theta: 100000, tie_word_embeddings: true } },
  {
    name: 'Mistral (sliding window 5)',
    tokenizer: 'llama3',
    config: { model_type: 'mistral', ...SHAPE, sliding_window: 5, rope_theta: 1000000 },
    noLlamaCpp: "llama.cpp's llama architecture has no sliding window",
  },
  { name: 'Qwen2.5 (q/k/v biases, tied)', tokenizer: 'qwen2', config: { model_type: 'qwen2', ...SHAPE, rope_theta: 1000000, tie_word_embeddings: true, use_sliding_window: false, sliding_window: 32 } },
  { name: 'Qwen3 (q/k norms, head_dim 16 != 32/4)', tokenizer: 'qwen3', config: { model_type: 'qwen3', ...SHAPE, head_dim: 16, rope_theta: 1000000, attention_bias: false } },
  {
    name: 'Qwen3 with attention_bias',
    tokenizer: 'qwen3',
    config: { model_type: 'qwen3', ...SHAPE, head_dim: 16, attention_bias: true },
    noGguf: /o_proj bias, which llama\.cpp's qwen3 architecture does not load/,
  },
];

const root = mkdtempSync(join(tmpdir(), 'ppd-families-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** Reference-named random weights: matrices uniform ±2/√fan-in, biases ±0.5, norms 1 ± 0.1. */
function referenceWeights(config: Json, seed: number): Map<string, Float32Array> {
  const rng = new Rng(seed);
  const weights = new Map<string, Float32Array>();
  for (const [name, shape] of hfTensorShapes(config)) {
    const size = shape.reduce((a, b) => a * b, 1);
    const [mean, spread] = name.endsWith('norm.weight') ? [1, 0.2] : name.endsWith('.bias') ? [0, 1] : [0, 4 / Math.sqrt(shape[1]!)];
    weights.set(name, Float32Array.from({ length: size }, () => mean + spread * (rng.next() - 0.5)));
  }
  return weights;
}

/** A Hugging Face folder: config.json, model.safetensors, the family's tokenizer files and generation_config.json. */
function writeFolder(dir: string, family: Family, weights: Map<string, Float32Array>, config: Json): void {
  mkdirSync(dir, { recursive: true });
  const t = familyTokenizer(family.tokenizer);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  const shapes = hfTensorShapes(config);
  writeSafetensors(join(dir, 'model.safetensors'), [...weights].map(([name, data]) => ({ name, dtype: 'F32', shape: shapes.get(name)!, data: () => data })), { metadata: { format: 'pt' } });
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(t.tokenizerJson));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(t.tokenizerConfig));
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify(t.generationConfig));
}

async function logitsOf(loaded: LoadedModel, ids: number[]): Promise<Float32Array> {
  const out = await loaded.model.forward({ embeds: loaded.model.embed(ids), positions: ids.map((_, i) => i), mask: causalMask(ids.length, 0), cache: newCache(loaded.model) });
  return out.logits;
}

function maxDiff(ours: Float32Array, reference: Float64Array[]): number {
  const V = reference[0]!.length;
  let max = 0;
  reference.forEach((row, t) => row.forEach((x, v) => (max = Math.max(max, Math.abs(ours[t * V + v]! - x)))));
  return max;
}

const softmax = (row: ArrayLike<number>) => {
  const max = Math.max(...Array.from(row));
  const exp = Array.from(row, (x) => Math.exp(x - max));
  const total = exp.reduce((a, b) => a + b, 0);
  return exp.map((x) => x / total);
};

FAMILIES.forEach((family, f) => {
  describe(family.name, () => {
    const dir = join(root, `family-${f}`);
    const t = familyTokenizer(family.tokenizer);
    // A model vocabulary padded past the tokenizer's, as Qwen2.5's 151936 rows for 151665 tokens.
    const config: Json = { ...family.config, vocab_size: t.size + 6, bos_token_id: t.generationConfig.bos_token_id, eos_token_id: t.generationConfig.eos_token_id };
    const weights = referenceWeights(config, 100 + f);
    const ids = [t.ids['<|begin_of_text|>'] ?? t.ids['<|im_start|>']!, 40, 72, 101, 300, 260, 7, 88, 150, 33, 64, 201];
    const reference = hfForward(config, weights, ids);
    let gguf: string;
    before(() => writeFolder(dir, family, weights, config));

    test('logits from the Hugging Face folder equal the reference, all at once and token by token with the cache', async () => {
      const loaded = await loadModel(dir, { threads: 1, cacheDir: false });
      try {
        const diff = maxDiff(await logitsOf(loaded, ids), reference);
        assert.ok(diff < TARGET, `max |ppd - reference| = ${diff}`);
        const cache = newCache(loaded.model);
        const V = config.vocab_size as number;
        const stepwise = new Float32Array(ids.length * V);
        for (let i = 0; i < ids.length; i++) {
          const out = await loaded.model.forward({ embeds: loaded.model.embed([ids[i]!]), positions: [i], mask: causalMask(1, i), cache });
          cache.append(out.keys, out.values);
          stepwise.set(out.logits, i * V);
        }
        const cachedDiff = maxDiff(stepwise, reference);
        assert.ok(cachedDiff < TARGET, `max |ppd cached - reference| = ${cachedDiff}`);
        // generation_config.json's stop ids are the model's end-of-generation ids.
        for (const id of [t.generationConfig.eos_token_id].flat() as number[]) assert.ok(loaded.eosIds.includes(id), `eos ${id}`);
      } finally {
        await loaded.model.release();
      }
    });

    if (family.noGguf) {
      test('GGUF export is refused with the reason', () => {
        const model = openModelDir(dir);
        try {
          assert.throws(() => writeLlamaGguf(model, join(root, `family-${f}.gguf`), 'F32'), (e: Error) => e instanceof ModelError && family.noGguf!.test(e.message));
        } finally {
          model.tensors.close();
        }
      });
      return;
    }

    test('GGUF (F32): the same logits, config and adapter hash; back to a Hugging Face folder unchanged', async () => {
      gguf = join(root, `family-${f}.gguf`);
      const hf = openModelDir(dir);
      try {
        writeLlamaGguf(hf, gguf, 'F32');
      } finally {
        hf.tensors.close();
      }
      const file = openGguf(gguf);
      const arch = file.metadata.get('general.architecture');
      file.close();
      assert.equal(arch, { llama: 'llama', mistral: 'llama', qwen2: 'qwen2', qwen3: 'qwen3' }[config.model_type as string]);
      const fromGguf = openModelDir(gguf);
      const fromHf = openModelDir(dir);
      try {
        // GGUF holds one eos id (the tokenizer's); the rest is the same, and the adapter hash (no token ids) too.
        assert.deepEqual({ ...fromGguf.config, eosTokenIds: [] }, { ...fromHf.config, eosTokenIds: [] });
        assert.equal(configHash(fromGguf.config), configHash(fromHf.config));
        const back = join(root, `family-${f}-back`);
        writeHfModel(fromGguf, back, 'F32');
        const again = openModelDir(back);
        again.tensors.close();
        assert.deepEqual(again.config, fromGguf.config);
      } finally {
        fromGguf.tensors.close();
        fromHf.tensors.close();
      }
      const loaded = await loadModel(gguf, { threads: 1, cacheDir: false });
      try {
        const diff = maxDiff(await logitsOf(loaded, ids), reference);
        assert.ok(diff < TARGET, `max |ppd from GGUF - reference| = ${diff}`);
      } finally {
        await loaded.model.release();
      }
    });

    test('llama.cpp loads ppd\'s GGUF: the same greedy ids and next-token log-probabilities', { skip: family.noLlamaCpp }, async () => {
      const loaded = await loadModel(gguf, { threads: 1, cacheDir: false });
      const peer = await LlamaCppPeer.open(gguf, { threads: 1, contextSize: 64, kvCacheType: 'F32' });
      try {
        const V = config.vocab_size as number;
        const theirs = await peer.nextTokenProbabilities(ids, V);
        const ours = await logitsOf(loaded, ids);
        let diff = 0;
        theirs.forEach((row, r) => {
          const p = softmax(ours.subarray(r * V, (r + 1) * V));
          row.forEach((q, v) => (diff = Math.max(diff, Math.abs(Math.log(p[v]!) - Math.log(q)))));
        });
        assert.ok(diff < 2e-3, `max |log p_ppd - log p_llama.cpp| = ${diff}`);
        const plain = await take(autoregressive(loaded.model, ids.slice(0, 4), new Sampler({ temperature: 0 })), 16);
        const run = await peer.generate(ids.slice(0, 4), 16, []);
        assert.deepEqual(run.ids, plain);
      } finally {
        await peer.close();
        await loaded.model.release();
      }
    });

    test('greedy PPD equals greedy plain decoding', async () => {
      const loaded = await loadModel(dir, { threads: 1, cacheDir: false });
      try {
        const c = loaded.config;
        const adapter = PromptAdapter.initialise(c, weights.get('model.embed_tokens.weight')!, [40, 72, 101], { promptTokens: 3, virtualTokens: 1, attention: 'ensemble', initText: 't' });
        const acc = [0, 1, 2].map((i) => Array.from({ length: 4 }, (_, k) => 0.4 * 0.5 ** k * 0.8 ** i));
        const trees = buildTreeSet(acc, { budget: 12, promptTokens: 3 });
        for (const prompt of [ids.slice(0, 3), ids.slice(2, 9)]) {
          const plain = await take(autoregressive(loaded.model, prompt, new Sampler({ temperature: 0 })), 20);
          const ppd = await take(ppdDecode(loaded.model, prompt, { adapter, trees, lookup: 4, sampler: new Sampler({ temperature: 0 }) }), 20);
          assert.deepEqual(ppd, plain, `prompt ${prompt.join(',')}`);
        }
      } finally {
        await loaded.model.release();
      }
    });

    test('prompt-token training lowers the loss', async () => {
      const loaded = await loadModel(dir, { threads: 1, cacheDir: false });
      const files = openModelDir(dir);
      try {
        const rng = new Rng(f);
        const stream = Array.from({ length: 120 }, (_, i) => (rng.next() < 0.2 ? Math.floor(rng.next() * t.size) : 40 + ((i * 7) % 50)));
        const set = await buildTeacherSequences(loaded.model, stream, { count: 6, prefixLength: 5, generated: 6, topK: 8, seed: 1, eosIds: [] });
        const adapter = PromptAdapter.initialise(loaded.config, weights.get('model.embed_tokens.weight')!, [40, 72], { promptTokens: 2, virtualTokens: 1, attention: 'ensemble', initText: 't' });
        const session = await PromptSession.create(loaded.model, files.tensors, set, promptGraphShape(set, { promptTokens: 2, virtualTokens: 1 }), 'ensemble', { cacheDir: false, threads: 1 });
        try {
          const params = adapter.parameters();
          const before = await heldOutKl(session, params, set);
          await trainPrompts(session, params, set, { set, limit: set.count }, { steps: 12, batch: 2, schedule: { peakLr: 5e-2, warmupSteps: 2, minLrRatio: 0.1 }, seed: 2, evalEvery: 12 });
          const after = await heldOutKl(session, params, set);
          assert.ok(after < 0.9 * before, `training KL ${before} -> ${after}`);
        } finally {
          await session.release();
        }
      } finally {
        files.tensors.close();
        await loaded.model.release();
      }
    });
  });
});

test('what a family has and ppd does not run is one ModelError naming the file and field', () => {
  const base = { ...SHAPE, vocab_size: 64 };
  const cases: [Json, RegExp][] = [
    [{ model_type: 'qwen2', use_sliding_window: true }, /field "use_sliding_window" true is not supported \(ppd has no sliding-window attention for Qwen models\)/],
    [{ model_type: 'qwen3', layer_types: ['full_attention', 'sliding_attention'] }, /field "layer_types" with "sliding_attention" layers is not supported/],
    [{ model_type: 'llama', rope_parameters: { full_attention: { rope_type: 'default', rope_theta: 1e4 }, sliding_attention: { rope_type: 'default', rope_theta: 1e4 } } }, /field "rope_parameters" per attention type .* is not supported/],
    [{ model_type: 'llama', rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 1, original_max_position_embeddings: 8192 } }, /field "rope_scaling\.high_freq_factor" \(1\) must be above low_freq_factor \(4\)/],
    [{ model_type: 'llama', rope_scaling: { rope_type: 'llama3', factor: 8 } }, /field "rope_scaling\.low_freq_factor" must be a positive number/],
    [{ model_type: 'qwen3', rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 32768 } }, /field "rope_scaling\.rope_type" "yarn" is not supported \(supported: "default", "linear", "llama3"\)/],
    [{ model_type: 'mistral', attention_bias: true }, /field "attention_bias" true is not supported/],
    [{ model_type: 'qwen2', mlp_bias: true }, /field "mlp_bias" true is not supported/],
    [{ model_type: 'gemma' }, /field "model_type" "gemma" is not supported \(expected "llama", "mistral", "qwen2" or "qwen3"\)/],
  ];
  for (const [fields, message] of cases) {
    assert.throws(() => parseLlamaConfig({ ...base, ...fields }, 'm/config.json'), (e: Error) => e instanceof ModelError && e.message.startsWith('m/config.json: ') && message.test(e.message), JSON.stringify(fields));
  }
  // What each family defaults when config.json is silent (transformers' defaults).
  assert.equal(parseLlamaConfig({ ...base, model_type: 'qwen3' }).headDim, 128);
  assert.equal(parseLlamaConfig({ ...base, model_type: 'mistral' }).slidingWindow, 4096);
  assert.equal(parseLlamaConfig({ ...base, model_type: 'mistral', sliding_window: null }).slidingWindow, undefined);
  assert.deepEqual(parseLlamaConfig({ ...base, model_type: 'qwen2' }).bias, { qkv: true, output: false, mlp: false });
});
