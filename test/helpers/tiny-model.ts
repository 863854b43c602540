/**
 * Tiny random LLaMA models made inside tests: a config, seeded weights with Hugging Face names,
 * an in-memory TensorSource over them, and closeness assertions. Shared by the reference
 * self-checks and the engine's parity tests.
 */
import assert from 'node:assert/strict';
import type { TensorSource } from '../../src/format/tensor-source.ts';
import type { LlamaConfig } from '../../src/model/config.ts';
import { expectedTensors } from '../../src/model/weights.ts';
import { Rng } from '../../src/sampling/rng.ts';

export function tinyConfig(overrides: Partial<LlamaConfig> = {}): LlamaConfig {
  return {
    modelType: 'llama',
    vocabSize: 40,
    hiddenSize: 16,
    intermediateSize: 24,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 6,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    ropeScaling: { type: 'none' },
    bias: { qkv: false, output: false, mlp: false },
    qkNorm: false,
    tieWordEmbeddings: false,
    maxPositionEmbeddings: 256,
    eosTokenIds: [],
    ...overrides,
  };
}

/** Random weights: norms near 1, matrices uniform with scale 1/sqrt(fan-in) (times 2 for spread). */
export function randomWeights(c: LlamaConfig, seed: number): Map<string, Float32Array> {
  const rng = new Rng(seed);
  const rand = () => rng.next();
  const weights = new Map<string, Float32Array>();
  for (const [name, shape] of expectedTensors(c)) {
    const size = shape.reduce((a, b) => a * b, 1);
    const w = new Float32Array(size);
    if (shape.length === 1) for (let i = 0; i < size; i++) w[i] = 1 + 0.2 * (rand() - 0.5);
    else for (let i = 0; i < size; i++) w[i] = (4 * (rand() - 0.5)) / Math.sqrt(shape[1]!);
    weights.set(name, w);
  }
  return weights;
}

/** A TensorSource over weights held in memory (F32). */
export function memorySource(c: LlamaConfig, weights: Map<string, Float32Array>, origin = 'memory'): TensorSource {
  const shapes = expectedTensors(c);
  return {
    origin,
    list: () => [...weights.keys()].map((name) => ({ name, dtype: 'F32' as const, shape: shapes.get(name)! })),
    readF32: (name) => {
      const w = weights.get(name);
      if (!w) throw new Error(`no tensor ${name}`);
      return w.slice();
    },
    close: () => {},
  };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const diff = Math.abs(actual[i]! - expected[i]!);
    assert.ok(diff <= tol, `${what}[${i}]: ${actual[i]} vs ${expected[i]} (diff ${diff})`);
  }
}

export const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
