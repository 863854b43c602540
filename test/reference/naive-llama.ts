/**
 * A naive, obviously-correct LLaMA forward in plain TypeScript loops: the reference that tests
 * compare ppd's ONNX graph against. Semantics follow Hugging Face LlamaForCausalLM
 * (transformers' modeling_llama.py). Clarity over speed; sums accumulate in float64.
 * Not used by ppd itself, and not fast enough for anything but tiny configs.
 *
 * Shapes: T new tokens, P past rows, C hidden, F MLP inner width, V vocab,
 * H query heads, KVH key/value heads, D head dim.
 */
import type { LlamaConfig } from '../../src/model/config.ts';
import { EMBED_TOKENS, FINAL_NORM, LM_HEAD, layerTensorName, type LayerPart } from '../../src/model/weights.ts';

export interface NaiveInput {
  embeds: Float32Array; // [T, C]
  positions: number[]; // [T]
  mask: boolean[][]; // [T][P+T], true = may attend
  past?: { keys: Float32Array[]; values: Float32Array[] }; // per layer [P, KVH, D]
}

export interface NaiveOutput {
  logits: Float32Array; // [T, V]
  keys: Float32Array[]; // per layer [T, KVH, D], after rotary
  values: Float32Array[]; // per layer [T, KVH, D]
}

function tensor(weights: Map<string, Float32Array>, name: string): Float32Array {
  const w = weights.get(name);
  if (!w) throw new Error(`naive-llama: weight "${name}" is missing`);
  return w;
}

/** y[t, o] = sum_i x[t, i] * w[o, i]; x [T, IN], w [OUT, IN] -> [T, OUT]. */
function linear(x: Float32Array, w: Float32Array, T: number, IN: number, OUT: number): Float32Array {
  if (w.length !== OUT * IN) throw new Error(`naive-llama: weight has ${w.length} values, expected ${OUT}x${IN}`);
  const y = new Float32Array(T * OUT);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < OUT; o++) {
      let sum = 0;
      for (let i = 0; i < IN; i++) sum += x[t * IN + i] * w[o * IN + i];
      y[t * OUT + o] = sum;
    }
  }
  return y;
}

/** x / sqrt(mean(x^2) + eps) * w, per row; x [T, C]. */
function rmsNorm(x: Float32Array, w: Float32Array, T: number, C: number, eps: number): Float32Array {
  const y = new Float32Array(T * C);
  for (let t = 0; t < T; t++) {
    let sumSq = 0;
    for (let i = 0; i < C; i++) sumSq += x[t * C + i] * x[t * C + i];
    const scale = 1 / Math.sqrt(sumSq / C + eps);
    for (let i = 0; i < C; i++) y[t * C + i] = x[t * C + i] * scale * w[i];
  }
  return y;
}

/** Positions are divided by this (linear rope_scaling); other scalings are the family reference's (hf-causal-lm.ts). */
function linearScaling(c: LlamaConfig): number {
  if (c.ropeScaling.type === 'none') return 1;
  if (c.ropeScaling.type === 'linear') return c.ropeScaling.factor;
  throw new Error(`naive-llama: rope scaling ${c.ropeScaling.type} is not in this reference`);
}

/**
 * In-place rotary embedding, "rotate_half" convention: dimension i pairs with i + D/2.
 * x [T, heads, D]; angle = (position / scaling) * theta^(-2i/D).
 */
function applyRotary(x: Float32Array, positions: number[], heads: number, c: LlamaConfig): void {
  const D = c.headDim;
  const half = D / 2;
  for (let t = 0; t < positions.length; t++) {
    const pos = positions[t] / linearScaling(c);
    for (let h = 0; h < heads; h++) {
      const base = (t * heads + h) * D;
      for (let i = 0; i < half; i++) {
        const angle = pos * (1 / Math.pow(c.ropeTheta, (2 * i) / D));
        const cos = Math.cos(angle);
        const sin = Math.sin(angle);
        const a = x[base + i];
        const b = x[base + i + half];
        x[base + i] = a * cos - b * sin;
        x[base + i + half] = b * cos + a * sin;
      }
    }
  }
}

/** Appends new rows after the past: [P, KVH, D] + [T, KVH, D] -> [P+T, KVH, D]. */
function concatRows(past: Float32Array | undefined, now: Float32Array): Float32Array {
  if (!past) return now;
  const all = new Float32Array(past.length + now.length);
  all.set(past, 0);
  all.set(now, past.length);
  return all;
}

/**
 * Masked scaled-dot-product attention with GQA. q [T, H, D], keys/values [S, KVH, D] with
 * S = P + T; returns [T, H, D].
 */
function attention(q: Float32Array, keys: Float32Array, values: Float32Array, mask: boolean[][], c: LlamaConfig): Float32Array {
  const { numHeads: H, numKvHeads: KVH, headDim: D } = c;
  const T = mask.length;
  const S = keys.length / (KVH * D);
  const group = H / KVH;
  const out = new Float32Array(T * H * D);
  for (let t = 0; t < T; t++) {
    if (mask[t].length !== S) throw new Error(`naive-llama: mask row ${t} has ${mask[t].length} entries, expected ${S}`);
    if (!mask[t].some((m) => m)) throw new Error(`naive-llama: mask row ${t} attends to nothing`);
    for (let h = 0; h < H; h++) {
      const kvh = Math.floor(h / group);
      const scores: number[] = [];
      let max = -Infinity;
      for (let j = 0; j < S; j++) {
        if (!mask[t][j]) continue;
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[(t * H + h) * D + d] * keys[(j * KVH + kvh) * D + d];
        scores[j] = dot / Math.sqrt(D);
        max = Math.max(max, scores[j]);
      }
      let total = 0;
      for (let j = 0; j < S; j++) if (mask[t][j]) total += Math.exp(scores[j] - max);
      for (let j = 0; j < S; j++) {
        if (!mask[t][j]) continue;
        const p = Math.exp(scores[j] - max) / total;
        for (let d = 0; d < D; d++) out[(t * H + h) * D + d] += p * values[(j * KVH + kvh) * D + d];
      }
    }
  }
  return out;
}

const silu = (x: number): number => x / (1 + Math.exp(-x));

/** Runs T new tokens through the model given their embeddings, positions, mask and past cache. */
export function naiveForward(config: LlamaConfig, weights: Map<string, Float32Array>, input: NaiveInput): NaiveOutput {
  const c = config;
  const { hiddenSize: C, intermediateSize: F, numHeads: H, numKvHeads: KVH, headDim: D, vocabSize: V } = c;
  const T = input.positions.length;
  if (input.embeds.length !== T * C) throw new Error(`naive-llama: embeds has ${input.embeds.length} values, expected ${T}x${C}`);
  if (input.mask.length !== T) throw new Error(`naive-llama: mask has ${input.mask.length} rows, expected ${T}`);
  const w = (layer: number, part: LayerPart) => tensor(weights, layerTensorName(layer, part));

  let x: Float32Array = Float32Array.from(input.embeds); // [T, C] residual stream
  const newKeys: Float32Array[] = [];
  const newValues: Float32Array[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const h = rmsNorm(x, w(l, 'input_layernorm'), T, C, c.rmsNormEps);
    const q = linear(h, w(l, 'self_attn.q_proj'), T, C, H * D); // [T, H, D]
    const k = linear(h, w(l, 'self_attn.k_proj'), T, C, KVH * D); // [T, KVH, D]
    const v = linear(h, w(l, 'self_attn.v_proj'), T, C, KVH * D); // [T, KVH, D]
    applyRotary(q, input.positions, H, c);
    applyRotary(k, input.positions, KVH, c);
    newKeys.push(k);
    newValues.push(v);
    const keys = concatRows(input.past?.keys[l], k); // [P+T, KVH, D]
    const values = concatRows(input.past?.values[l], v);
    const attn = attention(q, keys, values, input.mask, c); // [T, H, D]
    const o = linear(attn, w(l, 'self_attn.o_proj'), T, H * D, C);
    for (let i = 0; i < T * C; i++) x[i] += o[i];

    const h2 = rmsNorm(x, w(l, 'post_attention_layernorm'), T, C, c.rmsNormEps);
    const gate = linear(h2, w(l, 'mlp.gate_proj'), T, C, F); // [T, F]
    const up = linear(h2, w(l, 'mlp.up_proj'), T, C, F);
    const act = new Float32Array(T * F);
    for (let i = 0; i < T * F; i++) act[i] = silu(gate[i]) * up[i];
    const down = linear(act, w(l, 'mlp.down_proj'), T, F, C);
    for (let i = 0; i < T * C; i++) x[i] += down[i];
  }
  x = rmsNorm(x, tensor(weights, FINAL_NORM), T, C, c.rmsNormEps);
  const head = tensor(weights, c.tieWordEmbeddings ? EMBED_TOKENS : LM_HEAD); // [V, C]
  return { logits: linear(x, head, T, C, V), keys: newKeys, values: newValues };
}

/** Causal mask for T new tokens after P past rows: row t may attend to context j <= P + t. */
export function causalMask(T: number, P: number): boolean[][] {
  const mask: boolean[][] = [];
  for (let t = 0; t < T; t++) {
    const row: boolean[] = [];
    for (let j = 0; j < P + T; j++) row.push(j <= P + t);
    mask.push(row);
  }
  return mask;
}

/** Rows of embed_tokens for the given ids: [T, C]. */
export function embedTokens(config: LlamaConfig, weights: Map<string, Float32Array>, ids: number[]): Float32Array {
  const C = config.hiddenSize;
  const table = tensor(weights, EMBED_TOKENS); // [V, C]
  const out = new Float32Array(ids.length * C);
  ids.forEach((id, t) => {
    if (!Number.isInteger(id) || id < 0 || id >= config.vocabSize) throw new Error(`naive-llama: token id ${id} is out of range`);
    out.set(table.subarray(id * C, (id + 1) * C), t * C);
  });
  return out;
}
