/**
 * The prompt-token adapter: PPD's only trained parameters, N prompt tokens × V virtual tokens of
 * input embeddings [N·V, C], saved like a PEFT adapter (`adapter_config.json` +
 * `adapter.safetensors`) and bound to its base model by a hash of the base model's config.
 *
 * Row order of the embeddings: prompt token i, virtual token j → row i·V + j. Not the trees
 * (tree.ts), not the training (train/train-prompts.ts), not writing it to disk (adapter-files.ts).
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { z } from 'zod';
import { FormatError, InputError, ModelError } from '../errors.ts';
import { readFolderJson, type Folder } from '../format/readable-file.ts';
import { readSafetensors } from '../format/safetensors.ts';
import { integer, literal, looseObject, oneOf, parseWithSchema, text } from '../format/schema.ts';
import { parameterCount, type LlamaConfig } from '../model/config.ts';
import { ATTENTION_VARIANTS, type AttentionVariant } from './prompt-mask.ts';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter.safetensors';
export const EMBEDDINGS = 'prompt_embeddings';

const ADAPTER_SCHEMA = 'ppd.adapter/1';

/** adapter_config.json (`ppd.adapter/1`); fields it does not name are kept as written. */
const adapterConfigSchema = looseObject({
  schema: literal(ADAPTER_SCHEMA),
  promptTokens: integer(1, Infinity, 'a positive integer'), // N
  virtualTokens: integer(1, Infinity, 'a positive integer'), // V
  attention: oneOf(ATTENTION_VARIANTS, 'ensemble, decoder or encoder'),
  /** What the adapter was trained for: configHash must match the loaded model's. */
  baseModel: looseObject({
    configHash: text(),
    modelType: text(),
    hiddenSize: integer(1),
    vocabSize: integer(1),
    numLayers: integer(1),
  }, 'an object {configHash, modelType, hiddenSize, vocabSize, numLayers}'),
  /** The text whose token embeddings initialised the prompt tokens. */
  initText: text('a string', true),
  /** Training record (steps, loss, data), when trained. */
  training: looseObject({}).optional(),
});

export type AdapterConfig = z.output<typeof adapterConfigSchema>;

/** Reads and checks the adapter folder's adapter_config.json (no weights, no base-model check). */
export function readAdapterConfig(folder: Folder): AdapterConfig {
  if (!folder.has(ADAPTER_CONFIG)) throw new FormatError(folder.path, `no ${ADAPTER_CONFIG}: not a ppd adapter folder`);
  return parseWithSchema(adapterConfigSchema, readFolderJson(folder, ADAPTER_CONFIG), { file: folder.nameOf(ADAPTER_CONFIG) });
}

/**
 * The config as the hash sees it: the fields LlamaConfig had before the model families came
 * (RoPE as `ropeScalingFactor`), and each later field only where it differs from plain LLaMA, so
 * that adapters trained before keep their hash. Values are flat (nested objects as JSON text).
 */
function hashedConfig(c: LlamaConfig): Record<string, unknown> {
  const { ropeScaling, bias, qkNorm, slidingWindow, ...rest } = c;
  return {
    ...rest,
    ropeScalingFactor: ropeScaling.type === 'linear' ? ropeScaling.factor : 1,
    ...(ropeScaling.type === 'llama3' || ropeScaling.type === 'factors' ? { ropeScaling: JSON.stringify(ropeScaling) } : {}),
    ...(bias.qkv || bias.output || bias.mlp ? { bias: JSON.stringify(bias) } : {}),
    ...(qkNorm ? { qkNorm } : {}),
    ...(slidingWindow !== undefined ? { slidingWindow } : {}),
  };
}

/** A stable hash of the base model's architecture: an adapter only fits the config it was trained on. */
export function configHash(c: LlamaConfig): string {
  const hashed = hashedConfig(c);
  const canonical = JSON.stringify(hashed, Object.keys(hashed).sort());
  return bytesToHex(sha256(new TextEncoder().encode(canonical))).slice(0, 16);
}

export class PromptAdapter {
  constructor(
    readonly config: AdapterConfig,
    /** [N·V, C] */
    readonly embeddings: Float32Array,
  ) {
    const rows = config.promptTokens * config.virtualTokens;
    if (embeddings.length !== rows * config.baseModel.hiddenSize) {
      throw new ModelError(`adapter embeddings hold ${embeddings.length} floats, expected ${rows}×${config.baseModel.hiddenSize}`);
    }
  }

  get promptTokens(): number {
    return this.config.promptTokens;
  }

  get virtualTokens(): number {
    return this.config.virtualTokens;
  }

  /** Embedding row of prompt token i, virtual token j ([C], a view). */
  row(i: number, j: number): Float32Array {
    const C = this.config.baseModel.hiddenSize;
    const r = i * this.config.virtualTokens + j;
    return this.embeddings.subarray(r * C, (r + 1) * C);
  }

  /** Trainable parameters, and their share of the base model's parameters. */
  parameterShare(base: LlamaConfig): { parameters: number; share: number } {
    const parameters = this.embeddings.length;
    return { parameters, share: parameters / parameterCount(base) };
  }

  /**
   * A fresh adapter whose rows are the base embeddings of `initText`'s tokens, truncated, or
   * repeated cyclically when the text has fewer tokens than N·V rows (PPD.md section 2).
   */
  static initialise(
    base: LlamaConfig,
    embedTable: Float32Array,
    initIds: number[],
    options: { promptTokens: number; virtualTokens: number; attention: AttentionVariant; initText: string },
  ): PromptAdapter {
    const { promptTokens: N, virtualTokens: V } = options;
    if (!(Number.isInteger(N) && N >= 1 && N <= 64)) throw new InputError(`prompt tokens must be an integer in 1..64, got ${N}`);
    if (!(Number.isInteger(V) && V >= 1 && V <= 64)) throw new InputError(`virtual tokens must be an integer in 1..64, got ${V}`);
    if (initIds.length === 0) throw new InputError('the initialisation text has no tokens');
    const C = base.hiddenSize;
    const embeddings = new Float32Array(N * V * C);
    for (let r = 0; r < N * V; r++) {
      const id = initIds[r % initIds.length]!;
      embeddings.set(embedTable.subarray(id * C, (id + 1) * C), r * C);
    }
    return new PromptAdapter(
      {
        schema: ADAPTER_SCHEMA,
        promptTokens: N,
        virtualTokens: V,
        attention: options.attention,
        baseModel: { configHash: configHash(base), modelType: base.modelType, hiddenSize: C, vocabSize: base.vocabSize, numLayers: base.numLayers },
        initText: options.initText,
      },
      embeddings,
    );
  }

  /** Reads an adapter folder and checks that it was made for `base`; a mismatch is a clear error. */
  static read(folder: Folder, base: LlamaConfig): PromptAdapter {
    const dir = folder.path;
    const config = readAdapterConfig(folder);
    const expected = configHash(base);
    if (config.baseModel.configHash !== expected) {
      throw new ModelError(
        `${dir}: this adapter was trained for another base model (config hash ${config.baseModel.configHash}, ` +
          `hidden ${config.baseModel.hiddenSize}, vocab ${config.baseModel.vocabSize}); the loaded model's hash is ${expected}`,
      );
    }
    const weights = readSafetensors(folder.open(ADAPTER_WEIGHTS));
    try {
      const info = weights.list().find((t) => t.name === EMBEDDINGS);
      const rows = config.promptTokens * config.virtualTokens;
      if (!info || info.shape[0] !== rows || info.shape[1] !== base.hiddenSize) {
        throw new FormatError(folder.nameOf(ADAPTER_WEIGHTS), `tensor "${EMBEDDINGS}" must have shape [${rows}, ${base.hiddenSize}]`);
      }
      return new PromptAdapter(config, weights.readF32(EMBEDDINGS));
    } finally {
      weights.close();
    }
  }
}
