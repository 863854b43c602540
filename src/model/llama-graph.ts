/**
 * The LLaMA forward as an ONNX graph, built from a config and a checkpoint's tensors.
 *
 * Shape legend: T = rows in this call, P = rows already in the KV cache, S = P + T,
 * C = hidden size, F = MLP width, H = query heads, K = key/value heads, G = H / K, D = head dim,
 * V = vocabulary.
 *
 * The graph is the forward contract PPD needs, nothing more: it takes input embeddings (so
 * trained prompt-token rows can be mixed with token rows), any position ids, an additive
 * attention mask given as data (causal, tree, any DAG) and the past keys/values; it returns the
 * logits of every row and the new keys/values of the T rows. The cache itself lives outside,
 * in TypeScript (kv-cache.ts), so rolling back rejected guesses is plain array work.
 *
 *   inputs   embeds [T, C] f32, positions [T] i64, mask [T, S] f32 (0 = attend, -inf = not),
 *            past_key_l / past_value_l [P, K, D] f32 for each layer l
 *   outputs  logits [T, V] f32, key_l / value_l [T, K, D] f32 (keys after rotary)
 *
 * Training graphs come from the same code (`trainingForward`): T is a fixed number of rows (a
 * batch of sequences packed with a block-diagonal mask), there is no past, and the weights are
 * graph inputs named like the checkpoint's tensors, fed at every step so an optimiser can change
 * them. Linear weights are then fed as [in, out]; a tied LM head takes the embedding table
 * [V, C] itself.
 */
import type { TensorSource } from '../format/tensor-source.ts';
import { DATA_TYPE, GraphBuilder, type Dim } from '../graph/builder.ts';
import type { LlamaConfig } from './config.ts';
import { EMBED_TOKENS, expectedTensors, FINAL_NORM, LM_HEAD, layerTensorName, type LayerPart } from './weights.ts';

export const GRAPH_INPUTS = { embeds: 'embeds', positions: 'positions', mask: 'mask' } as const;
export const pastKeyName = (layer: number) => `past_key_${layer}`;
export const pastValueName = (layer: number) => `past_value_${layer}`;
export const keyName = (layer: number) => `key_${layer}`;
export const valueName = (layer: number) => `value_${layer}`;
export const LOGITS = 'logits';

/** Transposes a row-major [rows, cols] matrix into [cols, rows]. */
export function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(m.length);
  const block = 64; // cache-friendly tiles: a naive transpose of 100M floats thrashes the cache
  for (let r0 = 0; r0 < rows; r0 += block) {
    for (let c0 = 0; c0 < cols; c0 += block) {
      const rEnd = Math.min(r0 + block, rows);
      const cEnd = Math.min(c0 + block, cols);
      for (let r = r0; r < rEnd; r++) {
        for (let c = c0; c < cEnd; c++) out[c * rows + r] = m[r * cols + c]!;
      }
    }
  }
  return out;
}

/** Where the weights come from: baked in from a checkpoint, or fed as inputs (training). */
type WeightMode = { kind: 'initializers'; tensors: TensorSource } | { kind: 'inputs' };

/**
 * The rows of one call: `rows` new rows ('T' = any number, or fixed for gradients), after `past`
 * cached rows ('P' = any, a fixed number, or null for no cache at all). `emitKeys` adds the new
 * rows' keys/values as outputs (what a decoder appends to its cache).
 */
interface CallLayout {
  rows: Dim;
  past: Dim | null;
  emitKeys: boolean;
}

class LlamaGraph {
  constructor(
    private readonly g: GraphBuilder,
    private readonly c: LlamaConfig,
    private readonly weights: WeightMode,
    private readonly layout: CallLayout,
  ) {}

  private get rows(): Dim {
    return this.layout.rows;
  }

  /** A weight stored [dims] (already in graph layout). */
  private weight(tensorName: string, dims: number[], read: () => Float32Array): string {
    if (this.weights.kind === 'inputs') return this.g.input(tensorName, this.g.float, dims);
    return this.g.initializer(tensorName, read(), dims);
  }

  /** x [T, in] @ W^T where the checkpoint stores W as [out, in]; the graph holds it as [in, out]. */
  private linear(x: string, tensorName: string, outDim: number, inDim: number): string {
    const w = this.weight(tensorName, [inDim, outDim], () => transpose(this.read(tensorName), outDim, inDim));
    return this.g.op('MatMul', [x, w]);
  }

  private read(tensorName: string): Float32Array {
    if (this.weights.kind !== 'initializers') throw new Error(`weights are graph inputs; ${tensorName} is not read`);
    return this.weights.tensors.readF32(tensorName);
  }

  /** RMSNorm over the last axis: x / sqrt(mean(x^2) + eps) * w (ORT fuses this pattern). */
  private rmsNorm(x: string, tensorName: string): string {
    const g = this.g;
    const w = this.weight(tensorName, [this.c.hiddenSize], () => this.read(tensorName));
    const meanSquare = g.op('ReduceMean', [g.op('Pow', [x, g.scalar(2)]), g.ints([-1])], { keepdims: 1 });
    const rms = g.op('Sqrt', [g.op('Add', [meanSquare, g.scalar(this.c.rmsNormEps)])]);
    return g.op('Mul', [g.op('Div', [x, rms]), w]);
  }

  /** cos and sin of the rotary angles, each [T, 1, D], shared by every layer. */
  private rotaryTables(positions: string): { cos: string; sin: string } {
    const g = this.g;
    const half = this.c.headDim / 2;
    const invFreq = new Float32Array(half);
    for (let i = 0; i < half; i++) {
      invFreq[i] = 1 / (this.c.ropeScalingFactor * Math.pow(this.c.ropeTheta, (2 * i) / this.c.headDim));
    }
    const pos = g.op('Unsqueeze', [g.op('Cast', [positions], { to: DATA_TYPE[g.float] }), g.ints([1])]); // [T, 1]
    const angles = g.op('Mul', [pos, g.initializer('rope_inv_freq', invFreq, [1, half])]); // [T, D/2]
    const full = g.op('Unsqueeze', [g.op('Concat', [angles, angles], { axis: -1 }), g.ints([1])]); // [T, 1, D]
    return { cos: g.op('Cos', [full]), sin: g.op('Sin', [full]) };
  }

  /** Rotary embedding, rotate-half convention: x*cos + [-x2, x1]*sin, x [T, heads, D]. */
  private rotate(x: string, rope: { cos: string; sin: string }): string {
    const g = this.g;
    const half = this.c.headDim / 2;
    const [x1, x2] = g.opMulti('Split', [x, g.ints([half, half])], 2, { axis: -1 });
    const rotated = g.op('Concat', [g.op('Neg', [x2!]), x1!], { axis: -1 });
    return g.op('Add', [g.op('Mul', [x, rope.cos]), g.op('Mul', [rotated, rope.sin])]);
  }

  /** `groupMask` [G*T, S] is the mask repeated for the G query heads that share a kv head. */
  private attention(x: string, layer: number, rope: { cos: string; sin: string }, groupMask: string): string {
    const g = this.g;
    const { hiddenSize: C, numHeads: H, numKvHeads: K, headDim: D } = this.c;
    const G = H / K;
    const name = (part: LayerPart) => layerTensorName(layer, part);

    const q = g.op('Reshape', [this.linear(x, name('self_attn.q_proj'), H * D, C), g.ints([-1, H, D])]);
    const k = g.op('Reshape', [this.linear(x, name('self_attn.k_proj'), K * D, C), g.ints([-1, K, D])]);
    const v = g.op('Reshape', [this.linear(x, name('self_attn.v_proj'), K * D, C), g.ints([-1, K, D])]);
    const qRot = g.op('Mul', [this.rotate(q, rope), g.scalar(1 / Math.sqrt(D))]); // [T, H, D], pre-scaled
    const kRot = this.rotate(k, rope); // [T, K, D]
    let keys = kRot; // [S, K, D]
    let values = v;
    if (this.layout.emitKeys) {
      g.output(kRot, keyName(layer), g.float, [this.rows, K, D]);
      g.output(v, valueName(layer), g.float, [this.rows, K, D]);
    }
    if (this.layout.past !== null) {
      keys = g.op('Concat', [g.input(pastKeyName(layer), g.float, [this.layout.past, K, D]), kRot], { axis: 0 });
      values = g.op('Concat', [g.input(pastValueName(layer), g.float, [this.layout.past, K, D]), v], { axis: 0 });
    }
    const keysT = g.op('Transpose', [keys], { perm: [1, 2, 0] }); // [K, D, S]
    const valuesByHead = g.op('Transpose', [values], { perm: [1, 0, 2] }); // [K, S, D]

    // Query head h = kv*G + g uses key/value head kv: group the G heads of each kv head as rows.
    const qGrouped = g.op('Reshape', [
      g.op('Transpose', [g.op('Reshape', [qRot, g.ints([-1, K, G, D])])], { perm: [1, 2, 0, 3] }), // [K, G, T, D]
      g.ints([K, -1, D]),
    ]); // [K, G*T, D]
    const scores = g.op('MatMul', [qGrouped, keysT]); // [K, G*T, S]
    const weights = g.op('Softmax', [g.op('Add', [scores, groupMask])], { axis: -1 });
    const context = g.op('MatMul', [weights, valuesByHead]); // [K, G*T, D]
    const merged = g.op('Reshape', [
      g.op('Transpose', [g.op('Reshape', [context, g.ints([K, G, -1, D])])], { perm: [2, 0, 1, 3] }), // [T, K, G, D]
      g.ints([-1, H * D]),
    ]);
    return this.linear(merged, name('self_attn.o_proj'), C, H * D);
  }

  private mlp(x: string, layer: number): string {
    const g = this.g;
    const { hiddenSize: C, intermediateSize: F } = this.c;
    const gate = this.linear(x, layerTensorName(layer, 'mlp.gate_proj'), F, C);
    const up = this.linear(x, layerTensorName(layer, 'mlp.up_proj'), F, C);
    const silu = g.op('Mul', [gate, g.op('Sigmoid', [gate])]);
    return this.linear(g.op('Mul', [silu, up]), layerTensorName(layer, 'mlp.down_proj'), C, F);
  }

  /** Adds the inputs and every layer; returns the logits value [T, V]. */
  build(): string {
    const g = this.g;
    const { hiddenSize: C, vocabSize: V } = this.c;
    let h = g.input(GRAPH_INPUTS.embeds, g.float, [this.rows, C]);
    const positions = g.input(GRAPH_INPUTS.positions, 'int64', [this.rows]);
    const { rows, past } = this.layout;
    const columns = past === null ? rows : typeof past === 'number' && typeof rows === 'number' ? past + rows : 'S';
    const mask = g.input(GRAPH_INPUTS.mask, g.float, [rows, columns]);
    const rope = this.rotaryTables(positions);
    const groupMask = g.op('Tile', [mask, g.ints([this.c.numHeads / this.c.numKvHeads, 1])]); // [G*T, S]
    for (let layer = 0; layer < this.c.numLayers; layer++) {
      const attended = this.attention(this.rmsNorm(h, layerTensorName(layer, 'input_layernorm')), layer, rope, groupMask);
      h = g.op('Add', [h, attended]);
      h = g.op('Add', [h, this.mlp(this.rmsNorm(h, layerTensorName(layer, 'post_attention_layernorm')), layer)]);
    }
    const x = this.rmsNorm(h, FINAL_NORM);
    if (this.c.tieWordEmbeddings && this.weights.kind === 'inputs') {
      // Training feeds the one embedding table [V, C]; the head multiplies by its transpose.
      const table = g.input(EMBED_TOKENS, g.float, [V, C]);
      return g.op('MatMul', [x, g.op('Transpose', [table], { perm: [1, 0] })]);
    }
    return this.linear(x, this.c.tieWordEmbeddings ? EMBED_TOKENS : LM_HEAD, V, C);
  }
}

/**
 * Builds the inference graph. Weights are read one tensor at a time from `tensors` and streamed
 * to `externalDataPath`; returns the serialised model, to be saved beside that file.
 */
export function buildLlamaGraph(config: LlamaConfig, tensors: TensorSource, externalDataPath: string): Uint8Array {
  const g = new GraphBuilder('ppd_llama', externalDataPath);
  const logits = new LlamaGraph(g, config, { kind: 'initializers', tensors }, { rows: 'T', past: 'P', emitKeys: true }).build();
  g.output(logits, LOGITS, 'float32', ['T', config.vocabSize]);
  return g.finish();
}

/**
 * Adds a training forward over `rows` packed rows to `g` (weights as inputs, no past) and
 * returns its logits value [rows, V]; the caller adds a loss and asks for gradients.
 */
export function trainingForward(g: GraphBuilder, config: LlamaConfig, rows: number): string {
  return new LlamaGraph(g, config, { kind: 'inputs' }, { rows, past: null, emitKeys: false }).build();
}

/**
 * Adds a forward of `rows` new rows after exactly `past` cached rows, with the checkpoint's
 * weights baked in (frozen), to `g`; returns its logits [rows, V]. Prompt-token training
 * differentiates it with respect to `embeds` only.
 */
export function frozenForward(g: GraphBuilder, config: LlamaConfig, tensors: TensorSource, rows: number, past: number): string {
  return new LlamaGraph(g, config, { kind: 'initializers', tensors }, { rows, past, emitKeys: false }).build();
}

/**
 * Names and graph-layout shapes of the weights a training graph takes as inputs: linear weights
 * [in, out] (the checkpoint's [out, in] transposed), norms [C], a tied embedding table [V, C].
 */
export function trainingWeightShapes(config: LlamaConfig): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  for (const [name, shape] of expectedTensors(config)) {
    if (name === EMBED_TOKENS && !config.tieWordEmbeddings) continue; // looked up outside the graph
    shapes.set(name, shape.length === 2 && name !== EMBED_TOKENS ? [shape[1]!, shape[0]!] : shape);
  }
  return shapes;
}
