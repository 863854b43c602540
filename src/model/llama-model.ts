/**
 * LlamaModel: a loaded LLaMA forward on ONNX Runtime, plus the token-embedding table.
 *
 * It holds read-only things only (config, the ORT session with the weights, the embedding table
 * [V, C] in TypeScript so callers can mix trained prompt-token rows into a forward's input; a
 * quantized table stays in its file's bytes and only the rows looked up are widened to F32).
 * Mask, positions and cache are arguments of every `forward` call; nothing is left on the model
 * between calls, so one model can serve many generation sessions.
 */
import { InputError } from '../errors.ts';
import type { StoredRows, TensorSource } from '../format/tensor-source.ts';
import type { Feed, ModelSession, Runtime } from '../runtime/session.ts';
import type { LlamaConfig } from './config.ts';
import type { PastRows } from './kv-cache.ts';
import { GRAPH_INPUTS, inferenceGraph, keyName, LOGITS, pastKeyName, pastValueName, valueName, type QuantizeOptions } from './llama-graph.ts';
import { EMBED_TOKENS } from './weights.ts';

export interface ForwardInput {
  /** [T, C] input rows: token embeddings and/or prompt-token embeddings. */
  embeds: Float32Array;
  /** [T] position of each row (any values: tree rows share positions). */
  positions: ArrayLike<number>;
  /** [T, P+T] 1 where row t may attend to context row j (past rows first, then these T rows). */
  mask: Uint8Array;
  /** The past P rows; read, never modified (the caller decides what to append). */
  cache: PastRows;
}

export interface ForwardOutput {
  /** [T, V] */
  logits: Float32Array;
  /** Per layer [T, K, D]: keys (after rotary) and values of the T rows. */
  keys: Float32Array[];
  values: Float32Array[];
}

export class LlamaModel {
  private constructor(
    readonly config: LlamaConfig,
    /** [V, C] token embeddings as stored (F32, or a GGUF file's F16/quantized rows). */
    private readonly table: StoredRows,
    private readonly session: ModelSession,
  ) {}

  /**
   * Opens the inference graph of these weights on `runtime` (which compiles it, or reuses a
   * compiled copy) and reads the embedding table (a quantized one stays in its stored bytes). On Node, checkpoint/load.ts's loadLlamaModel passes ONNX
   * Runtime's Node binding; a page passes onnxruntime-web.
   */
  static async open(config: LlamaConfig, tensors: TensorSource, runtime: Runtime, options: QuantizeOptions = {}): Promise<LlamaModel> {
    const session = await runtime.openGraph(inferenceGraph(config, tensors, options));
    const table = tensors.readStoredRows?.(EMBED_TOKENS) ?? f32Rows(tensors.readF32(EMBED_TOKENS), config.vocabSize, config.hiddenSize);
    return new LlamaModel(config, table, session);
  }

  /** Embedding rows of `ids`, [T, C]; an id outside the vocabulary is an InputError. */
  embed(ids: ArrayLike<number>): Float32Array {
    const C = this.config.hiddenSize;
    const out = new Float32Array(ids.length * C);
    for (let t = 0; t < ids.length; t++) {
      const id = ids[t]!;
      if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) {
        throw new InputError(`token id ${id} is outside the vocabulary (0..${this.config.vocabSize - 1})`);
      }
      const { bytes, rowBytes } = this.table;
      this.table.widen(bytes.subarray(id * rowBytes, (id + 1) * rowBytes), out.subarray(t * C, (t + 1) * C));
    }
    return out;
  }

  /** Bytes the embedding table takes in TypeScript (its stored form). */
  get embeddingBytes(): number {
    return this.table.bytes.byteLength;
  }

  async forward(input: ForwardInput): Promise<ForwardOutput> {
    const { hiddenSize: C, numLayers, numKvHeads: K, headDim: D, vocabSize: V } = this.config;
    const T = input.positions.length;
    const P = input.cache.length;
    if (T === 0) throw new InputError('forward: no input rows');
    if (input.embeds.length !== T * C) {
      throw new InputError(`forward: embeds hold ${input.embeds.length} floats, expected T*C = ${T}*${C}`);
    }
    const feeds: Record<string, Feed> = {
      [GRAPH_INPUTS.embeds]: { type: 'float32', data: input.embeds, dims: [T, C] },
      [GRAPH_INPUTS.positions]: { type: 'int64', data: BigInt64Array.from(Array.from(input.positions, BigInt)), dims: [T] },
      [GRAPH_INPUTS.mask]: { type: 'float32', data: additiveMask(input.mask, T, P + T), dims: [T, P + T] },
    };
    for (let layer = 0; layer < numLayers; layer++) {
      feeds[pastKeyName(layer)] = { type: 'float32', data: input.cache.pastKeys(layer), dims: [P, K, D] };
      feeds[pastValueName(layer)] = { type: 'float32', data: input.cache.pastValues(layer), dims: [P, K, D] };
    }
    const out = await this.session.run(feeds);
    const data = (name: string) => out[name]!;
    const logits = data(LOGITS);
    if (logits.length !== T * V) throw new Error(`forward: logits hold ${logits.length} floats, expected ${T * V}`);
    return {
      logits,
      keys: Array.from({ length: numLayers }, (_, l) => data(keyName(l))),
      values: Array.from({ length: numLayers }, (_, l) => data(valueName(l))),
    };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** An F32 table [rows, cols] as StoredRows (widening is a copy). */
function f32Rows(table: Float32Array, rows: number, cols: number): StoredRows {
  const bytes = new Uint8Array(table.buffer, table.byteOffset, table.byteLength);
  return { rows, cols, rowBytes: cols * 4, bytes, widen: (row, out) => out.set(new Float32Array(row.buffer, row.byteOffset, cols)) };
}

/** 0/1 mask [T, S] to the graph's additive form (0 = attend, -inf = masked). */
function additiveMask(mask: Uint8Array, T: number, S: number): Float32Array {
  if (mask.length !== T * S) {
    throw new InputError(`forward: mask holds ${mask.length} entries, expected T*(P+T) = ${T}*${S}`);
  }
  const additive = new Float32Array(T * S);
  for (let t = 0; t < T; t++) {
    let any = false;
    for (let j = 0; j < S; j++) {
      const allowed = mask[t * S + j] !== 0;
      additive[t * S + j] = allowed ? 0 : -Infinity;
      any ||= allowed;
    }
    if (!any) throw new InputError(`forward: mask row ${t} attends to nothing`);
  }
  return additive;
}

/**
 * A forward's mask [T, P+T] from the visibility among its own rows: every new row sees all P
 * cached rows (what the cache holds is always an accepted prefix), and new row t sees new row u
 * where `block` [T, T] (0/1, row-major) says so. Every decoder builds its mask this way; only
 * the block differs (causal, a tree's ancestry, prompt tokens' attention).
 */
export function maskOverCache(block: Uint8Array, T: number, P: number): Uint8Array {
  if (block.length !== T * T) throw new InputError(`mask block holds ${block.length} entries, expected T*T = ${T}*${T}`);
  const S = P + T;
  const mask = new Uint8Array(T * S);
  for (let t = 0; t < T; t++) {
    mask.fill(1, t * S, t * S + P);
    mask.set(block.subarray(t * T, (t + 1) * T), t * S + P);
  }
  return mask;
}

/** [T, T] lower triangle: row t sees rows 0..t (plain causal attention). */
export function causalBlock(T: number): Uint8Array {
  const block = new Uint8Array(T * T);
  for (let t = 0; t < T; t++) block.fill(1, t * T, t * T + t + 1);
  return block;
}

/** The standard causal mask [T, P+T]: row t sees all past rows and new rows 0..t. */
export function causalMask(T: number, P: number): Uint8Array {
  return maskOverCache(causalBlock(T), T, P);
}
