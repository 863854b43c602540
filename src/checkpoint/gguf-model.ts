/**
 * Opening a LLaMA-family .gguf file (llama, qwen2, qwen3) as a ModelDir: everything a Hugging Face folder gives, from one file.
 * The config comes from the metadata (gguf-config.ts), the tensors through llamaGgufSource
 * (checked against the config like a folder's), the end-of-generation ids from the tokenizer
 * ids llama.cpp stops at, and the tokenizer from tokenizer.ggml.* (tokenizer/gguf/from-gguf.ts).
 */
import { checkTensors } from '../model/weights.ts';
import { tokenizerFromGguf } from '../tokenizer/gguf/from-gguf.ts';
import type { ModelDir } from './model-folder.ts';
import { ggufEndTokenIds, llamaConfigFromGguf } from './gguf-config.ts';
import { llamaGgufSource } from './gguf-source.ts';
import { ROPE_FREQS } from './gguf-tensors.ts';
import { dequantize } from '../format/gguf/quant.ts';
import { readGguf } from '../format/gguf/read.ts';
import type { ReadableFile } from '../format/readable-file.ts';

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
