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
import { rowsInMemory, type StoredRows, type TensorSource } from '../format/tensor-source.ts';
import type { Feed, ModelSession, Runtime } from '../runtime/session.ts';
import type { LlamaConfig } from './config.ts';
import type { PastRows } from './kv-cache.ts';
import { GRAPH_INPUTS, inferenceGraph, keyName, LOGITS, pastKeyName, pastValueName, valueName, type InferenceOptions } from './llama-graph.ts';
import { PROMPT_HEAD_INPUTS, type PromptHeadFeeds } from './prompt-head.ts';
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
  /** The prompt head and which rows are prompt tokens' (models opened with a prompt head only). */
  promptHead?: PromptHeadRows;
}

/**
 * A prompt head for one forward: its weights, [T] each row's prompt token (0..N-1), or -1, and
 * [T] each prompt row's parent: the row (among the T) of the token the prompt tokens follow
 * (model/prompt-head.ts; -1 for a row that is no prompt token's).
 */
export interface PromptHeadRows {
  feeds: PromptHeadFeeds;
  rows: ArrayLike<number>;
  parents: ArrayLike<number>;
}

export interface ForwardOutput {
  /** [T, V] */
  logits: Float32Array;
  /** Per layer [T, K, D]: keys (after rotary) and values of the T rows. */
  keys: Float32Array[];
  values: Float32Array[];
}

export class LlamaModel {
  /** A forward without a head's rows (plain decoding) feeds these: all zero, which leaves every row as it is. */
  private readonly idleHead?: PromptHeadFeeds;

  private constructor(
    readonly config: LlamaConfig,
    /** [V, C] token embeddings as stored (F32, or a GGUF file's F16/quantized rows). */
    private readonly table: StoredRows,
    private readonly session: ModelSession,
    /** N when the graph takes a prompt head for N prompt tokens (InferenceOptions.promptHead). */
    readonly promptHeadTokens?: number,
  ) {
    const C = config.hiddenSize;
    if (promptHeadTokens !== undefined) this.idleHead = { promptTokens: promptHeadTokens, weights: new Float32Array(2 * C * promptHeadTokens * C), bias: new Float32Array(promptHeadTokens * C) };
  }

  /**
   * Opens the inference graph of these weights on `runtime` (which compiles it, or reuses a
   * compiled copy) and reads the embedding table (a quantized one stays in its stored bytes). On Node, checkpoint/load.ts's loadLlamaModel passes ONNX
   * Runtime's Node binding; a page passes onnxruntime-web.
   */
  static async open(config: LlamaConfig, tensors: TensorSource, runtime: Runtime, options: InferenceOptions = {}): Promise<LlamaModel> {
    const session = await runtime.openGraph(inferenceGraph(config, tensors, options));
    const table = tensors.readStoredRows?.(EMBED_TOKENS) ?? f32Rows(tensors.readF32(EMBED_TOKENS), config.vocabSize, config.hiddenSize);
    return new LlamaModel(config, table, session, options.promptHead);
  }

  /** Embedding rows of `ids`, [T, C]; an id outside the vocabulary is an InputError. */
  embed(ids: ArrayLike<number>): Float32Array {
    const C = this.config.hiddenSize;
    const out = new Float32Array(ids.length * C);
    const row = new Uint8Array(this.table.rowBytes);
    for (let t = 0; t < ids.length; t++) {
      const id = ids[t]!;
      if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) {
        throw new InputError(`token id ${id} is outside the vocabulary (0..${this.config.vocabSize - 1})`);
      }
      this.table.readRow(id, row);
      this.table.widen(row, out.subarray(t * C, (t + 1) * C));
    }
    return out;
  }

  /** Bytes the embedding table holds in TypeScript: its stored form, or 0 where rows are read from the file. */
  get embeddingBytes(): number {
    return this.table.residentBytes;
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
    if (input.promptHead && this.promptHeadTokens === undefined) throw new InputError('forward: this model was opened without a prompt head; open it with promptHead: N to use one');
    if (this.idleHead) Object.assign(feeds, this.promptHeadFeeds(input.promptHead, T));
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

  /** The graph's prompt-head inputs: the head's weights, a one-hot select [T, N] of each row's prompt token, and each row's parent. */
  private promptHeadFeeds(head: PromptHeadRows | undefined, T: number): Record<string, Feed> {
    const N = this.promptHeadTokens!;
    const C = this.config.hiddenSize;
    const feeds = head?.feeds ?? this.idleHead!;
    if (feeds.promptTokens !== N || feeds.weights.length !== 2 * C * N * C || feeds.bias.length !== N * C) {
      throw new InputError(`forward: the prompt head is for ${feeds.promptTokens} prompt tokens; this model was opened for ${N}`);
    }
    const select = new Float32Array(T * N);
    // A row that is no prompt token's reads row 0 as its parent: its select is zero, so the head leaves it as it is.
    const parents = new BigInt64Array(T);
    if (head) {
      if (head.rows.length !== T || head.parents.length !== T) throw new InputError(`forward: prompt-head rows hold ${head.rows.length} entries and parents ${head.parents.length}, expected T = ${T}`);
      for (let t = 0; t < T; t++) {
        const i = head.rows[t]!;
        if (i >= N) throw new InputError(`forward: row ${t} is prompt token ${i}; the head has ${N}`);
        if (i < 0) continue;
        const parent = head.parents[t]!;
        if (!(Number.isInteger(parent) && parent >= 0 && parent < T)) throw new InputError(`forward: prompt row ${t}'s parent is row ${parent}, not one of the ${T} rows`);
        select[t * N + i] = 1;
        parents[t] = BigInt(parent);
      }
    }
    return {
      [PROMPT_HEAD_INPUTS.select]: { type: 'float32', data: select, dims: [T, N] },
      [PROMPT_HEAD_INPUTS.parents]: { type: 'int64', data: parents, dims: [T] },
      [PROMPT_HEAD_INPUTS.weights]: { type: 'float32', data: feeds.weights, dims: [2 * C, N * C] },
      [PROMPT_HEAD_INPUTS.bias]: { type: 'float32', data: feeds.bias, dims: [N, C] },
    };
  }

  async release(): Promise<void> {
    this.table.close();
    await this.session.release();
  }
}

/** An F32 table [rows, cols] as StoredRows (widening is a copy). */
function f32Rows(table: Float32Array, rows: number, cols: number): StoredRows {
  const bytes = new Uint8Array(table.buffer, table.byteOffset, table.byteLength);
  // Rows are copied into a fresh buffer (readRow), so a Float32Array view over one is aligned.
  return rowsInMemory(bytes, rows, cols, cols * 4, (row, out) => out.set(new Float32Array(row.buffer, row.byteOffset, cols)));
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
