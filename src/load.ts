/**
 * Loading a model from disk for use: the checkpoint folder or .gguf file (format/), compiled to
 * an ONNX session (model/, runtime/), with its tokenizer when it has one. The one place that
 * knows which files make a model; every command goes through it.
 */
import { openForReading } from './format/file-io.ts';
import { openModelDir, type ModelDir } from './format/model-dir.ts';
import type { TensorSource } from './format/tensor-source.ts';
import type { LlamaConfig } from './model/config.ts';
import type { QuantizeOptions } from './model/llama-graph.ts';
import { LlamaModel } from './model/llama-model.ts';
import type { CompileOptions } from './runtime/compile.ts';
import { nodeRuntime, type RuntimeOptions } from './runtime/ort.ts';
import { Tokenizer } from './tokenizer/tokenizer.ts';
import { ModelError } from './errors.ts';

/** How a model is compiled and run on Node: threads, graph cache, weight quantization. */
export interface LoadOptions extends RuntimeOptions, CompileOptions, QuantizeOptions {}

/** The model of these weights on ONNX Runtime's Node binding (graph compiled, or reused from the cache). */
export function loadLlamaModel(config: LlamaConfig, tensors: TensorSource, options: LoadOptions = {}): Promise<LlamaModel> {
  return LlamaModel.open(config, tensors, nodeRuntime(options), options);
}

export interface LoadedModel {
  dir: string;
  config: LlamaConfig;
  model: LlamaModel;
  /** Absent when the model has no tokenizer (ids-only use, e.g. `ppd logits`). */
  tokenizer?: Tokenizer;
  /** Token ids that end generation: config, generation_config and the tokenizer's EOS. */
  eosIds: number[];
}

export interface ModelLoadOptions extends LoadOptions {
  /** Fail before the (slow) compilation when the folder has no tokenizer. */
  needsTokenizer?: boolean;
}

export async function loadModel(dir: string, options: ModelLoadOptions = {}): Promise<LoadedModel> {
  const files = openModelDir(dir);
  try {
    if (options.needsTokenizer && !files.tokenizerFile && !files.tokenizerJson) throw missingTokenizer(dir);
    const tokenizer = tokenizerOf(files);
    if (tokenizer && tokenizer.vocabSize > files.config.vocabSize) {
      throw new ModelError(
        `${files.tokenizerFile ?? dir}: the tokenizer knows ${tokenizer.vocabSize} tokens but the model's vocab_size is ${files.config.vocabSize}`,
      );
    }
    const model = await loadLlamaModel(files.config, files.tensors, options);
    const eosIds = [...new Set([...files.eosTokenIds, ...(tokenizer?.eosId != null ? [tokenizer.eosId] : [])])];
    return { dir, config: files.config, model, tokenizer, eosIds };
  } finally {
    files.tensors.close();
  }
}

/** The tokenizer of an opened model: its tokenizer.json file, or the one a GGUF file carries; undefined without. */
export function tokenizerOf(files: ModelDir): Tokenizer | undefined {
  if (files.tokenizerFile) return Tokenizer.fromFile(openForReading(files.tokenizerFile), files.tokenizerConfig, files.chatTemplate);
  if (files.tokenizerJson) return Tokenizer.fromJson(files.tokenizerJson, files.tokenizerConfig, files.chatTemplate, files.dir);
  return undefined;
}

/** The loaded model's tokenizer, or a ModelError saying the command needs one. */
export function requireTokenizer(loaded: LoadedModel): Tokenizer {
  if (!loaded.tokenizer) throw missingTokenizer(loaded.dir);
  return loaded.tokenizer;
}

const missingTokenizer = (dir: string) => {
  const what = dir.toLowerCase().endsWith('.gguf') ? 'tokenizer in its metadata (tokenizer.ggml.*)' : 'tokenizer.json';
  return new ModelError(`${dir}: no ${what}, which this command needs`);
};
