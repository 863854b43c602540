/**
 * Writing a LLaMA model directory with seeded random weights, for tests and benchmarks: the same
 * files a Hugging Face checkpoint has (config.json, generation_config.json, model.safetensors,
 * and tokenizer.json when one is given), so everything downstream loads it like a real model.
 *
 * Linear and embedding weights ~ N(0, 0.02) as in HF's init; norm weights are 1 + N(0, 0.1),
 * not exactly 1, so a test notices a norm that forgets its weight. Each tensor has its own
 * stream seeded from (seed, name): a tensor's values do not depend on the write order or on how
 * many layers come before it. Tensors are generated one at a time, so a multi-gigabyte model
 * never sits in memory whole. Not a training initializer.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { writeSafetensors } from '../format/safetensors-write.ts';
import type { FloatDType, TensorSource } from '../format/tensor-source.ts';
import { Rng } from '../sampling/rng.ts';
import { parseLlamaConfig, type LlamaConfig } from '../model/config.ts';
import { expectedTensors } from '../model/weights.ts';

export interface RandomModelOptions {
  seed: number;
  /** Stored dtype of every tensor; F32 unless given. */
  dtype?: FloatDType;
  /** Written as tokenizer.json when given (building one is the tokenizer's job, not this file's). */
  tokenizerJson?: object;
}

const WEIGHT_STD = 0.02;
const NORM_NOISE_STD = 0.1;

/** FNV-1a hash of a string, to derive one seed per tensor. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** `count` samples of N(mean, std²) by Box-Muller, from a stream seeded by `seed`. */
export function gaussian(count: number, seed: number, mean: number, std: number): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i += 2) {
    const radius = Math.sqrt(-2 * Math.log(1 - rng.next())); // 1 - u lies in (0, 1]: log is finite
    const angle = 2 * Math.PI * rng.next();
    out[i] = mean + std * radius * Math.cos(angle);
    if (i + 1 < count) out[i + 1] = mean + std * radius * Math.sin(angle);
  }
  return out;
}

/** input_layernorm, post_attention_layernorm and the final model.norm. */
function isNorm(name: string): boolean {
  return name.endsWith('norm.weight');
}

/**
 * The random weights of `config` as a TensorSource, generated on each read and never stored:
 * benchmarks at realistic sizes load these without writing gigabytes to disk.
 */
export function randomTensorSource(config: LlamaConfig, seed: number): TensorSource {
  const shapes = expectedTensors(config);
  return {
    origin: `random weights (seed ${seed})`,
    list: () => [...shapes].map(([name, shape]) => ({ name, dtype: 'F32' as const, shape })),
    readF32: (name) => {
      const shape = shapes.get(name);
      if (!shape) throw new InputError(`random model has no tensor "${name}"`);
      const count = shape.reduce((n, d) => n * d, 1);
      const tensorSeed = fnv1a(`${seed}:${name}`);
      return isNorm(name) ? gaussian(count, tensorSeed, 1, NORM_NOISE_STD) : gaussian(count, tensorSeed, 0, WEIGHT_STD);
    },
    close: () => {},
  };
}

/**
 * Writes a random model for `configJson` (a Hugging Face config.json object) into `outDir`,
 * creating it if needed. Returns the parsed config.
 */
export function writeRandomModel(outDir: string, configJson: object, opts: RandomModelOptions): LlamaConfig {
  if (!Number.isInteger(opts.seed)) throw new InputError(`random model seed must be an integer, got ${opts.seed}`);
  const configPath = join(outDir, 'config.json');
  const config = parseLlamaConfig(configJson, configPath);
  mkdirSync(outDir, { recursive: true });
  writeFileSync(configPath, JSON.stringify(configJson, null, 2) + '\n');

  const generation: Record<string, unknown> = {};
  if (config.bosTokenId !== undefined) generation.bos_token_id = config.bosTokenId;
  if (config.eosTokenIds.length > 0) {
    generation.eos_token_id = config.eosTokenIds.length === 1 ? config.eosTokenIds[0] : config.eosTokenIds;
  }
  writeFileSync(join(outDir, 'generation_config.json'), JSON.stringify(generation, null, 2) + '\n');

  const dtype = opts.dtype ?? 'F32';
  const source = randomTensorSource(config, opts.seed);
  const entries = source.list().map((t) => ({ ...t, dtype, data: () => source.readF32(t.name) }));
  writeSafetensors(join(outDir, 'model.safetensors'), entries, { metadata: { format: 'pt' } });

  if (opts.tokenizerJson) writeFileSync(join(outDir, 'tokenizer.json'), JSON.stringify(opts.tokenizerJson));
  return config;
}
