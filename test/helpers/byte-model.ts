/**
 * The tiny random model folder the end-to-end tests share (CLI, server, generation, GGUF, PPD,
 * speculative): the byte tokenizer (vocabulary 260) and a LLaMA shape whose rows are 32 and 64 wide,
 * so every matrix is whole Q8_0/Q4_0 blocks. Tests that need another shape spread this one and
 * change what they need (e.g. a short context). In-memory models without files use
 * tiny-model.ts's tinyConfig instead (vocabulary 40, head dim 6 unlike C/H on purpose).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeRandomModel } from '../../src/checkpoint/random-init.ts';
import { byteFallbackTokenizerConfig, byteFallbackTokenizerJson } from '../../src/tokenizer/byte-tokenizer.ts';

export const BYTE_MODEL_SHAPE = {
  model_type: 'llama',
  vocab_size: 260, // the byte tokenizer's
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 256,
  rms_norm_eps: 1e-5,
  bos_token_id: 1,
  eos_token_id: 2,
};

/** Writes config, weights, tokenizer.json and tokenizer_config.json (with a chat template) to `dir`. */
export function writeByteModel(dir: string, shape: object = BYTE_MODEL_SHAPE, seed = 3): string {
  writeRandomModel(dir, shape, { seed, tokenizerJson: byteFallbackTokenizerJson() });
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(byteFallbackTokenizerConfig()));
  return dir;
}
