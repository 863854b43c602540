/**
 * Loading a model from disk for use: the checkpoint folder (format/), compiled to an ONNX
 * session (model/, runtime/), with its tokenizer when it has one. The one place that knows which
 * files make a model; every command goes through it.
 */
import { openModelDir } from './format/model-dir.ts';
import type { LlamaConfig } from './model/config.ts';
import { LlamaModel, type LoadOptions } from './model/llama-model.ts';
import { Tokenizer } from './tokenizer/tokenizer.ts';
import { ModelError } from './errors.ts';

export interface LoadedModel {
  dir: string;
  config: LlamaConfig;
  model: LlamaModel;
  /** Absent when the folder has no tokenizer.json (ids-only use, e.g. `ppd logits`). */
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
    if (options.needsTokenizer && !files.tokenizerFile) throw missingTokenizer(dir);
    const tokenizer = files.tokenizerFile
      ? Tokenizer.fromFiles(files.tokenizerFile, files.tokenizerConfig, files.chatTemplate)
      : undefined;
    if (tokenizer && tokenizer.vocabSize > files.config.vocabSize) {
      throw new ModelError(
        `${files.tokenizerFile}: the tokenizer knows ${tokenizer.vocabSize} tokens but the model's vocab_size is ${files.config.vocabSize}`,
      );
    }
    const model = await LlamaModel.load(files.config, files.tensors, options);
    const eosIds = [...new Set([...files.eosTokenIds, ...(tokenizer?.eosId != null ? [tokenizer.eosId] : [])])];
    return { dir, config: files.config, model, tokenizer, eosIds };
  } finally {
    files.tensors.close();
  }
}

/** The loaded model's tokenizer, or a ModelError saying the command needs one. */
export function requireTokenizer(loaded: LoadedModel): Tokenizer {
  if (!loaded.tokenizer) throw missingTokenizer(loaded.dir);
  return loaded.tokenizer;
}

const missingTokenizer = (dir: string) => new ModelError(`${dir}: no tokenizer.json, which this command needs`);
