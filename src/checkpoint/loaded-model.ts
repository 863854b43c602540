/**
 * A model ready to generate: the opened files (format/) made into a LlamaModel on a Runtime,
 * with its tokenizer and end-of-generation ids. Platform-free: load.ts does it on Node from a
 * path, the browser worker from fetched or picked files.
 */
import { ModelError } from '../errors.ts';
import { TOKENIZER_FILE, type ModelDir } from './model-folder.ts';
import type { LlamaConfig } from '../model/config.ts';
import type { InferenceOptions } from '../model/llama-graph.ts';
import { LlamaModel } from '../model/llama-model.ts';
import type { Runtime } from '../runtime/session.ts';
import { Tokenizer } from '../tokenizer/tokenizer.ts';

export interface LoadedModel {
  dir: string;
  config: LlamaConfig;
  model: LlamaModel;
  /** Absent when the model has no tokenizer (ids-only use, e.g. `ppd logits`). */
  tokenizer?: Tokenizer;
  /** Token ids that end generation: config, generation_config and the tokenizer's EOS. */
  eosIds: number[];
}

export interface ModelFileOptions extends InferenceOptions {
  /** Fail before the (slow) compilation when the model has no tokenizer. */
  needsTokenizer?: boolean;
}

/** The opened model on `runtime`. Does not close `files.tensors` (the caller opened them). */
export async function modelFromFiles(files: ModelDir, runtime: Runtime, options: ModelFileOptions = {}): Promise<LoadedModel> {
  const { dir } = files;
  if (options.needsTokenizer && !files.tokenizerFile && !files.tokenizerJson) throw missingTokenizer(dir);
  const tokenizer = tokenizerOf(files);
  if (tokenizer && tokenizer.vocabSize > files.config.vocabSize) {
    throw new ModelError(
      `${files.tokenizerFile ?? dir}: the tokenizer knows ${tokenizer.vocabSize} tokens but the model's vocab_size is ${files.config.vocabSize}`,
    );
  }
  const model = await LlamaModel.open(files.config, files.tensors, runtime, options);
  const eosIds = [...new Set([...files.eosTokenIds, ...(tokenizer?.eosId != null ? [tokenizer.eosId] : [])])];
  return { dir, config: files.config, model, tokenizer, eosIds };
}

/**
 * The tokenizer of an opened model: its tokenizer.json file, or the one a GGUF file carries;
 * undefined without. A folder without tokenizer_config.json takes BOS from tokenizer.json's
 * post-processor (tokenizer.ts), and the BOS and EOS tokens it still lacks from config.json's
 * bos_token_id / eos_token_id, so documents in training and evaluation streams keep their
 * delimiters; whether encode() adds BOS stays the post-processor's decision, as in transformers.
 */
export function tokenizerOf(files: ModelDir): Tokenizer | undefined {
  const tokenizer = files.folder && files.tokenizerFile ? Tokenizer.fromFile(files.folder.open(TOKENIZER_FILE), files.tokenizerConfig, files.chatTemplate) : undefined;
  if (tokenizer === undefined) {
    return files.tokenizerJson ? Tokenizer.fromJson(files.tokenizerJson, files.tokenizerConfig, files.chatTemplate, files.dir) : undefined;
  }
  if (files.tokenizerConfig !== undefined) return tokenizer;
  const named = (id: number | undefined) => (id === undefined ? undefined : tokenizer.idToToken(id));
  const bos = tokenizer.bosToken ?? named(files.config.bosTokenId);
  const eos = tokenizer.eosToken ?? named(files.config.eosTokenIds[0]);
  if (bos === tokenizer.bosToken && eos === tokenizer.eosToken) return tokenizer;
  const special: Record<string, string> = {};
  if (bos != null) special.bos_token = bos;
  if (eos != null) special.eos_token = eos;
  return Tokenizer.fromJson(tokenizer.source.tokenizerJson, special, files.chatTemplate, tokenizer.source.origin);
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
