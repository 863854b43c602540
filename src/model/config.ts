/**
 * LlamaConfig: the few numbers that define a LLaMA-family model, parsed and validated from a
 * Hugging Face `config.json`. Not the weights, not the tokenizer.
 *
 * Supported: model_type `llama` and `mistral` (same graph), grouped-query attention, rope_theta,
 * linear rope_scaling, tie_word_embeddings, rms_norm_eps. Anything else is a ModelError naming
 * the field, so an unsupported checkpoint fails at load, not with garbage output.
 */
import { ModelError } from '../errors.ts';

export interface LlamaConfig {
  modelType: 'llama' | 'mistral';
  vocabSize: number;
  hiddenSize: number; // C
  intermediateSize: number; // F, the MLP's inner width
  numLayers: number;
  numHeads: number; // query heads
  numKvHeads: number; // key/value heads (GQA: numHeads % numKvHeads == 0)
  headDim: number; // D
  rmsNormEps: number;
  ropeTheta: number;
  /** Linear RoPE scaling: positions are divided by this factor (1 = none). */
  ropeScalingFactor: number;
  tieWordEmbeddings: boolean;
  maxPositionEmbeddings: number;
  bosTokenId?: number;
  eosTokenIds: number[];
}

type Json = Record<string, unknown>;

function fail(file: string, field: string, detail: string): never {
  throw new ModelError(`${file}: field "${field}" ${detail}`);
}

function positiveInt(raw: Json, field: string, file: string, fallback?: number): number {
  const value = raw[field] ?? fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    fail(file, field, `must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

function positiveNumber(raw: Json, field: string, file: string, fallback: number): number {
  const value = raw[field] ?? fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    fail(file, field, `must be a positive number, got ${JSON.stringify(value)}`);
  }
  return value;
}

function tokenIds(raw: Json, field: string, file: string): number[] {
  const value = raw[field];
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : [value];
  if (!list.every((id) => Number.isInteger(id) && id >= 0)) {
    fail(file, field, `must be a token id or a list of ids, got ${JSON.stringify(value)}`);
  }
  return list as number[];
}

function ropeScaling(raw: Json, file: string): number {
  const scaling = raw.rope_scaling;
  if (scaling === undefined || scaling === null) return 1;
  if (typeof scaling !== 'object') fail(file, 'rope_scaling', 'must be an object or null');
  const s = scaling as Json;
  const kind = s.rope_type ?? s.type;
  if (kind === 'default') return 1;
  if (kind !== 'linear') {
    fail(file, 'rope_scaling', `type ${JSON.stringify(kind)} is not supported (only "linear")`);
  }
  return positiveNumber(s, 'factor', file, NaN);
}

/** Validates a parsed config.json; `file` names it in errors. */
export function parseLlamaConfig(raw: unknown, file = 'config.json'): LlamaConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ModelError(`${file}: must hold a JSON object`);
  }
  const json = raw as Json;
  const modelType = json.model_type;
  if (modelType !== 'llama' && modelType !== 'mistral') {
    fail(file, 'model_type', `${JSON.stringify(modelType)} is not supported (expected "llama" or "mistral")`);
  }
  const hiddenSize = positiveInt(json, 'hidden_size', file);
  const numHeads = positiveInt(json, 'num_attention_heads', file);
  const numKvHeads = positiveInt(json, 'num_key_value_heads', file, numHeads);
  if (numHeads % numKvHeads !== 0) {
    fail(file, 'num_key_value_heads', `(${numKvHeads}) must divide num_attention_heads (${numHeads})`);
  }
  const headDim = positiveInt(json, 'head_dim', file, Math.floor(hiddenSize / numHeads));
  if (json.head_dim === undefined && hiddenSize % numHeads !== 0) {
    fail(file, 'hidden_size', `(${hiddenSize}) must be divisible by num_attention_heads (${numHeads})`);
  }
  if (headDim % 2 !== 0) fail(file, 'head_dim', `must be even for rotary embeddings, got ${headDim}`);
  const act = json.hidden_act ?? 'silu';
  if (act !== 'silu') fail(file, 'hidden_act', `${JSON.stringify(act)} is not supported (only "silu")`);
  if (json.attention_bias === true) fail(file, 'attention_bias', 'true is not supported');
  if (json.mlp_bias === true) fail(file, 'mlp_bias', 'true is not supported');
  return {
    modelType,
    vocabSize: positiveInt(json, 'vocab_size', file),
    hiddenSize,
    intermediateSize: positiveInt(json, 'intermediate_size', file),
    numLayers: positiveInt(json, 'num_hidden_layers', file),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: positiveNumber(json, 'rms_norm_eps', file, 1e-6),
    ropeTheta: positiveNumber(json, 'rope_theta', file, 10000),
    ropeScalingFactor: ropeScaling(json, file),
    tieWordEmbeddings: json.tie_word_embeddings === true,
    maxPositionEmbeddings: positiveInt(json, 'max_position_embeddings', file, 2048),
    bosTokenId: tokenIds(json, 'bos_token_id', file)[0],
    eosTokenIds: tokenIds(json, 'eos_token_id', file),
  };
}

/** Parameter count of the model (embeddings, and the LM head when untied, included). */
export function parameterCount(c: LlamaConfig): number {
  const attention = c.hiddenSize * c.headDim * (2 * c.numHeads + 2 * c.numKvHeads);
  const mlp = 3 * c.hiddenSize * c.intermediateSize;
  const norms = 2 * c.hiddenSize;
  const embeddings = c.vocabSize * c.hiddenSize * (c.tieWordEmbeddings ? 1 : 2);
  return c.numLayers * (attention + mlp + norms) + c.hiddenSize + embeddings;
}
