/**
 * The tensors a LLaMA-family checkpoint must hold, with Hugging Face names and shapes derived from
 * the config (biases and q/k norms where the family has them), and the check that a source holds
 * exactly those (no missing, no unexpected, no misshapen tensor). Linear weights are stored
 * [out, in], as in PyTorch; a bias is [out].
 */
import { ModelError } from '../errors.ts';
import type { TensorSource } from '../format/tensor-source.ts';
import type { LlamaConfig } from './config.ts';

export const EMBED_TOKENS = 'model.embed_tokens.weight';
export const FINAL_NORM = 'model.norm.weight';
export const LM_HEAD = 'lm_head.weight';

/** `model.layers.N.<part>.weight` (or `.bias`). */
export function layerTensorName(layer: number, part: LayerPart, kind: 'weight' | 'bias' = 'weight'): string {
  return `model.layers.${layer}.${part}.${kind}`;
}

export type LayerPart =
  | 'input_layernorm'
  | 'self_attn.q_proj'
  | 'self_attn.k_proj'
  | 'self_attn.v_proj'
  | 'self_attn.q_norm'
  | 'self_attn.k_norm'
  | 'self_attn.o_proj'
  | 'post_attention_layernorm'
  | 'mlp.gate_proj'
  | 'mlp.up_proj'
  | 'mlp.down_proj';

/** The weight shapes of one layer; q_norm/k_norm only where the config has them (Qwen3). */
export function layerShapes(c: LlamaConfig): Partial<Record<LayerPart, number[]>> {
  const C = c.hiddenSize;
  const F = c.intermediateSize;
  return {
    input_layernorm: [C],
    'self_attn.q_proj': [c.numHeads * c.headDim, C],
    'self_attn.k_proj': [c.numKvHeads * c.headDim, C],
    'self_attn.v_proj': [c.numKvHeads * c.headDim, C],
    ...(c.qkNorm ? { 'self_attn.q_norm': [c.headDim], 'self_attn.k_norm': [c.headDim] } : {}),
    'self_attn.o_proj': [C, c.numHeads * c.headDim],
    post_attention_layernorm: [C],
    'mlp.gate_proj': [F, C],
    'mlp.up_proj': [F, C],
    'mlp.down_proj': [C, F],
  };
}

/** The projections of one layer that add a bias in this config, with the bias length (their output width). */
export function layerBiases(c: LlamaConfig): Partial<Record<LayerPart, number>> {
  const shapes = layerShapes(c);
  const biased: LayerPart[] = [
    ...(c.bias.qkv ? (['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'] as const) : []),
    ...(c.bias.output ? (['self_attn.o_proj'] as const) : []),
    ...(c.bias.mlp ? (['mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'] as const) : []),
  ];
  return Object.fromEntries(biased.map((part) => [part, shapes[part]![0]!]));
}

/** Every tensor name a checkpoint of this config must hold, with its shape. */
export function expectedTensors(c: LlamaConfig): Map<string, number[]> {
  const expected = new Map<string, number[]>();
  expected.set(EMBED_TOKENS, [c.vocabSize, c.hiddenSize]);
  const shapes = layerShapes(c);
  const biases = layerBiases(c);
  for (let layer = 0; layer < c.numLayers; layer++) {
    for (const [part, shape] of Object.entries(shapes) as [LayerPart, number[]][]) {
      expected.set(layerTensorName(layer, part), shape);
      const bias = biases[part];
      if (bias !== undefined) expected.set(layerTensorName(layer, part, 'bias'), [bias]);
    }
  }
  expected.set(FINAL_NORM, [c.hiddenSize]);
  if (!c.tieWordEmbeddings) expected.set(LM_HEAD, [c.vocabSize, c.hiddenSize]);
  return expected;
}

/** Rotary inverse-frequency buffers are derived, not weights; checkpoints sometimes carry them. */
function isIgnorable(name: string): boolean {
  return name.endsWith('.rotary_emb.inv_freq');
}

/** Throws a ModelError naming the first tensor that is missing, unexpected or misshapen. */
export function checkTensors(c: LlamaConfig, source: TensorSource): void {
  const expected = expectedTensors(c);
  const present = new Map(source.list().map((t) => [t.name, t]));
  for (const [name, shape] of expected) {
    const found = present.get(name);
    if (!found) {
      // A tied checkpoint may still carry lm_head; an untied one must.
      throw new ModelError(`${source.origin}: tensor "${name}" is missing (config expects shape [${shape}])`);
    }
    if (found.shape.length !== shape.length || found.shape.some((d, i) => d !== shape[i])) {
      throw new ModelError(
        `${source.origin}: tensor "${name}" has shape [${found.shape}], config expects [${shape}]`,
      );
    }
  }
  for (const name of present.keys()) {
    if (expected.has(name) || isIgnorable(name)) continue;
    if (name === LM_HEAD && c.tieWordEmbeddings) continue;
    throw new ModelError(`${source.origin}: unexpected tensor "${name}" for this config`);
  }
}
