/**
 * A Hugging Face model folder's files, read and validated, with nothing loaded that is not
 * needed yet (tensors stay in their files behind a TensorSource). The folder comes as a Folder
 * (readable-file.ts): a directory on Node (model-dir.ts opens it by path), or files a browser
 * picked or fetched. A .gguf file stands for a whole folder (gguf-model.ts) and gives the
 * same ModelDir.
 *
 *   config.json                      required; parsed by parseLlamaConfig
 *   model.safetensors                the weights, or, when sharded,
 *   model.safetensors.index.json     the index naming the shards beside it
 *   generation_config.json           optional; its eos_token_id joins config.json's
 *   tokenizer.json                   optional; only noted (the tokenizer reads it)
 *   tokenizer_config.json            optional; parsed, and its chat_template picked out
 *   chat_template.jinja              optional; newer checkpoints keep the template here, and it
 *                                    wins over tokenizer_config.json's, as in transformers
 *
 * The weights are checked against the config (checkTensors) before returning, so a mismatched
 * checkpoint fails here with the tensor's name, not later with garbage output.
 */
import { z } from 'zod';
import { FormatError } from '../errors.ts';
import { parseLlamaConfig, tokenIds, type LlamaConfig } from '../model/config.ts';
import { checkTensors } from '../model/weights.ts';
import { jsonObject, readFolderJson, readFolderText, type Folder } from '../format/readable-file.ts';
import { readSafetensors, readShardedSafetensors } from '../format/safetensors.ts';
import { failing, looseObject, parseWithSchema } from '../format/schema.ts';
import type { TensorSource } from '../format/tensor-source.ts';

export const TOKENIZER_FILE = 'tokenizer.json';

export interface ModelDir {
  /** The model folder, or the .gguf file. */
  dir: string;
  /** The folder the files are read from (absent for a .gguf file). */
  folder?: Folder;
  config: LlamaConfig;
  /** The checkpoint's tensors, already checked against `config`. Close when done. */
  tensors: TensorSource;
  /** End-of-sequence ids from config.json and generation_config.json, without duplicates. */
  eosTokenIds: number[];
  /** tokenizer.json's path, when the folder has one (`folder` opens it as TOKENIZER_FILE). */
  tokenizerFile?: string;
  /** The tokenizer.json object, already built: a GGUF file carries its tokenizer in metadata. */
  tokenizerJson?: Record<string, unknown>;
  tokenizerConfig?: Record<string, unknown>;
  chatTemplate?: string;
}

/** The model's tokenizer.json object: the one a GGUF file carries, or the folder's file read; undefined without. */
export function readTokenizerJson(files: ModelDir): Record<string, unknown> | undefined {
  if (files.tokenizerJson) return files.tokenizerJson;
  if (!files.folder || files.tokenizerFile === undefined) return undefined;
  return jsonObject(readFolderJson(files.folder, TOKENIZER_FILE), files.tokenizerFile);
}

/** generation_config.json: what ppd takes from it. */
const generationConfig = looseObject({ eos_token_id: tokenIds });

/** tokenizer_config.json's chat_template: a string, or a list of {name, template} (take "default", else the first). */
const chatTemplateField = z
  .union(
    [z.string(), z.array(z.object({ name: z.string(), template: z.string() })).min(1)],
    failing(() => 'must be a string or a non-empty list of {name, template}'),
  )
  .nullish()
  .transform((value) => (typeof value === 'string' || value == null ? (value ?? undefined) : (value.find((t) => t.name === 'default') ?? value[0]!).template));
const tokenizerConfigSchema = looseObject({ chat_template: chatTemplateField });

function openWeights(folder: Folder): TensorSource {
  if (folder.has('model.safetensors')) return readSafetensors(folder.open('model.safetensors'));
  if (folder.has('model.safetensors.index.json')) return readShardedSafetensors(folder, 'model.safetensors.index.json');
  const hint = folder.has('pytorch_model.bin') ? ' (PyTorch .bin weights are not supported; convert to safetensors)' : '';
  throw new FormatError(folder.path, `no model.safetensors or model.safetensors.index.json${hint}`);
}

/** Opens and validates the model folder. */
export function openModelFolder(folder: Folder): ModelDir {
  const configJson = readFolderJson(folder, 'config.json');
  const config = parseLlamaConfig(configJson, folder.nameOf('config.json'));
  const eos = [...config.eosTokenIds];

  if (folder.has('generation_config.json')) {
    const path = folder.nameOf('generation_config.json');
    eos.push(...parseWithSchema(generationConfig, readFolderJson(folder, 'generation_config.json'), { file: path }).eos_token_id);
  }

  let tokenizerConfig: Record<string, unknown> | undefined;
  let chatTemplate: string | undefined;
  if (folder.has('tokenizer_config.json')) {
    const path = folder.nameOf('tokenizer_config.json');
    tokenizerConfig = jsonObject(readFolderJson(folder, 'tokenizer_config.json'), path);
    chatTemplate = parseWithSchema(tokenizerConfigSchema, tokenizerConfig, { file: path }).chat_template;
  }
  if (folder.has('chat_template.jinja')) chatTemplate = readFolderText(folder, 'chat_template.jinja');

  const tensors = openWeights(folder);
  try {
    checkTensors(config, tensors);
  } catch (err) {
    tensors.close();
    throw err;
  }
  return {
    dir: folder.path,
    folder,
    config,
    tensors,
    eosTokenIds: [...new Set(eos)],
    tokenizerFile: folder.has(TOKENIZER_FILE) ? folder.nameOf(TOKENIZER_FILE) : undefined,
    tokenizerConfig,
    chatTemplate,
  };
}
