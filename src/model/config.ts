/**
 * LlamaConfig: the few numbers that define a LLaMA-family model, parsed and validated from a
 * Hugging Face `config.json`. Not the weights, not the tokenizer.
 *
 * Supported: model_type `llama` and `mistral` (same graph), grouped-query attention, rope_theta,
 * linear rope_scaling, tie_word_embeddings, rms_norm_eps. Anything else is a ModelError naming
 * the field, so an unsupported checkpoint fails at load, not with garbage output.
 *
 * How to add a family (a new `model_type`) or a RoPE scaling (a new `rope_type`): config.json is
 * read through zod schemas (format/schema.ts), one per family, in CONFIG_FAMILIES below. A family
 * that is LLaMA plus a few fields extends `llamaFields` (`{ ...llamaFields, extra: ... }`), adds
 * its checks to `llamaChecks` or its own `crossCheck`, and maps to LlamaConfig with
 * `toLlamaConfig` plus its own fields; a RoPE scaling is one more member of `ropeScaling`.
 * Family differences stay here (and in the graph), never in decoding or serving code.
 */
import { z } from 'zod';
import { ModelError } from '../errors.ts';
import { crossCheck, failing, type Fail, integer, looseObject, orDefault, parseWithSchema, positiveNumber, shown } from '../format/schema.ts';

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
  /** Linear RoPE scaling: positions are divided by this factor (1 = none). */
  ropeScalingFactor: number;
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

const flag = () => orDefault(z.boolean(failing((v) => `must be true or false, got ${shown(v)}`)), false);

/** A flag ppd has no graph for when it is true (biases). */
const notTrue = flag().refine((v) => !v, failing(() => 'true is not supported'));

/**
 * rope_scaling by its `rope_type` (older files say `type`): what each kind contributes to
 * LlamaConfig. Absent or null means no scaling.
 */
const ROPE_SCALINGS = [
  looseObject({ rope_type: z.literal('default') }).transform(() => ({ ropeScalingFactor: 1 })),
  looseObject({ rope_type: z.literal('linear'), factor: positiveNumber() }).transform((s) => ({ ropeScalingFactor: s.factor })),
] as const;
const ROPE_TYPES = ROPE_SCALINGS.map((kind) => kind.in.shape.rope_type.value);

const ropeScaling = orDefault(
  z.preprocess(
    // `type` is the older name of `rope_type`; the union below is keyed on the newer one.
    (v) => (isPlainObject(v) && v.rope_type === undefined ? { ...v, rope_type: v.type } : v),
    z.discriminatedUnion('rope_type', [...ROPE_SCALINGS], failing((v) =>
      isPlainObject(v)
        ? `${shown(v.rope_type)} is not supported (supported: ${ROPE_TYPES.map((t) => `"${t}"`).join(', ')})`
        : `must be an object or null, got ${shown(v)}`,
    )),
  ),
  { ropeScalingFactor: 1 },
);

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
  rope_scaling: ropeScaling,
  tie_word_embeddings: flag(),
  max_position_embeddings: orDefault(positiveInt(), 2048),
  bos_token_id: tokenIds,
  eos_token_id: tokenIds,
  hidden_act: orDefault(z.literal('silu', failing((v) => `${shown(v)} is not supported (only "silu")`)), 'silu'),
  attention_bias: notTrue,
  mlp_bias: notTrue,
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

/** The LlamaConfig `llamaFields` describe, for a family whose model_type is `modelType`. */
export function toLlamaConfig(c: LlamaFields, modelType: ConfigFamily): LlamaConfig {
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
    ropeTheta: c.rope_theta,
    ropeScalingFactor: c.rope_scaling.ropeScalingFactor,
    tieWordEmbeddings: c.tie_word_embeddings,
    maxPositionEmbeddings: c.max_position_embeddings,
    bosTokenId: c.bos_token_id[0],
    eosTokenIds: c.eos_token_id,
  };
}

// ---------------------------------------------------------------------------------------------
// Families

/** The supported `model_type`s; each has a reader in CONFIG_FAMILIES. */
export const CONFIG_FAMILY_NAMES = ['llama', 'mistral'] as const;
export type ConfigFamily = (typeof CONFIG_FAMILY_NAMES)[number];

const llamaFamily = (modelType: ConfigFamily) =>
  crossCheck(z.object(llamaFields), llamaChecks).transform((c) => toLlamaConfig(c, modelType));

/** How each family reads config.json into a LlamaConfig. */
const CONFIG_FAMILIES: Record<ConfigFamily, z.ZodType<LlamaConfig>> = {
  llama: llamaFamily('llama'),
  mistral: llamaFamily('mistral'), // the same graph as llama (ppd has no sliding window)
};

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

/** Parameter count of the model (embeddings, and the LM head when untied, included). */
export function parameterCount(c: LlamaConfig): number {
  const attention = c.hiddenSize * c.headDim * (2 * c.numHeads + 2 * c.numKvHeads);
  const mlp = 3 * c.hiddenSize * c.intermediateSize;
  const norms = 2 * c.hiddenSize;
  const embeddings = c.vocabSize * c.hiddenSize * (c.tieWordEmbeddings ? 1 : 2);
  return c.numLayers * (attention + mlp + norms) + c.hiddenSize + embeddings;
}
