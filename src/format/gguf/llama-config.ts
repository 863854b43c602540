/**
 * LlamaConfig to and from GGUF metadata (the keys llama.cpp's convert_hf_to_gguf.py writes for
 * general.architecture "llama"), both ways:
 *
 *   llama.context_length                    maxPositionEmbeddings
 *   llama.embedding_length                  hiddenSize
 *   llama.block_count                       numLayers
 *   llama.feed_forward_length               intermediateSize
 *   llama.attention.head_count(_kv)         numHeads, numKvHeads
 *   llama.attention.key_length              headDim, when not embedding_length / head_count
 *   llama.rope.dimension_count              headDim (ppd rotates whole heads)
 *   llama.attention.layer_norm_rms_epsilon  rmsNormEps
 *   llama.rope.freq_base                    ropeTheta
 *   llama.rope.scaling.type/.factor         ropeScalingFactor (linear only)
 *   llama.vocab_size                        vocabSize (else token_embd's rows)
 *   tokenizer.ggml.bos/eos_token_id         bosTokenId, eosTokenIds
 *   output.weight absent                    tieWordEmbeddings
 *
 * Floats are f32 in GGUF, so 1e-5 is stored as 9.99999974e-6; reading gives back the shortest
 * decimal that rounds to the stored f32 (1e-5 again), so a model converted from config.json has
 * the same LlamaConfig, hence the same PPD adapter config hash, as the original. That holds when
 * config.json names one eos id and model_type "llama": GGUF has one eos id, and no "mistral"
 * (llama.cpp converts Mistral as "llama"), so those models hash differently as GGUF.
 */
import { ModelError } from '../../errors.ts';
import type { LlamaConfig } from '../../model/config.ts';
import type { GgufEntry, GgufMetadata } from './types.ts';

export const LLAMA_ARCHITECTURE = 'llama';
const ARCH_KEY = 'general.architecture';
const K = (name: string) => `${LLAMA_ARCHITECTURE}.${name}`;

/** What the tensors say that metadata may not: token_embd's rows, and whether output.weight exists. */
export interface LlamaTensorFacts {
  embeddingRows?: number;
  hasOutput: boolean;
  names: readonly string[];
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

/** Linear scaling factor; "none" or no key is 1; yarn and others are refused. */
function ropeScaling(meta: GgufMetadata, origin: string): number {
  const typeKey = K('rope.scaling.type');
  const type = meta.get(typeKey);
  if (type === 'none') return 1;
  if (type !== undefined && type !== 'linear') fail(origin, typeKey, `${JSON.stringify(type)} is not supported (only "linear")`);
  // Older files wrote rope.scale_linear; llama.cpp still reads it when rope.scaling.factor is absent.
  for (const key of [K('rope.scaling.factor'), K('rope.scale_linear')]) {
    if (meta.has(key)) return positiveFloat(meta, key, origin);
  }
  return 1;
}

/** Refuses what the metadata or tensors say and ppd's graph cannot do, naming the feature. */
function refuseUnsupported(meta: GgufMetadata, tensors: LlamaTensorFacts, origin: string): void {
  const architecture = meta.get(ARCH_KEY);
  if (architecture === undefined) fail(origin, ARCH_KEY, 'is missing');
  if (architecture !== LLAMA_ARCHITECTURE) {
    fail(origin, ARCH_KEY, `is ${JSON.stringify(architecture)}; ppd runs only "${LLAMA_ARCHITECTURE}" models`);
  }
  const experts = meta.get(K('expert_count'));
  if (typeof experts === 'number' && experts > 0) fail(origin, K('expert_count'), `is ${experts}: mixture-of-experts models are not supported`);
  if (tensors.names.includes('rope_freqs.weight')) {
    throw new ModelError(`${origin}: tensor "rope_freqs.weight" means Llama 3.1-style rope scaling, which ppd does not support`);
  }
}

/** The LlamaConfig a LLaMA GGUF file describes; ModelError naming the key for anything unusable. */
export function llamaConfigFromGguf(meta: GgufMetadata, tensors: LlamaTensorFacts, origin: string): LlamaConfig {
  refuseUnsupported(meta, tensors, origin);
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
  const eos = tokenId(meta, 'tokenizer.ggml.eos_token_id', origin);
  return {
    modelType: 'llama',
    vocabSize: positiveInteger(meta, K('vocab_size'), origin, tensors.embeddingRows),
    hiddenSize,
    intermediateSize: positiveInteger(meta, K('feed_forward_length'), origin),
    numLayers: positiveInteger(meta, K('block_count'), origin),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: positiveFloat(meta, K('attention.layer_norm_rms_epsilon'), origin),
    ropeTheta: positiveFloat(meta, K('rope.freq_base'), origin, 10000),
    ropeScalingFactor: ropeScaling(meta, origin),
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

/** llama.cpp's llama_ftype: the type most tensors are stored as (informational). */
export const FILE_TYPE = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7, BF16: 32 } as const;
/** ggml's GGML_QNT_VERSION, which llama.cpp checks for quantized files. */
const QUANTIZATION_VERSION = 2;

/**
 * Metadata entries describing `config` as llama.cpp expects them (types included: llama.cpp
 * checks that counts are u32 and floats f32). bos/eos ids are the tokenizer's entries' business
 * (tokenizer/gguf/); `tokenIdEntries` gives them from the config for files written without one.
 */
export function llamaGgufEntries(config: LlamaConfig, opts: { name?: string; fileType: keyof typeof FILE_TYPE }): GgufEntry[] {
  const u32 = (name: string, value: number): GgufEntry => ({ key: K(name), type: 'u32', value });
  const f32 = (name: string, value: number): GgufEntry => ({ key: K(name), type: 'f32', value });
  const entries: GgufEntry[] = [
    { key: ARCH_KEY, type: 'string', value: LLAMA_ARCHITECTURE },
    ...(opts.name ? [{ key: 'general.name', type: 'string', value: opts.name } as GgufEntry] : []),
    { key: 'general.file_type', type: 'u32', value: FILE_TYPE[opts.fileType] },
    { key: 'general.quantization_version', type: 'u32', value: QUANTIZATION_VERSION },
    u32('context_length', config.maxPositionEmbeddings),
    u32('embedding_length', config.hiddenSize),
    u32('block_count', config.numLayers),
    u32('feed_forward_length', config.intermediateSize),
    u32('attention.head_count', config.numHeads),
    u32('attention.head_count_kv', config.numKvHeads),
    u32('rope.dimension_count', config.headDim),
    f32('rope.freq_base', config.ropeTheta),
    f32('attention.layer_norm_rms_epsilon', config.rmsNormEps),
    u32('vocab_size', config.vocabSize),
  ];
  if (config.headDim * config.numHeads !== config.hiddenSize) {
    entries.push(u32('attention.key_length', config.headDim), u32('attention.value_length', config.headDim));
  }
  if (config.ropeScalingFactor !== 1) {
    entries.push({ key: K('rope.scaling.type'), type: 'string', value: 'linear' }, f32('rope.scaling.factor', config.ropeScalingFactor));
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
