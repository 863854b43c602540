/**
 * Loading a model from disk for use on Node: the checkpoint folder or .gguf file (format/),
 * compiled to an ONNX session on ONNX Runtime's Node binding (model/, runtime/), with its
 * tokenizer when it has one (loaded-model.ts, which the browser shares). Every command goes
 * through it.
 */
import { openModelDir } from './model-dir.ts';
import type { TensorSource } from '../format/tensor-source.ts';
import { modelFromFiles, tokenizerOf, type LoadedModel, type ModelFileOptions } from './loaded-model.ts';
import type { LlamaConfig } from '../model/config.ts';
import type { InferenceOptions } from '../model/llama-graph.ts';
import { LlamaModel } from '../model/llama-model.ts';
import type { CompileOptions } from '../runtime/compile.ts';
import { nodeRuntime, type RuntimeOptions } from '../runtime/ort.ts';
import type { Tokenizer } from '../tokenizer/tokenizer.ts';

export { requireTokenizer, tokenizerOf, type LoadedModel } from './loaded-model.ts';

/** How a model is compiled and run on Node: threads, graph cache, weight quantization. */
export interface LoadOptions extends RuntimeOptions, CompileOptions, InferenceOptions {}

/** The model of these weights on ONNX Runtime's Node binding (graph compiled, or reused from the cache). */
export function loadLlamaModel(config: LlamaConfig, tensors: TensorSource, options: LoadOptions = {}): Promise<LlamaModel> {
  return LlamaModel.open(config, tensors, nodeRuntime(options), options);
}

export interface ModelLoadOptions extends LoadOptions, ModelFileOptions {}

export async function loadModel(dir: string, options: ModelLoadOptions = {}): Promise<LoadedModel> {
  const files = openModelDir(dir);
  try {
    return await modelFromFiles(files, nodeRuntime(options), options);
  } finally {
    files.tensors.close();
  }
}

/** The tokenizer of the model at `dir` (folder or .gguf), without compiling it; undefined when it has none. */
export function tokenizerAt(dir: string): Tokenizer | undefined {
  const files = openModelDir(dir);
  files.tensors.close();
  return tokenizerOf(files);
}
