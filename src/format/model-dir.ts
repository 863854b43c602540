/**
 * Opening a Hugging Face model directory: the files ppd reads from it, validated, and nothing
 * loaded that is not needed yet (tensors stay on disk behind a TensorSource). A .gguf file stands
 * for a whole folder (gguf/open-model.ts) and gives the same ModelDir.
 *
 *   config.json                      required; parsed by parseLlamaConfig
 *   model.safetensors                the weights, or, when sharded,
 *   model.safetensors.index.json     the index naming the shards beside it
 *   generation_config.json           optional; its eos_token_id joins config.json's
 *   tokenizer.json                   optional; only its path is noted (the tokenizer reads it)
 *   tokenizer_config.json            optional; parsed, and its chat_template picked out
 *   chat_template.jinja              optional; newer checkpoints keep the template here, and it
 *                                    wins over tokenizer_config.json's, as in transformers
 *
 * The weights are checked against the config (checkTensors) before returning, so a mismatched
 * checkpoint fails here with the tensor's name, not later with garbage output.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError } from '../errors.ts';
import { z } from 'zod';
import { parseLlamaConfig, tokenIds, type LlamaConfig } from '../model/config.ts';
import { checkTensors } from '../model/weights.ts';
import { failing, looseObject, parseWithSchema } from './schema.ts';
import { readJsonFile, readJsonObject, readJsonWithSchema } from './text-file.ts';
import { openForReading, openSafetensors, openShardedSafetensors } from './file-io.ts';
import { readGgufModel } from './gguf/open-model.ts';
import type { TensorSource } from './tensor-source.ts';

export { readJsonFile } from './text-file.ts';

export interface ModelDir {
  /** The model folder, or the .gguf file. */
  dir: string;
  config: LlamaConfig;
  /** The checkpoint's tensors, already checked against `config`. Close when done. */
  tensors: TensorSource;
  /** End-of-sequence ids from config.json and generation_config.json, without duplicates. */
  eosTokenIds: number[];
  tokenizerFile?: string;
  /** The tokenizer.json object, already built: a GGUF file carries its tokenizer in metadata. */
  tokenizerJson?: Record<string, unknown>;
  tokenizerConfig?: Record<string, unknown>;
  chatTemplate?: string;
}

/** The model's tokenizer.json object: the one a GGUF file carries, or the folder's file read; undefined without. */
export function readTokenizerJson(files: ModelDir): Record<string, unknown> | undefined {
  return files.tokenizerJson ?? (files.tokenizerFile ? readJsonObject(files.tokenizerFile) : undefined);
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

function openWeights(dir: string): TensorSource {
  const single = join(dir, 'model.safetensors');
  if (existsSync(single)) return openSafetensors(single);
  const index = join(dir, 'model.safetensors.index.json');
  if (existsSync(index)) return openShardedSafetensors(index);
  const hint = existsSync(join(dir, 'pytorch_model.bin')) ? ' (PyTorch .bin weights are not supported; convert to safetensors)' : '';
  throw new FormatError(dir, `no model.safetensors or model.safetensors.index.json${hint}`);
}

/** Opens and validates the model directory (or .gguf file) `dir`. */
export function openModelDir(dir: string): ModelDir {
  const gguf = dir.toLowerCase().endsWith('.gguf');
  if (!existsSync(dir)) throw new FormatError(dir, gguf ? 'GGUF file not found' : 'model directory not found');
  if (!statSync(dir).isDirectory()) {
    if (gguf) return readGgufModel(openForReading(dir));
    throw new FormatError(dir, 'neither a model directory nor a .gguf file');
  }

  const configPath = join(dir, 'config.json');
  const config = parseLlamaConfig(readJsonFile(configPath), configPath);
  const eos = [...config.eosTokenIds];

  const generationPath = join(dir, 'generation_config.json');
  if (existsSync(generationPath)) eos.push(...readJsonWithSchema(generationConfig, generationPath).eos_token_id);

  const tokenizerPath = join(dir, 'tokenizer.json');
  const tokenizerConfigPath = join(dir, 'tokenizer_config.json');
  const tokenizerConfig = existsSync(tokenizerConfigPath) ? readJsonObject(tokenizerConfigPath) : undefined;
  let chatTemplate = tokenizerConfig && parseWithSchema(tokenizerConfigSchema, tokenizerConfig, { file: tokenizerConfigPath }).chat_template;
  const jinjaPath = join(dir, 'chat_template.jinja');
  if (existsSync(jinjaPath)) chatTemplate = readFileSync(jinjaPath, 'utf8');

  const tensors = openWeights(dir);
  try {
    checkTensors(config, tensors);
  } catch (err) {
    tensors.close();
    throw err;
  }
  return {
    dir,
    config,
    tensors,
    eosTokenIds: [...new Set(eos)],
    tokenizerFile: existsSync(tokenizerPath) ? tokenizerPath : undefined,
    tokenizerConfig,
    chatTemplate,
  };
}
