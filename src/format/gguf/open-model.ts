/**
 * Opening a LLaMA-family .gguf file (llama, qwen2, qwen3) as a ModelDir: everything a Hugging Face folder gives, from one file.
 * The config comes from the metadata (llama-config.ts), the tensors through llamaGgufSource
 * (checked against the config like a folder's), the end-of-generation ids from the tokenizer
 * ids llama.cpp stops at, and the tokenizer from tokenizer.ggml.* (tokenizer/gguf/from-gguf.ts).
 */
import { checkTensors } from '../../model/weights.ts';
import { tokenizerFromGguf } from '../../tokenizer/gguf/from-gguf.ts';
import type { ModelDir } from '../model-folder.ts';
import { ggufEndTokenIds, llamaConfigFromGguf } from './llama-config.ts';
import { llamaGgufSource } from './llama-source.ts';
import { ROPE_FREQS } from './llama-tensors.ts';
import { dequantize } from './quant.ts';
import { readGguf } from './read.ts';
import type { ReadableFile } from '../readable-file.ts';

export function readGgufModel(source: ReadableFile): ModelDir {
  const path = source.name;
  const file = readGguf(source);
  try {
    const embeddings = file.tensor('token_embd.weight');
    const ropeFreqs = file.tensor(ROPE_FREQS);
    const config = llamaConfigFromGguf(
      file.metadata,
      {
        embeddingRows: embeddings?.dims[1],
        hasOutput: file.tensor('output.weight') !== undefined,
        names: file.tensors.map((t) => t.name),
        ropeFreqs: ropeFreqs && [...dequantize(ropeFreqs.type.name, file.readBytes(ropeFreqs), ropeFreqs.elements)],
      },
      path,
    );
    const tensors = llamaGgufSource(file, config);
    checkTensors(config, tensors);
    const tokenizer = tokenizerFromGguf(file.metadata, path);
    return {
      dir: path,
      config,
      tensors,
      eosTokenIds: ggufEndTokenIds(file.metadata, path),
      tokenizerJson: tokenizer?.tokenizerJson,
      tokenizerConfig: tokenizer?.tokenizerConfig,
      chatTemplate: tokenizer?.chatTemplate,
    };
  } catch (err) {
    file.close();
    throw err;
  }
}
