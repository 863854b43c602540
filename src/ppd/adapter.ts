/**
 * The prompt-token adapter: PPD's only trained parameters, N prompt tokens × Vt virtual tokens of
 * input embeddings [N·Vt, C], in one of two folder formats:
 *
 *   ppd's      adapter_config.json (`ppd.adapter/1`) + adapter.safetensors, bound to its base
 *              model by a hash of the base model's config;
 *   reference  the PPD reference implementation's (hmarkc/parallel-prompt-decoding) PEFT
 *              prompt-tuning folder: adapter_config.json with PEFT's PromptTuningConfig fields
 *              plus its PromptConfig's (num_special_tokens = N, virtual_tokens_per_special_token
 *              = Vt, vt_attention_type, aggregation_type, ...) and adapter_model.safetensors with
 *              one tensor "prompt_embeddings" [N·Vt, token_dim]. It names its base model only by
 *              base_model_name_or_path, so reading checks the shapes (token_dim, num_layers).
 *
 * Both keep the rows in the same order: prompt token i, virtual token j → row i·Vt + j (the
 * reference's get_prompt and position ids agree). `read` takes either; writing either is
 * adapter-files.ts's (Node). Not the trees (tree.ts, reference-trees.ts), not the training
 * (train/train-prompts.ts).
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { z } from 'zod';
import { FormatError, InputError, ModelError } from '../errors.ts';
import { readFolderJson, type Folder } from '../format/readable-file.ts';
import { readSafetensors } from '../format/safetensors.ts';
import { boolean, crossCheck, failing, integer, literal, looseObject, oneOf, orDefault, parseWithSchema, text } from '../format/schema.ts';
import { parameterCount, type LlamaConfig } from '../model/config.ts';
import { ATTENTION_VARIANTS, type AttentionVariant } from './prompt-mask.ts';
import { PROMPT_HEAD_BIAS, PROMPT_HEAD_KINDS, PROMPT_HEAD_PARENT_WEIGHT, PROMPT_HEAD_WEIGHT, type PromptHeadKind } from '../model/prompt-head.ts';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter.safetensors';
/** The reference's (PEFT's) weights file, and the pickle older PEFT versions wrote instead. */
export const PEFT_WEIGHTS = 'adapter_model.safetensors';
const PEFT_PICKLE = 'adapter_model.bin';
/** The tensor's name in both formats (PEFT's state-dict key for prompt learning). */
export const EMBEDDINGS = 'prompt_embeddings';

const ADAPTER_SCHEMA = 'ppd.adapter/1';

/** adapter_config.json (`ppd.adapter/1`); fields it does not name are kept as written. */
const adapterConfigSchema = looseObject({
  schema: literal(ADAPTER_SCHEMA),
  promptTokens: integer(1, Infinity, 'a positive integer'), // N
  virtualTokens: integer(1, Infinity, 'a positive integer'), // Vt
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
  /** A prompt head (model/prompt-head.ts: a residual block per prompt token before the LM head, reading the parent row too for 'residual-parent'), when trained with one. */
  head: oneOf(PROMPT_HEAD_KINDS, 'residual or residual-parent').optional(),
  /** Training record (steps, loss, data), when trained. */
  training: looseObject({}).optional(),
});

export type AdapterConfig = z.output<typeof adapterConfigSchema>;

const positive = () => integer(1, Infinity, 'a positive integer');
const off = () => orDefault(boolean(), false).refine((v) => !v, failing(() => 'true is not supported (ppd has no such head)'));

/**
 * The reference implementation's adapter_config.json: PEFT's PromptTuningConfig fields and its
 * PromptConfig's (prompt/model/model.py). Features ppd has no graph for are refused by name.
 * peft_type may be absent: the reference's own loader deletes it from the file.
 */
const peftConfigSchema = crossCheck(
  looseObject({
    peft_type: literal('PROMPT_TUNING').nullish(),
    num_virtual_tokens: positive(),
    token_dim: positive(),
    num_layers: positive().nullish(),
    num_special_tokens: positive(),
    virtual_tokens_per_special_token: orDefault(positive(), 1),
    vt_attention_type: orDefault(oneOf(ATTENTION_VARIANTS, 'ensemble, decoder or encoder'), 'decoder'),
    aggregation_type: orDefault(literal('mean'), 'mean'),
    num_exits: orDefault(integer(1, 1, '1 (ppd reads the last layer only)'), 1),
    use_custom_lm_head: off(),
    use_prefix_tuning: off(),
    base_model_name_or_path: z.string().nullish(),
    prompt_tuning_init_text: z.string().nullish(),
  }),
  (c, fail) => {
    const rows = c.num_special_tokens * c.virtual_tokens_per_special_token;
    if (c.num_virtual_tokens !== rows) fail(['num_virtual_tokens'], `(${c.num_virtual_tokens}) must be num_special_tokens × virtual_tokens_per_special_token (${rows})`);
  },
);

type PeftConfig = z.output<typeof peftConfigSchema>;

/** Whether an adapter_config.json object is the reference's (PEFT) rather than ppd's. */
function isPeftConfig(raw: unknown): boolean {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return false;
  const r = raw as Record<string, unknown>;
  return r.schema === undefined && ('peft_type' in r || 'num_special_tokens' in r || 'num_virtual_tokens' in r);
}

/** The folder's adapter_config.json parsed as JSON, after checking it is there. */
function adapterConfigJson(folder: Folder): unknown {
  if (!folder.has(ADAPTER_CONFIG)) throw new FormatError(folder.path, `no ${ADAPTER_CONFIG}: not an adapter folder`);
  return readFolderJson(folder, ADAPTER_CONFIG);
}

function readPeftConfig(folder: Folder, raw: unknown): PeftConfig {
  return parseWithSchema(peftConfigSchema, raw, { file: folder.nameOf(ADAPTER_CONFIG) });
}

/** N, Vt and the attention rule of an adapter folder of either format, without its weights or a base model. */
export function readAdapterShape(folder: Folder): { promptTokens: number; virtualTokens: number; attention: AttentionVariant } {
  const raw = adapterConfigJson(folder);
  if (!isPeftConfig(raw)) return readAdapterConfig(folder);
  const peft = readPeftConfig(folder, raw);
  return { promptTokens: peft.num_special_tokens, virtualTokens: peft.virtual_tokens_per_special_token, attention: peft.vt_attention_type };
}

/**
 * adapter_config.json in the reference's format (its PromptDecoder.save_pretrained writes the
 * same fields), for `adapter` on `base`, naming `baseModelName`.
 */
export function peftAdapterConfig(adapter: PromptAdapter, base: LlamaConfig, baseModelName: string): Record<string, unknown> {
  const { promptTokens: N, virtualTokens: Vt, attention, initText } = adapter.config;
  return {
    auto_mapping: null,
    base_model_name_or_path: baseModelName,
    inference_mode: true,
    num_attention_heads: base.numHeads,
    num_layers: base.numLayers,
    num_transformer_submodules: 1,
    num_virtual_tokens: N * Vt,
    peft_type: 'PROMPT_TUNING',
    prompt_tuning_init: 'TEXT',
    prompt_tuning_init_text: initText,
    revision: null,
    task_type: 'CAUSAL_LM',
    token_dim: adapter.config.baseModel.hiddenSize,
    tokenizer_kwargs: null,
    tokenizer_name_or_path: baseModelName,
    num_special_tokens: N,
    virtual_tokens_per_special_token: Vt,
    use_cache: true,
    num_exits: 1,
    use_custom_lm_head: false,
    use_prefix_tuning: false,
    prefix_virtual_tokens: null,
    vt_attention_type: attention,
    aggregation_type: 'mean',
  };
}

/**
 * N when the folder's adapter has a prompt head, else undefined: a model that decodes with the
 * adapter must be opened with `promptHead: N` (its graph takes the head as inputs). The
 * reference's PEFT adapters have none.
 */
export function adapterPromptHead(folder: Folder): number | undefined {
  const raw = adapterConfigJson(folder);
  if (isPeftConfig(raw)) return undefined;
  const config = readAdapterConfig(folder);
  return config.head ? config.promptTokens : undefined;
}

/** Reads and checks the adapter folder's adapter_config.json (no weights, no base-model check). */
export function readAdapterConfig(folder: Folder): AdapterConfig {
  return parseWithSchema(adapterConfigSchema, adapterConfigJson(folder), { file: folder.nameOf(ADAPTER_CONFIG) });
}

/**
 * The config as the hash sees it: the fields LlamaConfig had before the model families came
 * (RoPE as `ropeScalingFactor`), and each later field only where it differs from plain LLaMA, so
 * that adapters trained before keep their hash. Values are flat (nested objects as JSON text).
 * `withTokenIds`: the hash adapters recorded before bos/eos ids left it.
 */
function hashedConfig(c: LlamaConfig, withTokenIds: boolean): Record<string, unknown> {
  const { ropeScaling, bias, qkNorm, slidingWindow, bosTokenId, eosTokenIds, ...rest } = c;
  return {
    ...rest,
    ...(withTokenIds ? { bosTokenId, eosTokenIds } : {}),
    ropeScalingFactor: ropeScaling.type === 'linear' ? ropeScaling.factor : 1,
    ...(ropeScaling.type === 'llama3' || ropeScaling.type === 'factors' ? { ropeScaling: JSON.stringify(ropeScaling) } : {}),
    ...(bias.qkv || bias.output || bias.mlp ? { bias: JSON.stringify(bias) } : {}),
    ...(qkNorm ? { qkNorm } : {}),
    ...(slidingWindow !== undefined ? { slidingWindow } : {}),
  };
}

function hashOf(hashed: Record<string, unknown>): string {
  const canonical = JSON.stringify(hashed, Object.keys(hashed).sort());
  return bytesToHex(sha256(new TextEncoder().encode(canonical))).slice(0, 16);
}

/**
 * A stable hash of the base model's architecture: an adapter only fits the config it was trained
 * on. Token ids are not part of it: the same model as a GGUF file names one eos id where its
 * config.json may list three (Llama 3), and the prompt tokens' meaning does not depend on them.
 */
export function configHash(c: LlamaConfig): string {
  return hashOf(hashedConfig(c, false));
}

/** Every hash an adapter or hardware profile made for `c` may carry: configHash, and the older one with token ids. */
export function configHashes(c: LlamaConfig): string[] {
  return [configHash(c), hashOf(hashedConfig(c, true))];
}

/** A prompt head's parameters: weight [N, C, C], bias [N, C], and for 'residual-parent' parentWeight [N, C, C] (model/prompt-head.ts). */
export interface PromptHead {
  weight: Float32Array;
  bias: Float32Array;
  parentWeight?: Float32Array;
}

export class PromptAdapter {
  constructor(
    readonly config: AdapterConfig,
    /** [N·Vt, C] */
    readonly embeddings: Float32Array,
    readonly head?: PromptHead,
  ) {
    const rows = config.promptTokens * config.virtualTokens;
    const C = config.baseModel.hiddenSize;
    if (embeddings.length !== rows * C) {
      throw new ModelError(`adapter embeddings hold ${embeddings.length} floats, expected ${rows}×${C}`);
    }
    if ((config.head !== undefined) !== (head !== undefined)) throw new ModelError(`adapter config ${config.head ? 'names a prompt head, but none was given' : 'names no prompt head, but one was given'}`);
    const N = config.promptTokens;
    if (head && (head.weight.length !== N * C * C || head.bias.length !== N * C)) {
      throw new ModelError(`adapter prompt head holds ${head.weight.length} + ${head.bias.length} floats, expected ${N}×${C}×${C} + ${N}×${C}`);
    }
    if (head && (config.head === 'residual-parent') !== (head.parentWeight !== undefined)) throw new ModelError(`adapter config names a ${config.head} prompt head, but its parent weight is ${head.parentWeight ? 'there' : 'missing'}`);
    if (head?.parentWeight && head.parentWeight.length !== N * C * C) throw new ModelError(`adapter prompt head's parent weight holds ${head.parentWeight.length} floats, expected ${N}×${C}×${C}`);
  }

  /** The trainable parameters by graph name (train/prompt-graph.ts): views of this adapter's arrays. */
  parameters(): Map<string, Float32Array> {
    const params = new Map([[EMBEDDINGS, this.embeddings]]);
    if (this.head) {
      params.set(PROMPT_HEAD_WEIGHT, this.head.weight);
      params.set(PROMPT_HEAD_BIAS, this.head.bias);
      if (this.head.parentWeight) params.set(PROMPT_HEAD_PARENT_WEIGHT, this.head.parentWeight);
    }
    return params;
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

  /** The adapter's trained floats: the embeddings and, with a head, its weights. */
  get trainableParameters(): number {
    return [...this.parameters().values()].reduce((n, p) => n + p.length, 0);
  }

  /** Trainable parameters, and their share of the base model's parameters. */
  parameterShare(base: LlamaConfig): { parameters: number; share: number } {
    const parameters = this.trainableParameters;
    return { parameters, share: parameters / parameterCount(base) };
  }

  /**
   * A fresh adapter whose rows are the base embeddings of `initText`'s tokens, truncated, or
   * repeated cyclically when the text has fewer tokens than N·Vt rows (PPD.md section 2).
   */
  static initialise(
    base: LlamaConfig,
    /**
     * The embedding table [V, C], or a lookup giving the rows [ids.length, C] of ids
     * (LlamaModel.embed: a quantized table is never widened whole).
     */
    embed: Float32Array | ((ids: number[]) => Float32Array),
    initIds: number[],
    options: { promptTokens: number; virtualTokens: number; attention: AttentionVariant; initText: string; head?: PromptHeadKind },
  ): PromptAdapter {
    const { promptTokens: N, virtualTokens: Vt } = options;
    if (!(Number.isInteger(N) && N >= 1 && N <= 64)) throw new InputError(`prompt tokens must be an integer in 1..64, got ${N}`);
    if (!(Number.isInteger(Vt) && Vt >= 1 && Vt <= 64)) throw new InputError(`virtual tokens must be an integer in 1..64, got ${Vt}`);
    if (initIds.length === 0) throw new InputError('the initialisation text has no tokens');
    const C = base.hiddenSize;
    const ids = Array.from({ length: N * Vt }, (_, r) => initIds[r % initIds.length]!);
    const embeddings = typeof embed === 'function' ? embed(ids) : new Float32Array(N * Vt * C);
    if (typeof embed !== 'function') ids.forEach((id, r) => embeddings.set(embed.subarray(id * C, (id + 1) * C), r * C));
    return new PromptAdapter(
      {
        schema: ADAPTER_SCHEMA,
        promptTokens: N,
        virtualTokens: Vt,
        attention: options.attention,
        baseModel: { configHash: configHash(base), modelType: base.modelType, hiddenSize: C, vocabSize: base.vocabSize, numLayers: base.numLayers },
        initText: options.initText,
        ...(options.head ? { head: options.head } : {}),
      },
      embeddings,
      // A zero head is the identity (h + SiLU(0) = h): training starts from plain prompt tokens.
      options.head ? { weight: new Float32Array(N * C * C), bias: new Float32Array(N * C), ...(options.head === 'residual-parent' ? { parentWeight: new Float32Array(N * C * C) } : {}) } : undefined,
    );
  }

  /**
   * Reads an adapter folder of either format and checks that it fits `base`: ppd's by the config
   * hash, the reference's by its shapes. A mismatch is a clear error.
   */
  static read(folder: Folder, base: LlamaConfig): PromptAdapter {
    const dir = folder.path;
    const raw = adapterConfigJson(folder);
    if (isPeftConfig(raw)) return PromptAdapter.readPeft(folder, raw, base);
    const config = readAdapterConfig(folder);
    const expected = configHash(base);
    if (!configHashes(base).includes(config.baseModel.configHash)) {
      throw new ModelError(
        `${dir}: this adapter was trained for another base model (config hash ${config.baseModel.configHash}, ` +
          `hidden ${config.baseModel.hiddenSize}, vocab ${config.baseModel.vocabSize}); the loaded model's hash is ${expected}`,
      );
    }
    const N = config.promptTokens;
    const C = base.hiddenSize;
    const embeddings = readEmbeddings(folder, ADAPTER_WEIGHTS, N * config.virtualTokens, C);
    const head = config.head
      ? {
          weight: readTensor(folder, ADAPTER_WEIGHTS, PROMPT_HEAD_WEIGHT, [N, C, C]),
          bias: readTensor(folder, ADAPTER_WEIGHTS, PROMPT_HEAD_BIAS, [N, C]),
          ...(config.head === 'residual-parent' ? { parentWeight: readTensor(folder, ADAPTER_WEIGHTS, PROMPT_HEAD_PARENT_WEIGHT, [N, C, C]) } : {}),
        }
      : undefined;
    return new PromptAdapter(config, embeddings, head);
  }

  /** The reference's folder, as a PromptAdapter bound to `base` (whose shapes it must fit). */
  private static readPeft(folder: Folder, raw: unknown, base: LlamaConfig): PromptAdapter {
    const configFile = folder.nameOf(ADAPTER_CONFIG);
    const peft = readPeftConfig(folder, raw);
    const misfit = (field: string, value: number, what: string, expected: number) =>
      new ModelError(`${configFile}: field "${field}" is ${value}, but the loaded model's ${what} is ${expected}: this adapter was trained for another base model (${peft.base_model_name_or_path ?? 'unnamed'})`);
    if (peft.token_dim !== base.hiddenSize) throw misfit('token_dim', peft.token_dim, 'hidden size', base.hiddenSize);
    if (peft.num_layers != null && peft.num_layers !== base.numLayers) throw misfit('num_layers', peft.num_layers, 'layer count', base.numLayers);
    if (!folder.has(PEFT_WEIGHTS) && folder.has(PEFT_PICKLE)) {
      throw new FormatError(
        folder.nameOf(PEFT_PICKLE),
        `is a PyTorch pickle, which ppd does not read (it can run code); convert it to ${PEFT_WEIGHTS}, e.g. python -c "import torch; from safetensors.torch import save_file; save_file(torch.load('${PEFT_PICKLE}'), '${PEFT_WEIGHTS}')"`,
      );
    }
    const N = peft.num_special_tokens;
    const Vt = peft.virtual_tokens_per_special_token;
    const config: AdapterConfig = {
      schema: ADAPTER_SCHEMA,
      promptTokens: N,
      virtualTokens: Vt,
      attention: peft.vt_attention_type,
      baseModel: { configHash: configHash(base), modelType: base.modelType, hiddenSize: base.hiddenSize, vocabSize: base.vocabSize, numLayers: base.numLayers },
      initText: peft.prompt_tuning_init_text ?? '',
      training: { format: 'PEFT prompt tuning (PPD reference implementation)', base: peft.base_model_name_or_path ?? undefined },
    };
    return new PromptAdapter(config, readEmbeddings(folder, PEFT_WEIGHTS, N * Vt, base.hiddenSize));
  }
}

/** The [rows, C] "prompt_embeddings" tensor of the folder's safetensors file `name` (F32, F16 or BF16). */
function readEmbeddings(folder: Folder, name: string, rows: number, C: number): Float32Array {
  return readTensor(folder, name, EMBEDDINGS, [rows, C]);
}

/** Tensor `tensor` of the folder's safetensors file `name`, which must have shape `dims`. */
function readTensor(folder: Folder, name: string, tensor: string, dims: number[]): Float32Array {
  const weights = readSafetensors(folder.open(name));
  try {
    const info = weights.list().find((t) => t.name === tensor);
    if (!info || info.shape.length !== dims.length || info.shape.some((d, i) => d !== dims[i])) {
      const found = info ? `[${info.shape}]` : `none (it holds ${weights.list().map((t) => `"${t.name}"`).join(', ') || 'no tensors'})`;
      throw new FormatError(folder.nameOf(name), `tensor "${tensor}" must have shape [${dims.join(', ')}], found ${found}`);
    }
    return weights.readF32(tensor);
  } finally {
    weights.close();
  }
}
