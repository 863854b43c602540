/**
 * An independent reference forward for the Hugging Face causal LMs ppd runs, written from
 * transformers' modeling code (models/llama, mistral, qwen2, qwen3, and modeling_rope_utils.py),
 * in plain loops with float64 sums. It reads the raw config.json object itself, with
 * transformers' defaults per model_type, so neither ppd's config parser nor its graph builder is
 * on the path it checks. Not used by ppd; only fast enough for tiny configs.
 *
 * What it covers, by model_type:
 *   llama    q/k/v/o biases when attention_bias, gate/up/down biases when mlp_bias; RoPE
 *            "default", "linear" and "llama3" (rope_scaling, or rope_parameters in configs
 *            written by transformers 5); explicit head_dim
 *   mistral  LLaMA without biases; sliding_window (transformers' default 4096 when the key is
 *            absent): query i sees keys j with i - window < j <= i
 *   qwen2    q/k/v biases always, o_proj without
 *   qwen3    q_norm/k_norm (RMSNorm over each head, weights [D]) between projection and RoPE;
 *            q/k/v/o biases when attention_bias; head_dim defaults to 128
 * Positions are 0..T-1 (one causal sequence); the cached, tree and batched calls are covered by
 * naive-llama.ts, which this file does not share code with.
 *
 * Shapes: T tokens, C hidden, F MLP width, H query heads, K key/value heads, D head dim, V vocab.
 */

type Json = Record<string, unknown>;

/** The architecture as transformers builds it from config.json. */
export interface HfArchitecture {
  modelType: 'llama' | 'mistral' | 'qwen2' | 'qwen3';
  V: number;
  C: number;
  F: number;
  layers: number;
  H: number;
  K: number;
  D: number;
  eps: number;
  /** [D/2] inverse frequencies of the rotary embedding. */
  invFreq: Float64Array;
  tied: boolean;
  /** Which projections carry a bias. */
  bias: { q: boolean; k: boolean; v: boolean; o: boolean; mlp: boolean };
  qkNorm: boolean;
  /** Keys a query may see, counting itself; Infinity = all earlier ones. */
  window: number;
}

function num(raw: Json, key: string, fallback?: number): number {
  const value = raw[key] ?? fallback;
  if (typeof value !== 'number') throw new Error(`hf-causal-lm: config field "${key}" is ${JSON.stringify(value)}`);
  return value;
}

/** rope_parameters (transformers 5) or rope_theta + rope_scaling (earlier), as one object. */
function ropeParameters(raw: Json): Json {
  const params = (raw.rope_parameters ?? raw.rope_scaling ?? {}) as Json;
  const type = params.rope_type ?? params.type ?? 'default';
  return { ...params, rope_type: type, rope_theta: params.rope_theta ?? raw.rope_theta ?? 10000 };
}

/** _compute_default_rope_parameters, then the scaling rope_type asks for (linear, llama3). */
export function referenceInvFreq(raw: Json, D: number): Float64Array {
  const rope = ropeParameters(raw);
  const base = rope.rope_theta as number;
  const inv = new Float64Array(D / 2);
  for (let i = 0; i < D / 2; i++) inv[i] = 1 / Math.pow(base, (2 * i) / D);
  switch (rope.rope_type) {
    case 'default':
      return inv;
    case 'linear':
      return inv.map((f) => f / (rope.factor as number));
    case 'llama3': {
      const factor = rope.factor as number;
      const low = rope.low_freq_factor as number;
      const high = rope.high_freq_factor as number;
      const oldContext = rope.original_max_position_embeddings as number;
      const lowFreqWavelen = oldContext / low;
      const highFreqWavelen = oldContext / high;
      return inv.map((f) => {
        const wavelen = (2 * Math.PI) / f;
        if (wavelen < highFreqWavelen) return f;
        if (wavelen > lowFreqWavelen) return f / factor;
        const smooth = (oldContext / wavelen - low) / (high - low);
        return (1 - smooth) * (f / factor) + smooth * f;
      });
    }
    default:
      throw new Error(`hf-causal-lm: rope_type ${JSON.stringify(rope.rope_type)} is not in this reference`);
  }
}

/** The architecture transformers instantiates for this config.json. */
export function hfArchitecture(raw: Json): HfArchitecture {
  const modelType = raw.model_type as HfArchitecture['modelType'];
  if (!['llama', 'mistral', 'qwen2', 'qwen3'].includes(modelType)) throw new Error(`hf-causal-lm: model_type ${modelType}`);
  const C = num(raw, 'hidden_size');
  const H = num(raw, 'num_attention_heads');
  const D = num(raw, 'head_dim', modelType === 'qwen3' ? 128 : C / H);
  const attentionBias = raw.attention_bias === true;
  const bias =
    modelType === 'qwen2'
      ? { q: true, k: true, v: true, o: false, mlp: false }
      : modelType === 'mistral'
        ? { q: false, k: false, v: false, o: false, mlp: false }
        : { q: attentionBias, k: attentionBias, v: attentionBias, o: attentionBias, mlp: modelType === 'llama' && raw.mlp_bias === true };
  const slidingWindow = modelType === 'mistral' && !('sliding_window' in raw) ? 4096 : raw.sliding_window;
  const window = modelType === 'mistral' && typeof slidingWindow === 'number' ? slidingWindow : Infinity;
  if ((modelType === 'qwen2' || modelType === 'qwen3') && raw.use_sliding_window === true) {
    throw new Error('hf-causal-lm: Qwen sliding windows are not in this reference');
  }
  return {
    modelType,
    V: num(raw, 'vocab_size'),
    C,
    F: num(raw, 'intermediate_size'),
    layers: num(raw, 'num_hidden_layers'),
    H,
    K: num(raw, 'num_key_value_heads', H),
    D,
    eps: num(raw, 'rms_norm_eps', 1e-6),
    invFreq: referenceInvFreq(raw, D),
    tied: raw.tie_word_embeddings === true,
    bias,
    qkNorm: modelType === 'qwen3',
    window,
  };
}

/** Every parameter of the module tree transformers builds, by state-dict name, with its shape. */
export function hfTensorShapes(raw: Json): Map<string, number[]> {
  const a = hfArchitecture(raw);
  const shapes = new Map<string, number[]>([['model.embed_tokens.weight', [a.V, a.C]]]);
  for (let l = 0; l < a.layers; l++) {
    const p = `model.layers.${l}.`;
    const linear = (name: string, out: number, inp: number, bias: boolean) => {
      shapes.set(`${p}${name}.weight`, [out, inp]);
      if (bias) shapes.set(`${p}${name}.bias`, [out]);
    };
    shapes.set(`${p}input_layernorm.weight`, [a.C]);
    linear('self_attn.q_proj', a.H * a.D, a.C, a.bias.q);
    linear('self_attn.k_proj', a.K * a.D, a.C, a.bias.k);
    linear('self_attn.v_proj', a.K * a.D, a.C, a.bias.v);
    linear('self_attn.o_proj', a.C, a.H * a.D, a.bias.o);
    if (a.qkNorm) {
      shapes.set(`${p}self_attn.q_norm.weight`, [a.D]);
      shapes.set(`${p}self_attn.k_norm.weight`, [a.D]);
    }
    shapes.set(`${p}post_attention_layernorm.weight`, [a.C]);
    linear('mlp.gate_proj', a.F, a.C, a.bias.mlp);
    linear('mlp.up_proj', a.F, a.C, a.bias.mlp);
    linear('mlp.down_proj', a.C, a.F, a.bias.mlp);
  }
  shapes.set('model.norm.weight', [a.C]);
  if (!a.tied) shapes.set('lm_head.weight', [a.V, a.C]);
  return shapes;
}

type Weights = Map<string, Float32Array>;

function get(w: Weights, name: string): Float32Array {
  const t = w.get(name);
  if (!t) throw new Error(`hf-causal-lm: weight "${name}" is missing`);
  return t;
}

/** nn.Linear: y = x W^T + b; x [T, IN] as rows of float64, W [OUT, IN]. */
function linear(x: Float64Array[], w: Float32Array, out: number, b?: Float32Array): Float64Array[] {
  return x.map((row) => {
    const y = new Float64Array(out);
    for (let o = 0; o < out; o++) {
      let sum = b ? b[o]! : 0;
      for (let i = 0; i < row.length; i++) sum += row[i]! * w[o * row.length + i]!;
      y[o] = sum;
    }
    return y;
  });
}

/** RMSNorm over consecutive groups of `width` values of each row (width = C, or D for q/k norm). */
function rmsNorm(x: Float64Array[], w: Float32Array, width: number, eps: number): Float64Array[] {
  return x.map((row) => {
    const y = new Float64Array(row.length);
    for (let start = 0; start < row.length; start += width) {
      let sumSq = 0;
      for (let i = 0; i < width; i++) sumSq += row[start + i]! ** 2;
      const scale = 1 / Math.sqrt(sumSq / width + eps);
      for (let i = 0; i < width; i++) y[start + i] = row[start + i]! * scale * w[i]!;
    }
    return y;
  });
}

/** apply_rotary_pos_emb with rotate_half, in place: row t holds `heads` heads of D at position t. */
function rotary(x: Float64Array[], heads: number, a: HfArchitecture): void {
  const half = a.D / 2;
  x.forEach((row, t) => {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < half; i++) {
        const angle = t * a.invFreq[i]!;
        const [cos, sin] = [Math.cos(angle), Math.sin(angle)];
        const j = h * a.D + i;
        const [x1, x2] = [row[j]!, row[j + half]!];
        row[j] = x1 * cos - x2 * sin;
        row[j + half] = x2 * cos + x1 * sin;
      }
    }
  });
}

/** Logits [T][V] of the sequence `ids` at positions 0..T-1. */
export function hfForward(raw: Json, w: Weights, ids: readonly number[]): Float64Array[] {
  const a = hfArchitecture(raw);
  const { C, F, H, K, D, V } = a;
  const table = get(w, 'model.embed_tokens.weight');
  let x = ids.map((id) => Float64Array.from(table.subarray(id * C, (id + 1) * C)));
  const maybe = (name: string) => w.get(name);
  for (let l = 0; l < a.layers; l++) {
    const p = `model.layers.${l}.`;
    const h = rmsNorm(x, get(w, `${p}input_layernorm.weight`), C, a.eps);
    let q = linear(h, get(w, `${p}self_attn.q_proj.weight`), H * D, maybe(`${p}self_attn.q_proj.bias`));
    let k = linear(h, get(w, `${p}self_attn.k_proj.weight`), K * D, maybe(`${p}self_attn.k_proj.bias`));
    const v = linear(h, get(w, `${p}self_attn.v_proj.weight`), K * D, maybe(`${p}self_attn.v_proj.bias`));
    if (a.qkNorm) {
      q = rmsNorm(q, get(w, `${p}self_attn.q_norm.weight`), D, a.eps);
      k = rmsNorm(k, get(w, `${p}self_attn.k_norm.weight`), D, a.eps);
    }
    rotary(q, H, a);
    rotary(k, K, a);
    const attended = q.map((qRow, i) => {
      const out = new Float64Array(H * D);
      for (let head = 0; head < H; head++) {
        const kv = Math.floor(head / (H / K)); // repeat_kv: query head h reads kv head h / (H/K)
        const visible: number[] = [];
        for (let j = 0; j <= i; j++) if (j > i - a.window) visible.push(j);
        const scores = visible.map((j) => {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += qRow[head * D + d]! * k[j]![kv * D + d]!;
          return dot / Math.sqrt(D);
        });
        const max = Math.max(...scores);
        const exps = scores.map((s) => Math.exp(s - max));
        const total = exps.reduce((s, e) => s + e, 0);
        visible.forEach((j, n) => {
          for (let d = 0; d < D; d++) out[head * D + d] += (exps[n]! / total) * v[j]![kv * D + d]!;
        });
      }
      return out;
    });
    const o = linear(attended, get(w, `${p}self_attn.o_proj.weight`), C, maybe(`${p}self_attn.o_proj.bias`));
    x = x.map((row, t) => row.map((value, i) => value + o[t]![i]!));

    const h2 = rmsNorm(x, get(w, `${p}post_attention_layernorm.weight`), C, a.eps);
    const gate = linear(h2, get(w, `${p}mlp.gate_proj.weight`), F, maybe(`${p}mlp.gate_proj.bias`));
    const up = linear(h2, get(w, `${p}mlp.up_proj.weight`), F, maybe(`${p}mlp.up_proj.bias`));
    const act = gate.map((row, t) => row.map((g, i) => (g / (1 + Math.exp(-g))) * up[t]![i]!));
    const down = linear(act, get(w, `${p}mlp.down_proj.weight`), C, maybe(`${p}mlp.down_proj.bias`));
    x = x.map((row, t) => row.map((value, i) => value + down[t]![i]!));
  }
  const final = rmsNorm(x, get(w, 'model.norm.weight'), C, a.eps);
  return linear(final, get(w, a.tied ? 'model.embed_tokens.weight' : 'lm_head.weight'), V);
}
