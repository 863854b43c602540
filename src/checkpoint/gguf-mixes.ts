/**
 * llama.cpp's file types (llama-quantize's names: q8_0, q4_k_m, q5_k_m, ...) as the ggml type
 * each tensor of a LLaMA-architecture model is stored as. A "_M" or "_S" type is a mix: most
 * matrices take the base type, a few that hurt most when rounded take more bits. The rules
 * follow llama_tensor_get_type in llama.cpp's llama-quant.cpp for dense models (no experts, not
 * Falcon, no 70B special case) without an importance matrix:
 *
 *   output (the LM head, or the tied token table)  Q6_K (Q8_0 for q8_0, or rows not whole 256-blocks)
 *   v_proj    q2_k: Q4_K if 4+ query heads share a kv head, else Q3_K; q3_k_m: Q5_K in layers 0-1,
 *             else Q4_K; q3_k_l: Q5_K; q4_k_m, q5_k_m: Q6_K in "more bits" layers; q4_k_s: Q5_K in
 *             layers 0-3
 *   down_proj q2_k: Q3_K; q3_k_m: Q5_K in the first 1/16 of layers, else Q4_K; q3_k_l: Q5_K;
 *             q4_k_m, q5_k_m: Q6_K in "more bits" layers; q4_k_s: Q5_K in the first 1/8
 *   o_proj    q2_k: Q3_K; q3_k_m: Q4_K; q3_k_l: Q5_K
 *   the rest  the base type; 1-D tensors F32
 *
 * "More bits" layers are the first and last eighth and every third layer between. A matrix whose
 * rows are not whole blocks of its type falls back as llama.cpp does: Q2_K/Q3_K to Q4_0, Q4_K to
 * Q5_0, Q5_K to Q5_1, Q6_K to Q8_0, and rows not whole 32-blocks to F16.
 */
import { CODE_LAYOUTS, isQuantType } from '../format/gguf/codes.ts';
import type { WritableType } from '../format/gguf/quant.ts';
import type { LlamaConfig } from '../model/config.ts';
import { EMBED_TOKENS, LM_HEAD } from '../model/weights.ts';

/** llama.cpp's llama_ftype number of each file type ppd writes (general.file_type). */
export const FILE_TYPE_IDS = {
  F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q8_0: 7, Q5_0: 8, Q5_1: 9, Q2_K: 10, Q3_K_S: 11, Q3_K_M: 12, Q3_K_L: 13,
  Q4_K_S: 14, Q4_K_M: 15, Q5_K_S: 16, Q5_K_M: 17, Q6_K: 18, BF16: 32,
} as const;

export type FileType = keyof typeof FILE_TYPE_IDS;
export const FILE_TYPES = Object.keys(FILE_TYPE_IDS) as FileType[];

/** The type most matrices of a file type take. */
function baseType(fileType: FileType): WritableType {
  if (fileType.startsWith('Q3_K')) return 'Q3_K';
  if (fileType.startsWith('Q4_K')) return 'Q4_K';
  if (fileType.startsWith('Q5_K')) return 'Q5_K';
  return fileType as WritableType;
}

/** llama.cpp's use_more_bits: the first and last eighth of the layers, and every third between. */
export function usesMoreBits(layer: number, layers: number): boolean {
  const eighth = Math.floor(layers / 8);
  return layer < eighth || layer >= Math.floor((7 * layers) / 8) || (layer - eighth) % 3 === 2;
}

/** The layer index and part of a layer tensor's Hugging Face name ("model.layers.3.mlp.down_proj.weight"). */
function layerPart(name: string): { layer: number; part: string } | undefined {
  const match = /^model\.layers\.(\d+)\.(.+)\.weight$/.exec(name);
  return match ? { layer: Number(match[1]), part: match[2]! } : undefined;
}

/** The type before the shape fallback: the file type's rule for this tensor. */
function ruleType(name: string, fileType: FileType, config: LlamaConfig): WritableType {
  const base = baseType(fileType);
  const producesLogits = name === LM_HEAD || (config.tieWordEmbeddings && name === EMBED_TOKENS);
  if (producesLogits) return base === 'Q8_0' ? 'Q8_0' : 'Q6_K';
  const at = layerPart(name);
  if (!at) return base;
  const { layer, part } = at;
  const n = config.numLayers;
  if (part === 'self_attn.v_proj') {
    if (fileType === 'Q2_K') return config.numHeads / config.numKvHeads >= 4 ? 'Q4_K' : 'Q3_K';
    if (fileType === 'Q3_K_M') return layer < 2 ? 'Q5_K' : 'Q4_K';
    if (fileType === 'Q3_K_L') return 'Q5_K';
    if ((fileType === 'Q4_K_M' || fileType === 'Q5_K_M') && usesMoreBits(layer, n)) return 'Q6_K';
    if (fileType === 'Q4_K_S' && layer < 4) return 'Q5_K';
  } else if (part === 'mlp.down_proj') {
    if (fileType === 'Q2_K') return 'Q3_K';
    if (fileType === 'Q3_K_M') return layer < Math.floor(n / 16) ? 'Q5_K' : 'Q4_K';
    if (fileType === 'Q3_K_L') return 'Q5_K';
    if ((fileType === 'Q4_K_M' || fileType === 'Q5_K_M') && usesMoreBits(layer, n)) return 'Q6_K';
    if (fileType === 'Q4_K_S' && layer < Math.floor(n / 8)) return 'Q5_K';
  } else if (part === 'self_attn.o_proj') {
    if (fileType === 'Q2_K') return 'Q3_K';
    if (fileType === 'Q3_K_M') return 'Q4_K';
    if (fileType === 'Q3_K_L') return 'Q5_K';
  }
  return base;
}

const FALLBACK: Partial<Record<WritableType, WritableType>> = { Q2_K: 'Q4_0', Q3_K: 'Q4_0', Q4_K: 'Q5_0', Q5_K: 'Q5_1', Q6_K: 'Q8_0' };

/** How one tensor is stored: its type, and whether its shape pushed it off the file type's rule. */
export interface TensorStorage {
  type: WritableType;
  /** True when the rows are not whole blocks of the rule's type (llama.cpp's fallback). */
  fellBack: boolean;
}

/**
 * How tensor `name` (Hugging Face name, shape [out, in] or [n]) is stored in a file of
 * `fileType`. Norms and other 1-D tensors stay F32.
 */
export function tensorStorage(name: string, shape: number[], fileType: FileType, config: LlamaConfig): TensorStorage {
  if (shape.length < 2 || name.endsWith('norm.weight')) return { type: 'F32', fellBack: false };
  if (fileType === 'F32' || fileType === 'F16' || fileType === 'BF16') return { type: fileType, fellBack: false };
  const cols = shape[shape.length - 1]!;
  const wholeBlocks = (t: WritableType) => !isQuantType(t) || cols % CODE_LAYOUTS[t].blockSize === 0;
  const rule = ruleType(name, fileType, config);
  if (wholeBlocks(rule)) return { type: rule, fellBack: false };
  const fallback = FALLBACK[rule];
  return { type: fallback !== undefined && wholeBlocks(fallback) ? fallback : 'F16', fellBack: true };
}
