/**
 * LlamaConfig: the few numbers that define a LLaMA-family model, parsed and validated from a
 * Hugging Face `config.json`. Not the weights, not the tokenizer.
 *
 * Supported, as transformers reads them (one section per family below):
 *   llama    LLaMA 1/2/3.x, SmolLM2, TinyLlama: grouped-query attention, explicit head_dim,
 *            rope_scaling "linear" and "llama3", attention_bias (q/k/v/o) and mlp_bias
 *   mistral  LLaMA with sliding_window (transformers' default 4096 when the key is absent)
 *   qwen2    Qwen2/Qwen2.5: LLaMA with q/k/v biases (o_proj has none); use_sliding_window false
 *   qwen3    Qwen3: per-head RMSNorm of q and k before RoPE, head_dim (default 128) independent
 *            of hidden_size, attention_bias on q/k/v/o
 * RoPE: rope_theta + rope_scaling, or rope_parameters (transformers 5 writes `{rope_type,
 * rope_theta, ...}` there instead). Anything else is a ModelError naming the field, so an
 * unsupported checkpoint fails at load, not with garbage output.
 *
 * How to add a family (a new `model_type`) or a RoPE scaling (a new `rope_type`): config.json is
 * read through zod schemas (format/schema.ts), one per family, in CONFIG_FAMILIES below. A family
 * that is LLaMA plus a few fields extends `llamaFields` (`{ ...llamaFields, extra: ... }`), adds
 * its checks to `llamaChecks` or its own `crossCheck`, and maps to LlamaConfig with
 * `toLlamaConfig` plus its own fields; a RoPE scaling is one more member of ROPE_SCALINGS (and of
 * RopeScaling in rope.ts, which computes the frequencies).
 * Family differences stay here (and in the graph), never in decoding or serving code.
 */
import { z } from 'zod';
import { ModelError } from '../errors.ts';
import { boolean, crossCheck, failing, type Fail, integer, looseObject, orDefault, parseWithSchema, positiveNumber, shown } from '../format/schema.ts';
import type { RopeScaling } from './rope.ts';

export interface LlamaConfig {
  modelType: ConfigFamily;
  vocabSize: number;
  hiddenSize: number; // C
  intermediateSize: number; // F, the MLP's inner width
  numLayers: number;
  numHeads: number; // query heads
  numKvHeads: number; // key/value heads (GQA: numHeads % numKvHeads == 0)
  headDim: number; // D
  rmsNormEps: number;
  ropeTheta: number;
  /** How the rotary frequencies are scaled (rope.ts). */
  ropeScaling: RopeScaling;
  /** Which projections add a bias: q/k/v, o_proj, the MLP's gate/up/down. */
  bias: { qkv: boolean; output: boolean; mlp: boolean };
  /** RMSNorm over each head of q and k (weights [D]) before RoPE (Qwen3). */
  qkNorm: boolean;
  /** A position attends to the last `slidingWindow` positions, itself included (Mistral); absent: all. */
  slidingWindow?: number;
  tieWordEmbeddings: boolean;
  maxPositionEmbeddings: number;
  bosTokenId?: number;
  eosTokenIds: number[];
}

// ---------------------------------------------------------------------------------------------
// Fields (Hugging Face names)

const positiveInt = () => integer(1, Infinity, 'a positive integer');

/** A token id, a list of ids, or absent/null (no ids); read as a list. Also generation_config.json's. */
export const tokenIds = orDefault(
  z.union([integer(0, Infinity, 'a token id'), z.array(integer(0, Infinity, 'a token id'))], failing((v) => `must be a token id or a list of ids, got ${shown(v)}`)),
  [],
).transform((ids) => (Array.isArray(ids) ? ids : [ids]));

const flag = () => orDefault(boolean(), false);

/** A flag ppd has no graph for when it is true. */
const notTrue = (why = 'true is not supported') => flag().refine((v) => !v, failing(() => why));

/** rope_theta inside rope_parameters (transformers 5); absent in rope_scaling. */
const ropeTheta = positiveNumber().nullish();

/**
 * rope_scaling / rope_parameters by their `rope_type` (older files say `type`; neither means
 * "default", as in transformers): the scaling, and rope_theta when the object carries it.
 */
const ROPE_SCALINGS = [
  looseObject({ rope_type: z.literal('default'), rope_theta: ropeTheta }).transform((s) => ({ theta: s.rope_theta, scaling: { type: 'none' } as RopeScaling })),
  looseObject({ rope_type: z.literal('linear'), rope_theta: ropeTheta, factor: positiveNumber() }).transform((s) => ({
    theta: s.rope_theta,
    scaling: { type: 'linear', factor: s.factor } as RopeScaling,
  })),
  crossCheck(
    looseObject({
      rope_type: z.literal('llama3'),
      rope_theta: ropeTheta,
      factor: positiveNumber(),
      low_freq_factor: positiveNumber(),
      high_freq_factor: positiveNumber(),
      original_max_position_embeddings: integer(1, Infinity, 'a positive integer'),
    }),
    (s, fail) => {
      if (s.high_freq_factor <= s.low_freq_factor) fail(['high_freq_factor'], `(${s.high_freq_factor}) must be above low_freq_factor (${s.low_freq_factor})`);
    },
  ).transform((s) => ({
    theta: s.rope_theta,
    scaling: {
      type: 'llama3',
      factor: s.factor,
      lowFreqFactor: s.low_freq_factor,
      highFreqFactor: s.high_freq_factor,
      originalMaxPositionEmbeddings: s.original_max_position_embeddings,
    } as RopeScaling,
  })),
] as const;
const ROPE_TYPES = ROPE_SCALINGS.map((kind) => ('in' in kind ? kind.in : kind).shape.rope_type.value);

const ropeKind = z.preprocess(
  (v) => (isPlainObject(v) && v.rope_type === undefined ? { ...v, rope_type: v.type ?? 'default' } : v),
  z.discriminatedUnion('rope_type', [...ROPE_SCALINGS], failing((v) =>
    isPlainObject(v)
      ? `${shown(v.rope_type)} is not supported (supported: ${ROPE_TYPES.map((t) => `"${t}"`).join(', ')})`
      : `must be an object or null, got ${shown(v)}`,
  )),
);

/** rope_parameters nested per attention type (several RoPEs in one model) is not one ppd can run. */
const ropeParameters = z
  .unknown()
  .refine((v) => !(isPlainObject(v) && ('full_attention' in v || 'sliding_attention' in v)), failing(() => 'per attention type (full_attention, sliding_attention) is not supported'))
  .pipe(ropeKind.nullish())
  .optional();

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The fields of a LLaMA config.json that ppd reads; other fields are ignored. */
export const llamaFields = {
  vocab_size: positiveInt(),
  hidden_size: positiveInt(),
  intermediate_size: positiveInt(),
  num_hidden_layers: positiveInt(),
  num_attention_heads: positiveInt(),
  /** Absent: as many as query heads (no GQA). */
  num_key_value_heads: positiveInt().nullish(),
  /** Absent: hidden_size / num_attention_heads. */
  head_dim: positiveInt().nullish(),
  rms_norm_eps: orDefault(positiveNumber(), 1e-6),
  rope_theta: orDefault(positiveNumber(), 10000),
  rope_scaling: orDefault(ropeKind, { theta: undefined, scaling: { type: 'none' } }),
  rope_parameters: ropeParameters,
  tie_word_embeddings: flag(),
  max_position_embeddings: orDefault(positiveInt(), 2048),
  bos_token_id: tokenIds,
  eos_token_id: tokenIds,
  hidden_act: orDefault(z.literal('silu', failing((v) => `${shown(v)} is not supported (only "silu")`)), 'silu'),
  attention_bias: flag(),
  mlp_bias: flag(),
};

type LlamaFields = z.output<z.ZodObject<typeof llamaFields>>;

/** Checks between the fields of `llamaFields`: head counts and sizes that must divide. */
export function llamaChecks(c: LlamaFields, fail: Fail): void {
  const kvHeads = c.num_key_value_heads ?? c.num_attention_heads;
  if (c.num_attention_heads % kvHeads !== 0) {
    fail(['num_key_value_heads'], `(${kvHeads}) must divide num_attention_heads (${c.num_attention_heads})`);
  } else if (c.head_dim == null && c.hidden_size % c.num_attention_heads !== 0) {
    fail(['hidden_size'], `(${c.hidden_size}) must be divisible by num_attention_heads (${c.num_attention_heads})`);
  } else if (headDim(c) % 2 !== 0) {
    fail(['head_dim'], `must be even for rotary embeddings, got ${headDim(c)}`);
  }
}

const headDim = (c: LlamaFields) => c.head_dim ?? Math.floor(c.hidden_size / c.num_attention_heads);

/**
 * The LlamaConfig `llamaFields` describe, for a family whose model_type is `modelType`, with
 * LLaMA's meaning of the bias flags; families change what differs.
 */
export function toLlamaConfig(c: LlamaFields, modelType: ConfigFamily): LlamaConfig {
  // transformers 5 moved rope_theta and the scaling into rope_parameters; it wins when present.
  const rope = c.rope_parameters ?? c.rope_scaling;
  return {
    modelType,
    vocabSize: c.vocab_size,
    hiddenSize: c.hidden_size,
    intermediateSize: c.intermediate_size,
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    numKvHeads: c.num_key_value_heads ?? c.num_attention_heads,
    headDim: headDim(c),
    rmsNormEps: c.rms_norm_eps,
    ropeTheta: rope.theta ?? c.rope_theta,
    ropeScaling: rope.scaling,
    bias: { qkv: c.attention_bias, output: c.attention_bias, mlp: c.mlp_bias },
    qkNorm: false,
    tieWordEmbeddings: c.tie_word_embeddings,
    maxPositionEmbeddings: c.max_position_embeddings,
    bosTokenId: c.bos_token_id[0],
    eosTokenIds: c.eos_token_id,
  };
}

// ---------------------------------------------------------------------------------------------
// Families

/** The supported `model_type`s; each has a reader in CONFIG_FAMILIES. */
export const CONFIG_FAMILY_NAMES = ['llama', 'mistral', 'qwen2', 'qwen3'] as const;
export type ConfigFamily = (typeof CONFIG_FAMILY_NAMES)[number];

/** LLaMA 1/2/3.x (and models that reuse its model_type: SmolLM2, TinyLlama, ...). */
const llama = crossCheck(z.object(llamaFields), llamaChecks).transform((c) => toLlamaConfig(c, 'llama'));

/**
 * Mistral: LLaMA's fields without biases, plus sliding_window (MistralConfig's default 4096 when
 * the key is absent; null = attend to everything).
 */
const mistral = crossCheck(
  z.object({
    ...llamaFields,
    attention_bias: notTrue(),
    mlp_bias: notTrue(),
    sliding_window: positiveInt().nullish(),
  }),
  llamaChecks,
).transform((c) => ({ ...toLlamaConfig(c, 'mistral'), ...(c.sliding_window === null ? {} : { slidingWindow: c.sliding_window ?? 4096 }) }));

/** Qwen's sliding windows apply to some layers only (max_window_layers); ppd does not run them. */
const qwenWindowFields = {
  use_sliding_window: notTrue('true is not supported (ppd has no sliding-window attention for Qwen models)'),
  layer_types: z
    .array(z.string())
    .nullish()
    .refine((types) => !types?.includes('sliding_attention'), failing(() => 'with "sliding_attention" layers is not supported')),
};

/** Qwen2 / Qwen2.5: q/k/v projections always carry a bias, o_proj never. */
const qwen2 = crossCheck(z.object({ ...llamaFields, ...qwenWindowFields, attention_bias: notTrue(), mlp_bias: notTrue() }), llamaChecks).transform((c) => ({
  ...toLlamaConfig(c, 'qwen2'),
  bias: { qkv: true, output: false, mlp: false },
}));

/** Qwen3: RMSNorm over each head of q and k; head_dim defaults to 128 (Qwen3Config's default). */
const qwen3 = crossCheck(
  z.object({ ...llamaFields, ...qwenWindowFields, mlp_bias: notTrue(), head_dim: orDefault(positiveInt(), 128) }),
  llamaChecks,
).transform((c) => ({ ...toLlamaConfig(c, 'qwen3'), qkNorm: true }));

/** How each family reads config.json into a LlamaConfig. */
const CONFIG_FAMILIES: Record<ConfigFamily, z.ZodType<LlamaConfig>> = { llama, mistral, qwen2, qwen3 };

const familyNames = CONFIG_FAMILY_NAMES.map((name) => `"${name}"`);
const modelTypeField = looseObject({
  model_type: z.enum(CONFIG_FAMILY_NAMES, failing((v) =>
    `${shown(v)} is not supported (expected ${familyNames.length === 1 ? familyNames[0] : `${familyNames.slice(0, -1).join(', ')} or ${familyNames.at(-1)}`})`,
  )),
});

/** Validates a parsed config.json; `file` names it in errors (a ModelError: `file: field "x" ...`). */
export function parseLlamaConfig(raw: unknown, file = 'config.json'): LlamaConfig {
  const source = { file, error: (detail: string) => new ModelError(`${file}: ${detail}`) };
  const { model_type } = parseWithSchema(modelTypeField, raw, source);
  return parseWithSchema(CONFIG_FAMILIES[model_type], raw, source);
}

/** Parameter count of the model (embeddings, the LM head when untied, biases and q/k norms included). */
export function parameterCount(c: LlamaConfig): number {
  const [q, kv] = [c.numHeads * c.headDim, c.numKvHeads * c.headDim];
  const attention = c.hiddenSize * (2 * q + 2 * kv) + (c.bias.qkv ? q + 2 * kv : 0) + (c.bias.output ? c.hiddenSize : 0) + (c.qkNorm ? 2 * c.headDim : 0);
  const mlp = 3 * c.hiddenSize * c.intermediateSize + (c.bias.mlp ? 2 * c.intermediateSize + c.hiddenSize : 0);
  const norms = 2 * c.hiddenSize;
  const embeddings = c.vocabSize * c.hiddenSize * (c.tieWordEmbeddings ? 1 : 2);
  return c.numLayers * (attention + mlp + norms) + c.hiddenSize + embeddings;
}
