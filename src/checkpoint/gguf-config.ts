/**
 * LlamaConfig to and from GGUF metadata, for the architectures llama.cpp's convert_hf_to_gguf.py
 * writes for the families ppd runs: general.architecture "llama" (LLaMA 1-3.x, Mistral, SmolLM2),
 * "qwen2" (Qwen2/2.5), "qwen3". Keys are `<arch>.<name>`:
 *
 *   context_length                    maxPositionEmbeddings
 *   embedding_length                  hiddenSize
 *   block_count                       numLayers
 *   feed_forward_length               intermediateSize
 *   attention.head_count(_kv)         numHeads, numKvHeads
 *   attention.key_length              headDim, when not embedding_length / head_count
 *   rope.dimension_count              headDim (ppd rotates whole heads; llama only)
 *   attention.layer_norm_rms_epsilon  rmsNormEps
 *   rope.freq_base                    ropeTheta
 *   rope.scaling.type/.factor         ropeScaling linear
 *   rope_freqs.weight (a tensor)      ropeScaling llama3 (its parameters recovered, rope.ts), or
 *                                     the per-frequency factors as they are
 *   attention.sliding_window          slidingWindow, and model_type "mistral" (ppd writes it for
 *                                     Mistral; llama.cpp's "llama" architecture ignores it, and
 *                                     its converter does not write it, so llama.cpp runs Mistral
 *                                     without a window)
 *   vocab_size                        vocabSize (else token_embd's rows; llama only)
 *   tokenizer.ggml.bos/eos_token_id   bosTokenId, eosTokenIds
 *   output.weight absent              tieWordEmbeddings
 *   blk.0.attn_q.bias, attn_output.bias, ffn_gate.bias present      bias flags
 *   qwen3                             qkNorm (attn_q_norm/attn_k_norm tensors)
 *
 * Floats are f32 in GGUF, so 1e-5 is stored as 9.99999974e-6; reading gives back the shortest
 * decimal that rounds to the stored f32 (1e-5 again), so a model converted from config.json has
 * the same LlamaConfig, hence the same PPD adapter config hash, as the original. That holds when
 * config.json names one eos id (GGUF has one), and for Mistral only in files ppd wrote.
 */
import { ModelError } from '../errors.ts';
import type { ConfigFamily, LlamaConfig } from '../model/config.ts';
import { llama3FromFactors, type RopeScaling } from '../model/rope.ts';
import type { GgufEntry, GgufMetadata } from '../format/gguf/types.ts';
import { FILE_TYPE_IDS, type FileType } from './gguf-mixes.ts';

const ARCH_KEY = 'general.architecture';

/** The GGUF architectures ppd reads and writes, and the family each stands for. */
export const GGUF_ARCHITECTURES = { llama: 'llama', qwen2: 'qwen2', qwen3: 'qwen3' } as const satisfies Record<string, ConfigFamily>;
export type GgufArchitecture = keyof typeof GGUF_ARCHITECTURES;

/** The architecture llama.cpp's converter writes for a family (Mistral converts as "llama"). */
export function ggufArchitecture(c: LlamaConfig): GgufArchitecture {
  return c.modelType === 'mistral' ? 'llama' : c.modelType;
}

/** What the tensors say that metadata may not. */
export interface LlamaTensorFacts {
  embeddingRows?: number;
  hasOutput: boolean;
  names: readonly string[];
  /** rope_freqs.weight's values, when the file has that tensor. */
  ropeFreqs?: readonly number[];
}

function fail(origin: string, key: string, detail: string): never {
  throw new ModelError(`${origin}: metadata "${key}" ${detail}`);
}

function positiveInteger(meta: GgufMetadata, key: string, origin: string, fallback?: number): number {
  const value = meta.get(key) ?? fallback;
  if (value === undefined) fail(origin, key, 'is missing');
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) fail(origin, key, `must be a positive integer, got ${JSON.stringify(value)}`);
  return value;
}

/** The shortest decimal that an f32 rounds back to: what config.json most likely held. */
export function shortestF32Decimal(x: number): number {
  for (let digits = 1; digits <= 9; digits++) {
    const candidate = Number(x.toPrecision(digits));
    if (Math.fround(candidate) === Math.fround(x)) return candidate;
  }
  return x;
}

function positiveFloat(meta: GgufMetadata, key: string, origin: string, fallback?: number): number {
  const value = meta.get(key) ?? fallback;
  if (value === undefined) fail(origin, key, 'is missing');
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) fail(origin, key, `must be a positive number, got ${JSON.stringify(value)}`);
  return shortestF32Decimal(value);
}

function tokenId(meta: GgufMetadata, key: string, origin: string): number | undefined {
  const value = meta.get(key);
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) fail(origin, key, `must be a token id, got ${JSON.stringify(value)}`);
  return value;
}

/** The architecture named by general.architecture, or a ModelError naming what ppd runs. */
function architectureOf(meta: GgufMetadata, origin: string): GgufArchitecture {
  const architecture = meta.get(ARCH_KEY);
  if (architecture === undefined) fail(origin, ARCH_KEY, 'is missing');
  if (typeof architecture !== 'string' || !(architecture in GGUF_ARCHITECTURES)) {
    const known = Object.keys(GGUF_ARCHITECTURES).map((a) => `"${a}"`).join(', ');
    fail(origin, ARCH_KEY, `is ${JSON.stringify(architecture)}; ppd runs ${known}`);
  }
  return architecture as GgufArchitecture;
}

/**
 * Linear scaling ("none" or no key is no scaling); yarn and others are refused. Llama 3's
 * scaling has no key: llama.cpp's converter writes the rope_freqs tensor instead.
 */
function ropeScaling(meta: GgufMetadata, K: (name: string) => string, tensors: LlamaTensorFacts, headDim: number, theta: number, origin: string): RopeScaling {
  const typeKey = K('rope.scaling.type');
  const type = meta.get(typeKey);
  if (type !== undefined && type !== 'none' && type !== 'linear') fail(origin, typeKey, `${JSON.stringify(type)} is not supported (only "linear", or llama3 frequencies in rope_freqs)`);
  if (tensors.ropeFreqs !== undefined) {
    if (type === 'linear') fail(origin, typeKey, 'is "linear" beside a rope_freqs tensor; ppd runs one or the other');
    if (tensors.ropeFreqs.length !== headDim / 2 || !tensors.ropeFreqs.every((f) => Number.isFinite(f) && f > 0)) {
      throw new ModelError(`${origin}: tensor "rope_freqs.weight" must hold ${headDim / 2} positive factors`);
    }
    return llama3FromFactors(headDim, theta, tensors.ropeFreqs) ?? { type: 'factors', factors: [...tensors.ropeFreqs] };
  }
  if (type === 'none') return { type: 'none' };
  // Older files wrote rope.scale_linear; llama.cpp still reads it when rope.scaling.factor is absent.
  for (const key of [K('rope.scaling.factor'), K('rope.scale_linear')]) {
    if (meta.has(key)) {
      const factor = positiveFloat(meta, key, origin);
      return factor === 1 ? { type: 'none' } : { type: 'linear', factor };
    }
  }
  return { type: 'none' };
}

/** The layer-0 tensor names that say which projections carry a bias. */
const hasBias = (tensors: LlamaTensorFacts, gguf: string) => tensors.names.includes(`blk.0.${gguf}.bias`);

/** The LlamaConfig a GGUF file of a supported architecture describes; ModelError naming the key for anything unusable. */
export function llamaConfigFromGguf(meta: GgufMetadata, tensors: LlamaTensorFacts, origin: string): LlamaConfig {
  const arch = architectureOf(meta, origin);
  const K = (name: string) => `${arch}.${name}`;
  const experts = meta.get(K('expert_count'));
  if (typeof experts === 'number' && experts > 0) fail(origin, K('expert_count'), `is ${experts}: mixture-of-experts models are not supported`);
  const hiddenSize = positiveInteger(meta, K('embedding_length'), origin);
  const numHeads = positiveInteger(meta, K('attention.head_count'), origin);
  const numKvHeads = positiveInteger(meta, K('attention.head_count_kv'), origin, numHeads);
  if (numHeads % numKvHeads !== 0) fail(origin, K('attention.head_count_kv'), `(${numKvHeads}) must divide head_count (${numHeads})`);
  const defaultHeadDim = hiddenSize % numHeads === 0 ? hiddenSize / numHeads : undefined;
  const headDim = positiveInteger(meta, K('attention.key_length'), origin, defaultHeadDim);
  const valueLength = positiveInteger(meta, K('attention.value_length'), origin, headDim);
  if (valueLength !== headDim) fail(origin, K('attention.value_length'), `(${valueLength}) differs from key_length (${headDim}); not supported`);
  if (headDim % 2 !== 0) fail(origin, K('attention.key_length'), `must be even for rotary embeddings, got ${headDim}`);
  const ropeDims = positiveInteger(meta, K('rope.dimension_count'), origin, headDim);
  if (ropeDims !== headDim) fail(origin, K('rope.dimension_count'), `is ${ropeDims}, but ppd rotates whole heads of ${headDim}`);
  const ropeTheta = positiveFloat(meta, K('rope.freq_base'), origin, 10000);
  const window = meta.get(K('attention.sliding_window'));
  if (window !== undefined && (typeof window !== 'number' || !Number.isInteger(window) || window <= 0)) fail(origin, K('attention.sliding_window'), `must be a positive integer, got ${JSON.stringify(window)}`);
  const eos = tokenId(meta, 'tokenizer.ggml.eos_token_id', origin);
  return {
    // A sliding window is Mistral's (ppd writes the key for it; llama.cpp's converter does not).
    modelType: arch === 'llama' && window !== undefined ? 'mistral' : GGUF_ARCHITECTURES[arch],
    vocabSize: positiveInteger(meta, K('vocab_size'), origin, tensors.embeddingRows),
    hiddenSize,
    intermediateSize: positiveInteger(meta, K('feed_forward_length'), origin),
    numLayers: positiveInteger(meta, K('block_count'), origin),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: positiveFloat(meta, K('attention.layer_norm_rms_epsilon'), origin),
    ropeTheta,
    ropeScaling: ropeScaling(meta, K, tensors, headDim, ropeTheta, origin),
    bias: { qkv: hasBias(tensors, 'attn_q'), output: hasBias(tensors, 'attn_output'), mlp: hasBias(tensors, 'ffn_gate') },
    qkNorm: arch === 'qwen3',
    ...(window === undefined ? {} : { slidingWindow: window as number }),
    tieWordEmbeddings: !tensors.hasOutput,
    maxPositionEmbeddings: positiveInteger(meta, K('context_length'), origin),
    bosTokenId: tokenId(meta, 'tokenizer.ggml.bos_token_id', origin),
    eosTokenIds: eos === undefined ? [] : [eos],
  };
}

/** Ids that end generation in llama.cpp: end of sequence, end of turn, end of message. */
export function ggufEndTokenIds(meta: GgufMetadata, origin: string): number[] {
  const ids = ['eos', 'eot', 'eom'].map((kind) => tokenId(meta, `tokenizer.ggml.${kind}_token_id`, origin));
  return [...new Set(ids.filter((id): id is number => id !== undefined))];
}

/** ggml's GGML_QNT_VERSION, which llama.cpp checks for quantized files. */
const QUANTIZATION_VERSION = 2;

/**
 * Metadata entries describing `config` as llama.cpp expects them (types included: llama.cpp
 * checks that counts are u32 and floats f32), with the keys its converter writes for the
 * architecture. bos/eos ids are the tokenizer's entries' business (tokenizer/gguf/);
 * `tokenIdEntries` gives them from the config for files written without one. Llama 3's RoPE
 * scaling goes in the rope_freqs tensor (ropeFreqsTensor), not here.
 */
export function llamaGgufEntries(config: LlamaConfig, opts: { name?: string; fileType: FileType }): GgufEntry[] {
  const arch = ggufArchitecture(config);
  const K = (name: string) => `${arch}.${name}`;
  const u32 = (name: string, value: number): GgufEntry => ({ key: K(name), type: 'u32', value });
  const f32 = (name: string, value: number): GgufEntry => ({ key: K(name), type: 'f32', value });
  const entries: GgufEntry[] = [
    { key: ARCH_KEY, type: 'string', value: arch },
    ...(opts.name ? [{ key: 'general.name', type: 'string', value: opts.name } as GgufEntry] : []),
    { key: 'general.file_type', type: 'u32', value: FILE_TYPE_IDS[opts.fileType] },
    { key: 'general.quantization_version', type: 'u32', value: QUANTIZATION_VERSION },
    u32('context_length', config.maxPositionEmbeddings),
    u32('embedding_length', config.hiddenSize),
    u32('block_count', config.numLayers),
    u32('feed_forward_length', config.intermediateSize),
    u32('attention.head_count', config.numHeads),
    u32('attention.head_count_kv', config.numKvHeads),
    f32('rope.freq_base', config.ropeTheta),
    f32('attention.layer_norm_rms_epsilon', config.rmsNormEps),
  ];
  // LlamaModel in the converter adds these two; Qwen2Model/Qwen3Model do not.
  if (arch === 'llama') entries.push(u32('rope.dimension_count', config.headDim), u32('vocab_size', config.vocabSize));
  if (config.headDim * config.numHeads !== config.hiddenSize || arch === 'qwen3') {
    entries.push(u32('attention.key_length', config.headDim), u32('attention.value_length', config.headDim));
  }
  const scaling = config.ropeScaling;
  if (scaling.type === 'linear') {
    entries.push({ key: K('rope.scaling.type'), type: 'string', value: 'linear' }, f32('rope.scaling.factor', scaling.factor));
  } else if ((scaling.type === 'llama3' || scaling.type === 'factors') && arch !== 'llama') {
    throw new ModelError(`${arch} GGUF files cannot carry per-frequency RoPE factors (llama.cpp reads rope_freqs only for "llama")`);
  }
  if (config.slidingWindow !== undefined) {
    if (arch !== 'llama') throw new ModelError(`${arch} GGUF files cannot carry a sliding window`);
    entries.push(u32('attention.sliding_window', config.slidingWindow));
  }
  return entries;
}

/** tokenizer.ggml.bos/eos_token_id from the config (the first eos id: GGUF holds one). */
export function tokenIdEntries(config: LlamaConfig): GgufEntry[] {
  const entries: GgufEntry[] = [];
  if (config.bosTokenId !== undefined) entries.push({ key: 'tokenizer.ggml.bos_token_id', type: 'u32', value: config.bosTokenId });
  if (config.eosTokenIds.length > 0) entries.push({ key: 'tokenizer.ggml.eos_token_id', type: 'u32', value: config.eosTokenIds[0] });
  return entries;
}
