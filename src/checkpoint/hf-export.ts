/**
 * Writing an opened model (typically a .gguf file) as a Hugging Face folder: model.safetensors
 * in a float dtype, config.json, generation_config.json, and the tokenizer as tokenizer.json and
 * tokenizer_config.json (with the chat template), so transformers and ppd both load it. Every
 * file is written atomically; tensors go one at a time.
 *
 * Not a place for quantized output: safetensors here hold floats only.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ModelError } from '../errors.ts';
import type { LlamaConfig } from '../model/config.ts';
import { LM_HEAD, expectedTensors } from '../model/weights.ts';
import { writeJsonAtomic } from '../format/atomic.ts';
import { readTokenizerJson, type ModelDir } from './model-dir.ts';
import { writeSafetensors } from '../format/safetensors-write.ts';
import type { FloatDType } from '../format/tensor-source.ts';

const ARCHITECTURES: Record<LlamaConfig['modelType'], string> = {
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  qwen3: 'Qwen3ForCausalLM',
};

/** rope_scaling as config.json spells it; per-frequency factors that are no llama3 scaling have no spelling. */
function ropeScalingJson(c: LlamaConfig): Record<string, unknown> | null {
  const s = c.ropeScaling;
  switch (s.type) {
    case 'none':
      return null;
    case 'linear':
      return { rope_type: 'linear', factor: s.factor };
    case 'llama3':
      return { rope_type: 'llama3', factor: s.factor, low_freq_factor: s.lowFreqFactor, high_freq_factor: s.highFreqFactor, original_max_position_embeddings: s.originalMaxPositionEmbeddings };
    case 'factors':
      throw new ModelError(`RoPE frequency factors [${s.factors.join(', ')}] are not a llama3 scaling, so config.json cannot state them`);
  }
}

/**
 * The family's own bias fields, checked: each family has a fixed pattern (LLaMA and Qwen3:
 * q/k/v and o together; Qwen2: q/k/v always, o never; MLP biases LLaMA only).
 */
function biasFields(c: LlamaConfig): Record<string, unknown> {
  const { qkv, output, mlp } = c.bias;
  const fits = c.modelType === 'qwen2' ? qkv && !output && !mlp : qkv === output && (!mlp || c.modelType === 'llama');
  if (!fits) throw new ModelError(`a ${c.modelType} config.json cannot state biases on ${JSON.stringify(c.bias)}`);
  if (c.modelType === 'qwen2') return {};
  return { attention_bias: qkv, ...(c.modelType === 'llama' ? { mlp_bias: mlp } : {}) };
}

/** config.json for `c`, such that parseLlamaConfig gives `c` back. */
export function hfConfigJson(c: LlamaConfig, dtype: FloatDType = 'F32'): Record<string, unknown> {
  if (c.qkNorm !== (c.modelType === 'qwen3')) throw new ModelError(`a ${c.modelType} config.json cannot state ${c.qkNorm ? '' : 'the absence of '}q/k norms`);
  const json: Record<string, unknown> = {
    architectures: [ARCHITECTURES[c.modelType]],
    model_type: c.modelType,
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    hidden_act: 'silu',
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    rope_scaling: ropeScalingJson(c),
    ...biasFields(c),
    tie_word_embeddings: c.tieWordEmbeddings,
    max_position_embeddings: c.maxPositionEmbeddings,
    torch_dtype: { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[dtype],
  };
  if (c.modelType === 'mistral') json.sliding_window = c.slidingWindow ?? null;
  else if (c.slidingWindow !== undefined) throw new ModelError(`a ${c.modelType} config.json cannot state a sliding window of ${c.slidingWindow}`);
  if (c.modelType === 'qwen2' || c.modelType === 'qwen3') json.use_sliding_window = false;
  if (c.bosTokenId !== undefined) json.bos_token_id = c.bosTokenId;
  if (c.eosTokenIds.length > 0) json.eos_token_id = c.eosTokenIds.length === 1 ? c.eosTokenIds[0] : c.eosTokenIds;
  return json;
}

/** Writes `model` into the folder `outDir` (created if needed) with tensors stored as `dtype`; returns the weights' bytes. */
export function writeHfModel(model: ModelDir, outDir: string, dtype: FloatDType): number {
  const { config, tensors: source } = model;
  mkdirSync(outDir, { recursive: true });
  const entries = [...expectedTensors(config)]
    .filter(([name]) => !(name === LM_HEAD && config.tieWordEmbeddings))
    .map(([name, shape]) => ({ name, dtype, shape, data: () => source.readF32(name) }));
  writeSafetensors(join(outDir, 'model.safetensors'), entries, { metadata: { format: 'pt' } });
  writeJsonAtomic(join(outDir, 'config.json'), hfConfigJson(config, dtype));

  const generation: Record<string, unknown> = {};
  if (config.bosTokenId !== undefined) generation.bos_token_id = config.bosTokenId;
  if (model.eosTokenIds.length > 0) generation.eos_token_id = model.eosTokenIds.length === 1 ? model.eosTokenIds[0] : model.eosTokenIds;
  writeJsonAtomic(join(outDir, 'generation_config.json'), generation);

  const tokenizerJson = readTokenizerJson(model);
  if (tokenizerJson) {
    writeJsonAtomic(join(outDir, 'tokenizer.json'), tokenizerJson);
    const tokenizerConfig = { ...model.tokenizerConfig, ...(model.chatTemplate !== undefined ? { chat_template: model.chatTemplate } : {}) };
    writeJsonAtomic(join(outDir, 'tokenizer_config.json'), tokenizerConfig);
  }
  return entries.reduce((n, e) => n + e.shape.reduce((a, b) => a * b, 1), 0) * { F32: 4, F16: 2, BF16: 2 }[dtype];
}
