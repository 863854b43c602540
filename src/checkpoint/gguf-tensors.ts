/**
 * LLaMA-family tensors between Hugging Face and GGUF: names, and the row order of q_proj and
 * k_proj (llama.cpp's gguf-py tensor_mapping.py names, the same for "llama", "qwen2", "qwen3").
 *
 *   model.embed_tokens.weight                    token_embd.weight
 *   model.layers.N.input_layernorm.weight        blk.N.attn_norm.weight
 *   model.layers.N.self_attn.{q,k,v,o}_proj      blk.N.attn_{q,k,v,output}   (.weight and .bias)
 *   model.layers.N.self_attn.{q,k}_norm          blk.N.attn_{q,k}_norm       (Qwen3)
 *   model.layers.N.post_attention_layernorm      blk.N.ffn_norm
 *   model.layers.N.mlp.{gate,up,down}_proj       blk.N.ffn_{gate,up,down}    (.weight and .bias)
 *   model.norm.weight                            output_norm.weight
 *   lm_head.weight                               output.weight (absent when tied)
 *   (no Hugging Face tensor)                     rope_freqs.weight: Llama 3's RoPE factors [D/2]
 *
 * Shapes: GGUF lists dims ne0 first, so HF's [out, in] is GGUF's [in, out]; the bytes are the
 * same row-major matrix, one row per output.
 *
 * Row order: HF rotates each head's halves (dims i and i + D/2 pair up, "rotate_half"). llama.cpp's
 * "llama" architecture rotates adjacent pairs (2i, 2i + 1), so convert_hf_to_gguf.py permutes the
 * rows of q_proj (per query head) and k_proj (per key/value head), weights and biases: within a
 * head of D rows, HF row half·D/2 + i becomes GGUF row 2i + half. Reading undoes it, writing
 * applies it; whole rows move, so a quantized row moves as is. "qwen2" and "qwen3" rotate halves
 * as HF does (llama.cpp's NEOX rope): no permutation.
 */
import { layerTensorName, type LayerPart, EMBED_TOKENS, FINAL_NORM, LM_HEAD } from '../model/weights.ts';
import type { LlamaConfig } from '../model/config.ts';
import { ggufArchitecture } from './gguf-config.ts';

const GLOBAL_NAMES: [hf: string, gguf: string][] = [
  [EMBED_TOKENS, 'token_embd.weight'],
  [FINAL_NORM, 'output_norm.weight'],
  [LM_HEAD, 'output.weight'],
];

export const ROPE_FREQS = 'rope_freqs.weight';

const LAYER_NAMES: [LayerPart, string][] = [
  ['input_layernorm', 'attn_norm'],
  ['self_attn.q_proj', 'attn_q'],
  ['self_attn.k_proj', 'attn_k'],
  ['self_attn.v_proj', 'attn_v'],
  ['self_attn.q_norm', 'attn_q_norm'],
  ['self_attn.k_norm', 'attn_k_norm'],
  ['self_attn.o_proj', 'attn_output'],
  ['post_attention_layernorm', 'ffn_norm'],
  ['mlp.gate_proj', 'ffn_gate'],
  ['mlp.up_proj', 'ffn_up'],
  ['mlp.down_proj', 'ffn_down'],
];

const HF_LAYER = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/;
const GGUF_LAYER = /^blk\.(\d+)\.(.+)\.(weight|bias)$/;

/** The GGUF name of an HF tensor name; undefined for names outside the LLaMA layout. */
export function ggufTensorName(hfName: string): string | undefined {
  const global = GLOBAL_NAMES.find(([hf]) => hf === hfName);
  if (global) return global[1];
  const match = HF_LAYER.exec(hfName);
  const part = match && LAYER_NAMES.find(([hf]) => hf === match[2]);
  return part ? `blk.${match[1]}.${part[1]}.${match[3]}` : undefined;
}

/** The HF name of a GGUF tensor name; undefined for names outside the LLaMA layout. */
export function hfTensorName(ggufName: string): string | undefined {
  const global = GLOBAL_NAMES.find(([, gguf]) => gguf === ggufName);
  if (global) return global[0];
  const match = GGUF_LAYER.exec(ggufName);
  const part = match && LAYER_NAMES.find(([, gguf]) => gguf === match[2]);
  return part ? layerTensorName(Number(match[1]), part[0], match[3] as 'weight' | 'bias') : undefined;
}

/**
 * Heads whose rows llama.cpp reorders in this HF tensor (q_proj: query heads, k_proj: key/value
 * heads; weight and bias), for the "llama" architecture only.
 */
export function permutedHeads(hfName: string, config: LlamaConfig): number | undefined {
  if (ggufArchitecture(config) !== 'llama') return undefined;
  if (/\.self_attn\.q_proj\.(weight|bias)$/.test(hfName)) return config.numHeads;
  if (/\.self_attn\.k_proj\.(weight|bias)$/.test(hfName)) return config.numKvHeads;
  return undefined;
}

/** For each HF row of a q_proj/k_proj with `rows` rows in `heads` heads, the GGUF row holding it. */
export function ggufRowOfHfRow(rows: number, heads: number): Int32Array {
  const D = rows / heads;
  const half = D / 2;
  const order = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    const [head, k] = [Math.floor(r / D), r % D];
    order[r] = head * D + 2 * (k % half) + Math.floor(k / half);
  }
  return order;
}

/** out[r] = rows[from[r]]: a [rows, cols] matrix with its rows gathered. */
export function gatherRows(values: Float32Array, cols: number, from: ArrayLike<number>): Float32Array {
  const out = new Float32Array(values.length);
  for (let r = 0; r < from.length; r++) out.set(values.subarray(from[r] * cols, (from[r] + 1) * cols), r * cols);
  return out;
}

/** The inverse permutation: inverse[order[i]] = i. */
export function invert(order: ArrayLike<number>): Int32Array {
  const inverse = new Int32Array(order.length);
  for (let i = 0; i < order.length; i++) inverse[order[i]] = i;
  return inverse;
}
