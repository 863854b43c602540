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
import type { LlamaConfig } from '../model/config.ts';
import { LM_HEAD, expectedTensors } from '../model/weights.ts';
import { writeJsonAtomic } from './atomic.ts';
import { readTokenizerJson, type ModelDir } from './model-dir.ts';
import { writeSafetensors } from './safetensors-write.ts';
import type { FloatDType } from './tensor-source.ts';

/** config.json for `c`, such that parseLlamaConfig gives `c` back. */
export function hfConfigJson(c: LlamaConfig, dtype: FloatDType = 'F32'): Record<string, unknown> {
  const json: Record<string, unknown> = {
    architectures: [c.modelType === 'mistral' ? 'MistralForCausalLM' : 'LlamaForCausalLM'],
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
    rope_scaling: c.ropeScalingFactor === 1 ? null : { rope_type: 'linear', factor: c.ropeScalingFactor },
    tie_word_embeddings: c.tieWordEmbeddings,
    max_position_embeddings: c.maxPositionEmbeddings,
    torch_dtype: { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[dtype],
  };
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
