/**
 * Turns a checkpoint into an ONNX model file (graph + external weight data) on disk, reusing an
 * earlier compilation of the same weights when one is cached.
 *
 * The cache key covers the graph builder's version, the config, the tensor list and the size and
 * modification time of the checkpoint files, so an edited checkpoint is recompiled. Compilation
 * writes into a temporary folder and renames it into place, so a crash never leaves a half
 * written model that a later run would trust. Not cached (cacheDir false): the files live in a
 * temporary folder that `dispose` removes once ONNX Runtime has read them.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { TensorSource } from '../format/tensor-source.ts';
import type { LlamaConfig } from '../model/config.ts';
import { buildLlamaGraph, type QuantizeOptions } from '../model/llama-graph.ts';

/** Bump when the graph changes, so cached models built by older code are not reused. */
const GRAPH_VERSION = 'llama-graph-2'; // 2: block-quantized linear weights (MatMulNBits)
const MODEL_FILE = 'model.onnx';
const DATA_FILE = 'model.onnx.data';

/**
 * `quantize`: the inference graph's linear weights in 8- or 4-bit blocks (model/quantize.ts);
 * weights the source already stores block-quantized are used as stored either way. `matmul`:
 * how those are multiplied (llama-graph.ts, QuantizedMatmul). Both are part of the cache key.
 */
export interface CompileOptions extends QuantizeOptions {
  /** Where compiled models are kept; false = compile into a temporary folder, removed after load. */
  cacheDir?: string | false;
}

export interface CompiledModel {
  path: string;
  /** Removes the files when they were not cached. */
  dispose(): void;
}

export function defaultCacheDir(): string {
  return process.env.PPD_CACHE_DIR ?? join(homedir(), '.cache', 'ppd', 'graphs');
}

/**
 * Size and mtime of the checkpoint's files: the origin itself and, as a sharded checkpoint's
 * origin is its index file, every safetensors file beside it.
 */
function fingerprint(origin: string): string {
  if (!existsSync(origin)) return origin;
  const folder = statSync(origin).isDirectory() ? origin : dirname(origin);
  const shards = readdirSync(folder).filter((f) => f.endsWith('.safetensors')).map((f) => join(folder, f));
  const files = [...new Set([origin, ...shards])].sort();
  return files
    .map((f) => {
      const s = statSync(f);
      return `${f}:${s.size}:${s.mtimeMs}`;
    })
    .join('|');
}

/**
 * Which graph to build from the checkpoint: the inference forward unless told otherwise (prompt
 * training bakes the same weights into another graph). `name` must change whenever `build` would
 * produce a different graph for the same weights.
 */
export interface GraphVariant {
  name: string;
  build: (externalDataPath: string) => Uint8Array;
}

const inferenceGraph = (config: LlamaConfig, tensors: TensorSource, { quantize, matmul }: QuantizeOptions): GraphVariant => ({
  name: ['inference', ...(quantize ? [quantize] : []), ...(matmul && matmul !== 'int8' ? [`${matmul} matmul`] : [])].join(' '),
  build: (dataPath) => buildLlamaGraph(config, tensors, dataPath, { quantize, matmul }),
});

function cacheKey(config: LlamaConfig, tensors: TensorSource, variant: string): string {
  const hash = createHash('sha256');
  hash.update(GRAPH_VERSION);
  hash.update(variant);
  hash.update(JSON.stringify(config));
  hash.update(JSON.stringify(tensors.list()));
  hash.update(fingerprint(tensors.origin));
  return hash.digest('hex').slice(0, 32);
}

function compileInto(dir: string, variant: GraphVariant): void {
  writeFileSync(join(dir, MODEL_FILE), variant.build(join(dir, DATA_FILE)));
}

export function compileGraph(
  config: LlamaConfig,
  tensors: TensorSource,
  options: CompileOptions = {},
  variant: GraphVariant = inferenceGraph(config, tensors, options),
): CompiledModel {
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  if (cacheDir === false) {
    const dir = mkdtempSync(join(tmpdir(), 'ppd-graph-'));
    compileInto(dir, variant);
    return { path: join(dir, MODEL_FILE), dispose: () => rmSync(dir, { recursive: true, force: true }) };
  }
  const finalDir = join(cacheDir, cacheKey(config, tensors, variant.name));
  const path = join(finalDir, MODEL_FILE);
  if (!existsSync(path)) {
    mkdirSync(cacheDir, { recursive: true });
    const staging = mkdtempSync(join(cacheDir, '.staging-'));
    try {
      compileInto(staging, variant);
      rmSync(finalDir, { recursive: true, force: true });
      renameSync(staging, finalDir);
    } catch (error) {
      rmSync(staging, { recursive: true, force: true });
      throw error;
    }
  }
  return { path, dispose: () => {} };
}
