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
 *
 * Quantized weights: in the inference graph a linear weight stays block-quantized (ONNX
 * Runtime's com.microsoft.MatMulNBits, layout in format/quantize.ts) when the source stores it so
 * (GGUF Q8_0/Q4_0, passed through as is) or when the caller asks for q8/q4. Only the linear
 * weights are: norms, rotary, attention scores and softmax stay f32, and the embedding rows are
 * looked up outside the graph in f32 (LlamaModel.embed). Graphs that are differentiated
 * (training, prompt training) always hold f32 weights: MatMulNBits has no gradient here.
 */
import { ModelError } from '../errors.ts';
import type { BlockQuantized, TensorSource } from '../format/tensor-source.ts';
import { DATA_TYPE, GraphBuilder, MS_DOMAIN, type Dim, type ExternalDataSink } from '../graph/builder.ts';
import type { GraphSpec } from '../runtime/session.ts';
import type { LlamaConfig } from './config.ts';
import { quantize, zeroPoint, type QuantizeMode } from '../format/quantize.ts';
import { PROMPT_HEAD_INPUTS, promptHeadOnRows } from './prompt-head.ts';
import { ropeInverseFrequencies } from './rope.ts';
import { EMBED_TOKENS, expectedTensors, FINAL_NORM, LM_HEAD, layerBiases, layerTensorName, type LayerPart } from './weights.ts';

export const GRAPH_INPUTS = { embeds: 'embeds', positions: 'positions', mask: 'mask' } as const;
export const pastKeyName = (layer: number) => `past_key_${layer}`;
export const pastValueName = (layer: number) => `past_value_${layer}`;
export const keyName = (layer: number) => `key_${layer}`;
export const valueName = (layer: number) => `value_${layer}`;
export const LOGITS = 'logits';
/**
 * Query chunks per window of per-window training attention (windowedAttention): 4 of 128 rows
 * ran fastest on ppd-base's windows of 512 (1, 2, 4, 8 compared; docs/bench/train.md).
 */
const ATTENTION_CHUNKS = 4;

/** Arrays of one type end to end (matrices with the same columns: one's rows after another's). */
function stacked<T extends Float32Array | Uint8Array>(arrays: readonly T[]): T {
  const out = new (arrays[0]!.constructor as new (length: number) => T)(arrays.reduce((n, a) => n + a.length, 0));
  let offset = 0;
  for (const a of arrays) {
    out.set(a, offset);
    offset += a.length;
  }
  return out;
}

/** What must match for block-quantized weights to be multiplied as one (rows stacked). */
function blockLayoutKey(b: BlockQuantized): string {
  return [b.bits, b.blockSize, b.cols, b.zeroPoint, b.offsets ? 'offsets' : '', b.offsetCodes ? `codes/${b.offsetCodes.group}` : ''].join(' ');
}

/** Block-quantized weights with the same layout (blockLayoutKey), one's rows after another's. */
function stackedBlocks(parts: readonly BlockQuantized[]): BlockQuantized {
  const first = parts[0]!;
  const codes = first.offsetCodes;
  return {
    ...first,
    rows: parts.reduce((n, b) => n + b.rows, 0),
    data: stacked(parts.map((b) => b.data)),
    scales: stacked(parts.map((b) => b.scales)),
    ...(first.offsets ? { offsets: stacked(parts.map((b) => b.offsets!)) } : {}),
    ...(codes ? { offsetCodes: { codes: stacked(parts.map((b) => b.offsetCodes!.codes)), scales: stacked(parts.map((b) => b.offsetCodes!.scales)), group: codes.group } } : {}),
  };
}

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

/**
 * MatMulNBits' zero_points input for a matrix whose blocks all share w.zeroPoint: per row,
 * ceil(blocks * bits / 8) bytes, 4-bit zero points packed two to a byte, low nibble first.
 */
function zeroPoints(w: BlockQuantized, blocks: number): Uint8Array {
  const z = w.zeroPoint;
  if (w.bits === 8) return new Uint8Array(w.rows * blocks).fill(z);
  return new Uint8Array(w.rows * Math.ceil(blocks / 2)).fill(z | (z << 4));
}

/**
 * How baked-in linear weights are held: 'f32' always (graphs that are differentiated); 'stored'
 * as the source stores them (block-quantized where it offers readBlockQuantized, else f32); or
 * a QuantizeMode: stored blocks where the source has them, the rest quantized to that mode.
 */
export type LinearWeights = 'f32' | 'stored' | QuantizeMode;

/**
 * How MatMulNBits multiplies rows by block-quantized weights (its accuracy_level attribute):
 *   'int8' (4)  each row is quantized to int8 per block of 32 on the fly, then int8 x int8
 *               products with int32 sums (MLAS's AVX2/AVX-512 VNNI kernels). The default: the
 *               fastest for one row and for 16 (figures: docs/ARCHITECTURE.md, "Quantized
 *               products"), for a relative error of ~0.5 % per product (test/quantize.test.ts).
 *   'f32' (0)   rows stay f32 against the dequantized weights: exactly an f32 forward over the
 *               dequantized weights, the reference the tests compare with.
 */
export type QuantizedMatmul = 'int8' | 'f32';
const ACCURACY_LEVEL: Record<QuantizedMatmul, number> = { int8: 4, f32: 0 };

/** Where the weights come from: baked in from a checkpoint, or fed as inputs (training). */
type WeightMode =
  | { kind: 'initializers'; tensors: TensorSource; linears: LinearWeights; matmul: QuantizedMatmul }
  | { kind: 'inputs' };

/**
 * The mode a weight is quantized to when `requested` is asked for. The LM head, whose errors
 * land on every logit directly, keeps 8 bits under q4 (llama.cpp keeps output.weight at Q6_K
 * for Q4_0 files; 8 bits is the nearest MatMulNBits has).
 */
function modeFor(tensorName: string, requested: QuantizeMode): QuantizeMode {
  return requested === 'q4' && (tensorName === LM_HEAD || tensorName === EMBED_TOKENS) ? 'q8' : requested;
}

/**
 * The rows of one call: `rows` new rows ('T' = any number, or fixed for gradients), after `past`
 * cached rows ('P' = any, a fixed number, or null for no cache at all). `emitKeys` adds the new
 * rows' keys/values as outputs (what a decoder appends to its cache).
 */
interface CallLayout {
  rows: Dim;
  past: Dim | null;
  emitKeys: boolean;
  /**
   * Decoding graphs: attention normalised by a sum that does not depend on the step's layout.
   * ONNX Runtime's Softmax sums a row's exponentials in SIMD lanes, so where a step's other rows'
   * masked (zero) columns sit among a row's own changes the rounding of its sum, and a tree row's
   * output differs from the same row decoded alone by an ulp; int8-quantized activations
   * downstream (MatMulNBits, accuracy level 4) turn such ulps into whole quantization steps, 3e-2
   * in the logits of a random Qwen2.5-0.5B Q8_0, enough for greedy PPD to leave plain decoding at
   * a near-tie (2 of 3 prompts there). Here the exponentials are multiplied by [values | 1] in one
   * MatMul, which accumulates each output over the columns in order (zeros add nothing), so the
   * sum is the same whatever the layout (docs/ARCHITECTURE.md, "Identical output").
   */
  orderFreeSoftmax?: boolean;
  /**
   * Training only: the rows are `windows` independent sequences of rows / windows rows each,
   * every one at positions 0.. and attending causally within itself. Attention then runs per
   * window ([W*K, G*Tw, Tw] scores) instead of over all rows with a block-diagonal mask.
   */
  windows?: number;
}

/** cos and sin of the rotary angles, [T, 1, D]; `qkv`: the same for q, k and v heads side by side, once built. */
interface Rope {
  cos: string;
  sin: string;
  qkv?: Rope;
}

/** Graph values a caller already has for the forward's inputs, instead of graph inputs. */
export interface ForwardInputs {
  embeds?: string;
  /** The tied embedding table [V, C] when weights are graph inputs (training). */
  table?: string;
  /** Applied to the final normalised hidden state [T, C] before the LM head (a prompt-token head). */
  beforeHead?: (hidden: string) => string;
  positions?: string;
  mask?: string;
}

class LlamaGraph {
  /** The projections that add a bias, by part (the same in every layer). */
  private readonly biases: Partial<Record<LayerPart, number>>;
  /** blockSums already built, by input value and block size (q/k/v and gate/up share theirs). */
  private readonly blockSumCache = new Map<string, string>();
  /** blockQuantized's answers by tensor name: projections ask twice where they cannot go side by side. */
  private readonly blockCache = new Map<string, BlockQuantized | undefined>();
  /** rotate's signed permutation, once built. */
  private halfTurnMatrix: string | undefined;
  /** The [K, S, 1] ones of orderFreeAttention, built at its first layer. */
  private onesColumn: string | undefined;

  constructor(
    private readonly g: GraphBuilder,
    private readonly c: LlamaConfig,
    private readonly weights: WeightMode,
    private readonly layout: CallLayout,
  ) {
    this.biases = layerBiases(c);
  }

  private get rows(): Dim {
    return this.layout.rows;
  }

  /** A weight stored [dims] (already in graph layout). */
  private weight(tensorName: string, dims: number[], read: () => Float32Array): string {
    if (this.weights.kind === 'inputs') return this.g.input(tensorName, this.g.float, dims);
    return this.g.initializer(tensorName, read(), dims);
  }

  /**
   * x [T, in] @ W^T where the checkpoint stores W as [out, in]: MatMul with the graph holding W
   * as [in, out], or MatMulNBits with W block-quantized as stored ([out, in/32 blocks]).
   */
  private linear(x: string, tensorName: string, outDim: number, inDim: number, blocks = this.blockQuantized(tensorName, outDim, inDim)): string {
    if (blocks) return this.matMulNBits(x, tensorName, blocks);
    const w = this.weight(tensorName, [inDim, outDim], () => transpose(this.read(tensorName), outDim, inDim));
    return this.g.op('MatMul', [x, w]);
  }

  /**
   * A layer's projections of the same input (q/k/v, gate/up), each plus its bias [out] where the
   * family has one. Those stored alike (all F32, or block-quantized with the same block layout)
   * run as one product over their weights side by side ([in, Σ out], split after): a forward
   * makes fewer, wider products, which costs a one-row step of the bundled model about a
   * twentieth less (docs/ARCHITECTURE.md). Each output column is the same dot product either way.
   */
  private projections(x: string, layer: number, parts: readonly (readonly [LayerPart, number])[], inDim: number): string[] {
    const { names, blocks, groups } = this.storedAlike(layer, parts, inDim);
    const outputs: string[] = [];
    for (const members of groups) {
      const outDims = members.map((i) => parts[i]![1]);
      const ys =
        members.length === 1
          ? [this.linear(x, names[members[0]!]!, outDims[0]!, inDim, blocks[members[0]!])]
          : this.g.opMulti('Split', [this.sideBySide(x, members.map((i) => names[i]!), outDims, inDim, members.map((i) => blocks[i])), this.g.ints(outDims)], members.length, { axis: -1 });
      members.forEach((i, j) => (outputs[i] = ys[j]!));
    }
    return outputs.map((y, i) => this.withBias(y, layer, parts[i]![0], parts[i]![1]));
  }

  /**
   * The projections of `projections` as one product side by side, [..., Σ out] in the order of
   * `parts`, where they are all stored alike and none adds a bias; undefined otherwise.
   */
  private jointProjection(x: string, layer: number, parts: readonly (readonly [LayerPart, number])[], inDim: number): string | undefined {
    if (parts.some(([part]) => this.biases[part] !== undefined)) return undefined;
    const { names, blocks, groups } = this.storedAlike(layer, parts, inDim);
    return groups.length === 1 ? this.sideBySide(x, names, parts.map(([, outDim]) => outDim), inDim, blocks) : undefined;
  }

  /** A layer's `parts`: their tensor names, block-quantized forms, and the indices of those stored alike, grouped in order. */
  private storedAlike(layer: number, parts: readonly (readonly [LayerPart, number])[], inDim: number) {
    const names = parts.map(([part]) => layerTensorName(layer, part));
    const blocks = parts.map(([, outDim], i) => this.blockQuantized(names[i]!, outDim, inDim));
    const groups = new Map<string, number[]>();
    blocks.forEach((b, i) => {
      const key = b ? blockLayoutKey(b) : 'f32';
      groups.set(key, [...(groups.get(key) ?? []), i]);
    });
    return { names, blocks, groups: [...groups.values()] };
  }

  /** x times several weights stored alike, as one product over them side by side: [..., Σ outDims]. */
  private sideBySide(x: string, names: string[], outDims: number[], inDim: number, blocks: (BlockQuantized | undefined)[]): string {
    const g = this.g;
    const total = outDims.reduce((a, b) => a + b, 0);
    const name = names.join('+');
    if (blocks[0]) return this.matMulNBits(x, name, stackedBlocks(blocks as BlockQuantized[]));
    if (this.weights.kind === 'inputs') return g.op('MatMul', [x, g.op('Concat', names.map((n, i) => this.weight(n, [inDim, outDims[i]!], () => this.read(n))), { axis: 1 })]);
    return g.op('MatMul', [x, g.initializer(name, transpose(stacked(names.map((n) => this.read(n))), total, inDim), [inDim, total])]);
  }

  /** A layer's projection `part`: linear, plus its bias [out] where the family has one. */
  private projection(x: string, layer: number, part: LayerPart, outDim: number, inDim: number): string {
    return this.withBias(this.linear(x, layerTensorName(layer, part), outDim, inDim), layer, part, outDim);
  }

  private withBias(y: string, layer: number, part: LayerPart, outDim: number): string {
    if (this.biases[part] === undefined) return y;
    const name = layerTensorName(layer, part, 'bias');
    return this.g.op('Add', [y, this.weight(name, [outDim], () => this.read(name))]);
  }

  /** The weight [rows, cols] block-quantized, when this graph keeps it so; undefined for f32. */
  private blockQuantized(tensorName: string, rows: number, cols: number): BlockQuantized | undefined {
    if (!this.blockCache.has(tensorName)) this.blockCache.set(tensorName, this.readBlockQuantized(tensorName, rows, cols));
    return this.blockCache.get(tensorName);
  }

  private readBlockQuantized(tensorName: string, rows: number, cols: number): BlockQuantized | undefined {
    if (this.weights.kind !== 'initializers' || this.weights.linears === 'f32') return undefined;
    const { tensors, linears } = this.weights;
    const stored = tensors.readBlockQuantized?.(tensorName);
    if (stored) {
      if (stored.rows !== rows || stored.cols !== cols) {
        throw new ModelError(`${tensors.origin}: tensor "${tensorName}" is stored as [${stored.rows}, ${stored.cols}] blocks, the graph needs [${rows}, ${cols}]`);
      }
      return stored;
    }
    return linears === 'stored' ? undefined : quantize(this.read(tensorName), rows, cols, modeFor(tensorName, linears));
  }

  /**
   * x [T, cols] times the block-quantized W [rows, cols], transposed: [T, rows]. MatMulNBits
   * takes the codes, scales and (where the zero point is not its default) zero points; a
   * weight with offsets (GGUF's minimums) also subtracts sum_b blockSum(x)[b] * offset[n, b],
   * exactly what the offsets contribute: in 4/8 bits where they are integers under a shared
   * scale (integerOffsets), else as an F32 product 1/blockSize the size of the main one.
   */
  private matMulNBits(x: string, tensorName: string, w: BlockQuantized): string {
    const g = this.g;
    const blocks = Math.ceil(w.cols / w.blockSize);
    const product = this.nBits(x, tensorName, { bits: w.bits, blockSize: w.blockSize, rows: w.rows, cols: w.cols, data: w.data, scales: w.scales, zeroPoint: w.zeroPoint });
    if (!w.offsets) return product;
    const integer = this.integerOffsets(x, tensorName, w);
    if (integer) return g.op('Sub', [product, integer]);
    const offsetsT = g.initializer(`${tensorName}.offsets`, transpose(w.offsets, w.rows, blocks), [blocks, w.rows]); // [blocks, rows]
    return g.op('Sub', [product, g.op('MatMul', [this.blockSums(x, w.blockSize, w.cols), offsetsT])]);
  }

  /** One MatMulNBits node: x [T, w.cols] times w [rows, cols] transposed, [T, rows]. */
  private nBits(x: string, tensorName: string, w: BlockQuantized): string {
    const g = this.g;
    const matmul = this.weights.kind === 'initializers' ? this.weights.matmul : 'int8';
    const blocks = Math.ceil(w.cols / w.blockSize);
    const inputs = [
      x,
      g.initializer(tensorName, w.data, [w.rows, blocks, (w.blockSize * w.bits) / 8]),
      g.initializer(`${tensorName}.scales`, w.scales, [w.rows, blocks]),
    ];
    if (w.zeroPoint !== zeroPoint(w.bits)) inputs.push(g.initializer(`${tensorName}.zero_points`, zeroPoints(w, blocks), [w.rows * Math.ceil((blocks * w.bits) / 8)]));
    const attrs = { K: w.cols, N: w.rows, bits: w.bits, block_size: w.blockSize, accuracy_level: ACCURACY_LEVEL[matmul] };
    return g.op('MatMulNBits', inputs, attrs, MS_DOMAIN);
  }

  /**
   * The offsets' product when they are integers under one scale per super-block (the K-quants:
   * offset = dmin * min): a second MatMulNBits over the input's sums of `width`-element groups,
   * 16 groups to a super-block, so that one of its blocks (16 columns) is one super-block under
   * its dmin and each group's code is its sub-block's min. Exact in the weights, and 1/width the
   * size of the main product; undefined where the shapes do not allow it (the F32 product then).
   */
  private integerOffsets(x: string, tensorName: string, w: BlockQuantized): string | undefined {
    if (!w.offsetCodes) return undefined;
    const { codes, scales, group } = w.offsetCodes;
    const superBlock = w.blockSize * group;
    const width = superBlock / 16;
    if (!Number.isInteger(width) || w.blockSize % width !== 0 || w.cols % superBlock !== 0) return undefined;
    const columns = w.cols / width; // this product's K
    const perSubBlock = w.blockSize / width;
    const subBlocks = w.cols / w.blockSize; // per row
    const bits = codes.every((c) => c < 16) ? 4 : 8;
    const data = new Uint8Array((w.rows * columns * bits) / 8);
    for (let r = 0; r < w.rows; r++) {
      for (let c = 0; c < columns; c++) {
        const code = codes[r * subBlocks + Math.floor(c / perSubBlock)]!;
        const at = r * columns + c;
        if (bits === 8) data[at] = code;
        else data[at >> 1]! |= c & 1 ? code << 4 : code; // element 2i: low nibble, 2i + 1: high
      }
    }
    const offsets = { bits, blockSize: 16, rows: w.rows, cols: columns, data, scales, zeroPoint: 0 } as const;
    return this.nBits(this.blockSums(x, width, w.cols), `${tensorName}.offset_codes`, offsets);
  }

  /** Sums of x [T, cols] over blocks of `blockSize` columns: [T, cols / blockSize], built once per x and size. */
  private blockSums(x: string, blockSize: number, cols: number): string {
    const key = `${x}/${blockSize}`;
    let sums = this.blockSumCache.get(key);
    if (sums === undefined) {
      const g = this.g;
      const blocks = g.op('Reshape', [x, g.ints([-1, cols / blockSize, blockSize])]); // [T, cols / blockSize, blockSize]
      sums = g.op('ReduceSum', [blocks, g.ints([-1])], { keepdims: 0 });
      this.blockSumCache.set(key, sums);
    }
    return sums;
  }

  private read(tensorName: string): Float32Array {
    if (this.weights.kind !== 'initializers') throw new Error(`weights are graph inputs; ${tensorName} is not read`);
    return this.weights.tensors.readF32(tensorName);
  }

  /** RMSNorm over the last axis (width C, or D for q/k norms): x / sqrt(mean(x^2) + eps) * w (ORT fuses this pattern). */
  private rmsNorm(x: string, tensorName: string, width = this.c.hiddenSize): string {
    const g = this.g;
    const w = this.weight(tensorName, [width], () => this.read(tensorName));
    const meanSquare = g.op('ReduceMean', [g.op('Pow', [x, g.scalar(2)]), g.ints([-1])], { keepdims: 1 });
    const rms = g.op('Sqrt', [g.op('Add', [meanSquare, g.scalar(this.c.rmsNormEps)])]);
    return g.op('Mul', [g.op('Div', [x, rms]), w]);
  }

  /** cos and sin of the rotary angles, each [T, 1, D], shared by every layer. */
  private rotaryTables(positions: string): Rope {
    const g = this.g;
    const half = this.c.headDim / 2;
    const invFreq = Float32Array.from(ropeInverseFrequencies(this.c.headDim, this.c.ropeTheta, this.c.ropeScaling));
    const pos = g.op('Unsqueeze', [g.op('Cast', [positions], { to: DATA_TYPE[g.float] }), g.ints([1])]); // [T, 1]
    const angles = g.op('Mul', [pos, g.initializer('rope_inv_freq', invFreq, [1, half])]); // [T, D/2]
    const full = g.op('Unsqueeze', [g.op('Concat', [angles, angles], { axis: -1 }), g.ints([1])]); // [T, 1, D]
    return { cos: g.op('Cos', [full]), sin: g.op('Sin', [full]) };
  }

  /**
   * Rotary embedding, rotate-half convention: x*cos + [-x2, x1]*sin, x [T, heads, D]. [-x2, x1]
   * is x times a signed permutation matrix: one MatMul instead of a Split, a Neg and a Concat,
   * and exact (each output is one input times ±1 plus zeros).
   */
  private rotate(x: string, rope: Rope): string {
    const g = this.g;
    return g.op('Add', [g.op('Mul', [x, rope.cos]), g.op('Mul', [g.op('MatMul', [x, this.halfTurn()]), rope.sin])]);
  }

  /** R [D, D] with x·R = [-x2, x1] (x1, x2 the halves of x), built once. */
  private halfTurn(): string {
    if (this.halfTurnMatrix) return this.halfTurnMatrix;
    const D = this.c.headDim;
    const half = D / 2;
    const r = new Float32Array(D * D);
    for (let j = 0; j < half; j++) {
      r[(j + half) * D + j] = -1; // output j < half: -x[j + half]
      r[j * D + j + half] = 1; // output j + half: x[j]
    }
    this.halfTurnMatrix = this.g.initializer('rope_half_turn', r, [D, D]);
    return this.halfTurnMatrix;
  }

  /**
   * The attention heads of x: queries (rotated, pre-scaled by 1/sqrt(D)), keys (rotated) and
   * values, shaped [...leading, heads, D]; the family's biases and q/k norms applied.
   */
  private heads(x: string, layer: number, rope: Rope, leading: number[]): { qRot: string; kRot: string; v: string } {
    const g = this.g;
    const { hiddenSize: C, numHeads: H, numKvHeads: K, headDim: D } = this.c;
    const parts = [['self_attn.q_proj', H * D], ['self_attn.k_proj', K * D], ['self_attn.v_proj', K * D]] as const;
    const joint = this.c.qkNorm ? undefined : this.jointProjection(x, layer, parts, C);
    if (joint) {
      // All heads rotated at once, the value heads by the identity (cos 1, sin 0): one rotation a
      // layer instead of two, each value unchanged.
      const byHead = g.op('Reshape', [joint, g.ints([...leading, H + 2 * K, D])]);
      const [q, k, v] = g.opMulti('Split', [this.rotate(byHead, this.qkvRope(rope)), g.ints([H, K, K])], 3, { axis: -2 });
      return { qRot: q!, kRot: k!, v: v! };
    }
    const [qFlat, kFlat, vFlat] = this.projections(x, layer, parts, C);
    let q = g.op('Reshape', [qFlat!, g.ints([...leading, H, D])]);
    let k = g.op('Reshape', [kFlat!, g.ints([...leading, K, D])]);
    const v = g.op('Reshape', [vFlat!, g.ints([...leading, K, D])]);
    if (this.c.qkNorm) {
      q = this.rmsNorm(q, layerTensorName(layer, 'self_attn.q_norm'), D);
      k = this.rmsNorm(k, layerTensorName(layer, 'self_attn.k_norm'), D);
    }
    return { qRot: g.op('Mul', [this.rotate(q, rope), g.scalar(1 / Math.sqrt(D))]), kRot: this.rotate(k, rope), v };
  }

  /**
   * The rotary tables for q, k and v heads side by side ([T, H+2K, D]), built once for every
   * layer: q's times 1/sqrt(D), the queries' scale (exact where D is a power of 4), v's the
   * identity (cos 1, sin 0).
   */
  private qkvRope(rope: Rope): Rope {
    if (rope.qkv) return rope.qkv;
    const g = this.g;
    const { numHeads: H, numKvHeads: K, headDim: D } = this.c;
    const heads = (table: string, n: number) => g.op('Expand', [table, g.ints([1, n, 1])]);
    const side = (table: string, identity: string) => {
      const scaled = g.op('Mul', [table, g.scalar(1 / Math.sqrt(D))]);
      return g.op('Concat', [heads(scaled, H), heads(table, K), heads(identity, K)], { axis: -2 });
    };
    const zeros = g.op('Mul', [rope.sin, g.scalar(0)]); // [T, 1, D], the tables' shape whatever T is
    rope.qkv = { cos: side(rope.cos, g.op('Add', [zeros, g.scalar(1)])), sin: side(rope.sin, zeros) };
    return rope.qkv;
  }

  /**
   * Attention per window (training layout, W windows of Tw rows, no past, causal): the same
   * maths as `attention` with the windows as a batch dimension, so scores are [W*K, G*Tw, Tw]
   * rather than [K, G*W*Tw, W*Tw] with most entries masked. The queries go in `ATTENTION_CHUNKS`
   * chunks of Tc rows: chunk j only multiplies the keys 0..(j+1)*Tc that a causal row can see,
   * which skips most of the masked half of the products; its mask is a constant [G*Tc, (j+1)*Tc].
   */
  private windowedAttention(x: string, layer: number, rope: Rope, W: number, Tw: number): string {
    const g = this.g;
    const { hiddenSize: C, numHeads: H, numKvHeads: K, headDim: D } = this.c;
    const G = H / K;
    const { qRot, kRot, v } = this.heads(x, layer, rope, [W, Tw]); // [W, Tw, H, D], [W, Tw, K, D], [W, Tw, K, D]
    const queries = g.op('Reshape', [
      g.op('Transpose', [g.op('Reshape', [qRot, g.ints([W, Tw, K, G, D])])], { perm: [0, 2, 3, 1, 4] }), // [W, K, G, Tw, D]
      g.ints([W * K, G, Tw, D]),
    ]);
    const keysT = g.op('Reshape', [g.op('Transpose', [kRot], { perm: [0, 2, 3, 1] }), g.ints([W * K, D, Tw])]);
    const values = g.op('Reshape', [g.op('Transpose', [v], { perm: [0, 2, 1, 3] }), g.ints([W * K, Tw, D])]);
    const Tc = Tw % ATTENTION_CHUNKS === 0 ? Tw / ATTENTION_CHUNKS : Tw;
    const contexts: string[] = [];
    for (let start = 0; start < Tw; start += Tc) {
      const end = start + Tc;
      const slice = (value: string, axis: number, from: number, to: number) => g.op('Slice', [value, g.ints([from]), g.ints([to]), g.ints([axis])]);
      const chunkQueries = g.op('Reshape', [slice(queries, 2, start, end), g.ints([W * K, G * Tc, D])]);
      const scores = g.op('MatMul', [chunkQueries, slice(keysT, 2, 0, end)]); // [W*K, G*Tc, end]
      const weights = g.op('Softmax', [g.op('Add', [scores, this.causalChunkMask(G, start, Tc)])], { axis: -1 });
      const context = g.op('MatMul', [weights, slice(values, 1, 0, end)]); // [W*K, G*Tc, D]
      contexts.push(g.op('Reshape', [context, g.ints([W * K, G, Tc, D])]));
    }
    const context = contexts.length === 1 ? contexts[0]! : g.op('Concat', contexts, { axis: 2 }); // [W*K, G, Tw, D]
    const merged = g.op('Reshape', [
      g.op('Transpose', [g.op('Reshape', [context, g.ints([W, K, G, Tw, D])])], { perm: [0, 3, 1, 2, 4] }), // [W, Tw, K, G, D]
      g.ints([W * Tw, H * D]),
    ]);
    return this.projection(merged, layer, 'self_attn.o_proj', C, H * D);
  }

  /**
   * Additive causal mask [G*Tc, start+Tc] of query rows start.. start+Tc-1, repeated for G heads;
   * with a sliding window, keys `window` or more positions back are masked too.
   */
  private causalChunkMask(G: number, start: number, Tc: number): string {
    const columns = start + Tc;
    const window = this.c.slidingWindow ?? Infinity;
    const mask = new Float32Array(G * Tc * columns);
    for (let row = 0; row < G * Tc; row++) {
      const position = start + (row % Tc);
      mask.fill(-Infinity, row * columns + position + 1, (row + 1) * columns);
      if (position - window >= 0) mask.fill(-Infinity, row * columns, row * columns + position - window + 1);
    }
    const name = `causal_mask_${G}x${start}+${Tc}`;
    return this.g.has(name) ? name : this.g.initializer(name, this.g.float === 'float64' ? Float64Array.from(mask) : mask, [G * Tc, columns]);
  }

  /** `groupMask` [G*T, S] is the mask repeated for the G query heads that share a kv head. */
  private attention(x: string, layer: number, rope: Rope, groupMask: string): string {
    const g = this.g;
    const { numHeads: H, numKvHeads: K, headDim: D } = this.c;
    const G = H / K;
    const { qRot, kRot, v } = this.heads(x, layer, rope, [-1]); // [T, H, D], [T, K, D], [T, K, D]
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
    if (!this.layout.orderFreeSoftmax) {
      const weights = g.op('Softmax', [g.op('Add', [g.op('MatMul', [qGrouped, keysT]), groupMask])], { axis: -1 }); // [K, G*T, S]
      return this.merged(g.op('MatMul', [weights, valuesByHead]), layer); // [K, G*T, D]
    }
    // A one-row step with one query head per kv head multiplies single rows (M = 1), which MLAS
    // does with another kernel than several rows, rounding otherwise: there, the first row goes
    // twice, so that every product has at least two rows, and the copy is dropped after.
    const firstRowTwice = G === 1;
    const twice = (value: string, axis: number) => g.op('Concat', [value, g.op('Slice', [value, g.ints([0]), g.ints([1]), g.ints([axis])])], { axis });
    const scores = g.op('MatMul', [firstRowTwice ? twice(qGrouped, 1) : qGrouped, keysT]); // [K, G*T (+1), S]
    const attended = this.orderFreeAttention(g.op('Add', [scores, firstRowTwice ? twice(groupMask, 0) : groupMask]), valuesByHead, D);
    return this.merged(firstRowTwice ? g.op('Slice', [attended, g.ints([0]), g.ints([-1]), g.ints([1])]) : attended, layer);
  }

  /** The attention heads' outputs [K, G*T, D] back to rows [T, H*D], through the output projection. */
  private merged(context: string, layer: number): string {
    const g = this.g;
    const { hiddenSize: C, numHeads: H, numKvHeads: K, headDim: D } = this.c;
    const G = H / K;
    const merged = g.op('Reshape', [
      g.op('Transpose', [g.op('Reshape', [context, g.ints([K, G, -1, D])])], { perm: [2, 0, 1, 3] }), // [T, K, G, D]
      g.ints([-1, H * D]),
    ]);
    return this.projection(merged, layer, 'self_attn.o_proj', C, H * D);
  }

  /**
   * softmax(masked) · values with each row's normalising sum taken by the same product as the
   * values (CallLayout.orderFreeSoftmax): exponentials times [values | 1] in one MatMul, whose
   * last column is the sum, then a division. masked [K, G*T, S], values [K, S, D] → [K, G*T, D].
   */
  private orderFreeAttention(masked: string, values: string, D: number): string {
    const g = this.g;
    const exps = g.op('Exp', [g.op('Sub', [masked, g.op('ReduceMax', [masked, g.ints([-1])], { keepdims: 1 })])]);
    // Every layer attends over the same S columns: one column of ones serves them all.
    this.onesColumn ??= g.op('Expand', [g.scalar(1), g.op('Concat', [g.op('Shape', [values], { start: 0, end: 2 }), g.ints([1])], { axis: 0 })]); // [K, S, 1]
    const withOnes = g.op('Concat', [values, this.onesColumn], { axis: 2 }); // [K, S, D+1]
    const sums = g.op('MatMul', [exps, withOnes]); // [K, G*T, D+1]
    const [weighted, total] = g.opMulti('Split', [sums, g.ints([D, 1])], 2, { axis: 2 });
    return g.op('Div', [weighted!, total!]);
  }

  private mlp(x: string, layer: number): string {
    const g = this.g;
    const { hiddenSize: C, intermediateSize: F } = this.c;
    const [gate, up] = this.projections(x, layer, [['mlp.gate_proj', F], ['mlp.up_proj', F]], C) as [string, string];
    const silu = g.op('Mul', [gate, g.op('Sigmoid', [gate])]);
    return this.projection(g.op('Mul', [silu, up]), layer, 'mlp.down_proj', C, F);
  }

  /**
   * The mask [T, S] with the sliding window applied (when the config has one): row t may not see
   * keys at positions <= position[t] - window. Cached row j holds position j (every decoder
   * appends accepted rows in order), the new rows hold `positions`.
   */
  private windowed(mask: string, positions: string): string {
    const window = this.c.slidingWindow;
    if (window === undefined) return mask;
    const g = this.g;
    const past = this.layout.past;
    let keyPositions = positions; // [S]
    if (past !== null) {
      // [P]: 0..P-1; a constant when P is fixed (graphs that are differentiated need static shapes).
      const scalar = (value: string) => g.op('Squeeze', [value, g.ints([0])]);
      const P = () => g.op('Sub', [g.op('Shape', [mask], { start: 1, end: 2 }), g.op('Shape', [positions])]); // S - T
      const cached = typeof past === 'number' ? g.ints(Array.from({ length: past }, (_, j) => j)) : g.op('Range', [scalar(g.ints([0])), scalar(P()), scalar(g.ints([1]))]);
      keyPositions = g.op('Concat', [cached, positions], { axis: 0 });
    }
    const distance = g.op('Sub', [g.op('Unsqueeze', [positions, g.ints([1])]), g.op('Unsqueeze', [keyPositions, g.ints([0])])]); // [T, S]
    const inside = g.op('Less', [distance, g.ints([window])]);
    return g.op('Add', [mask, g.op('Where', [inside, g.scalar(0), g.scalar(-Infinity)])]);
  }

  /**
   * Adds the inputs (or takes the values `given`) and every layer; returns the logits value
   * [T, V]. With `windows` W, positions are [Tw], shared by every window, and attention is causal
   * within each window (no mask input).
   */
  build(given: ForwardInputs = {}): string {
    const g = this.g;
    const { hiddenSize: C, vocabSize: V } = this.c;
    const { rows, past, windows = 1 } = this.layout;
    const windowRows: Dim = this.layout.windows === undefined ? rows : (rows as number) / windows;
    let h = given.embeds ?? g.input(GRAPH_INPUTS.embeds, g.float, [rows, C]);
    const positions = given.positions ?? g.input(GRAPH_INPUTS.positions, 'int64', [windowRows]);
    const columns = past === null ? rows : typeof past === 'number' && typeof rows === 'number' ? past + rows : 'S';
    const rope = this.rotaryTables(positions);
    const perWindow = this.layout.windows !== undefined;
    // Per-window attention builds its own causal masks; the general one takes the mask as data.
    const mask = perWindow ? undefined : this.windowed(given.mask ?? g.input(GRAPH_INPUTS.mask, g.float, [rows, columns]), positions);
    const groupMask = mask && g.op('Tile', [mask, g.ints([this.c.numHeads / this.c.numKvHeads, 1])]); // [G*T, S]
    for (let layer = 0; layer < this.c.numLayers; layer++) {
      const x = this.rmsNorm(h, layerTensorName(layer, 'input_layernorm'));
      const attended = perWindow ? this.windowedAttention(x, layer, rope, windows, windowRows as number) : this.attention(x, layer, rope, groupMask!);
      h = g.op('Add', [h, attended]);
      h = g.op('Add', [h, this.mlp(this.rmsNorm(h, layerTensorName(layer, 'post_attention_layernorm')), layer)]);
    }
    const normed = this.rmsNorm(h, FINAL_NORM);
    const x = given.beforeHead ? given.beforeHead(normed) : normed;
    if (this.c.tieWordEmbeddings && this.weights.kind === 'inputs') {
      // Training feeds the one embedding table [V, C]; the head multiplies by its transpose.
      const table = given.table ?? g.input(EMBED_TOKENS, g.float, [V, C]);
      return g.op('MatMul', [x, g.op('Transpose', [table], { perm: [1, 0] })]);
    }
    return this.linear(x, this.c.tieWordEmbeddings ? EMBED_TOKENS : LM_HEAD, V, C);
  }
}

export interface QuantizeOptions {
  /** Quantize the linear weights the source does not store block-quantized already. */
  quantize?: QuantizeMode;
  /** How block-quantized weights are multiplied; 'int8' unless told. */
  matmul?: QuantizedMatmul;
}

/** How an inference graph is built: its weights, and whether it takes a prompt head (for N prompt tokens). */
export interface InferenceOptions extends QuantizeOptions {
  /** N: the graph takes a prompt head for N prompt tokens as inputs (model/prompt-head.ts). */
  promptHead?: number;
}

/** Bump when the graph changes, so graphs compiled and cached by older code are not reused. */
export const GRAPH_VERSION = 'llama-graph-11'; // 2: block-quantized linear weights (MatMulNBits); 3: every GGUF quantized type kept as stored (zero points, offsets); 4: K-quant offsets as integers; 5: decoding softmax summed in float64; 6: the prompt head reads each prompt row's parent row too; 7: q/k/v and gate/up as one product each; 8: graph outputs without an Identity, one ones column for all layers; 9: q, k and v heads rotated together; 10: the half turn of the rotary embedding as a MatMul, the queries' scale in their tables; 11: one Split for the order-free attention's sums

/**
 * A graph built from a checkpoint's weights, as a runtime opens it. `variant` names what
 * `build` makes of the weights and must change whenever it would build a different graph; the
 * checkpoint is identified by its config, tensor list and files (TensorSource.stamp).
 */
export function checkpointGraph(variant: string, config: LlamaConfig, tensors: TensorSource, build: (external: ExternalDataSink) => Uint8Array): GraphSpec {
  const files = tensors.stamp ?? tensors.origin;
  return { identity: [GRAPH_VERSION, variant, JSON.stringify(config), JSON.stringify(tensors.list()), files].join('\n'), build };
}

/** The inference forward of `tensors`, with linear weights as `options` asks. */
export function inferenceGraph(config: LlamaConfig, tensors: TensorSource, options: InferenceOptions = {}): GraphSpec {
  const { quantize, matmul, promptHead } = options;
  const variant = ['inference', ...(quantize ? [quantize] : []), ...(matmul && matmul !== 'int8' ? [`${matmul} matmul`] : []), ...(promptHead ? [`prompt head ${promptHead}`] : [])].join(' ');
  return checkpointGraph(variant, config, tensors, (external) => buildLlamaGraph(config, tensors, external, options));
}

/**
 * Builds the inference graph. Weights are read one tensor at a time from `tensors` and streamed
 * to `external`; returns the serialised model, to be saved beside that data. Linear weights are
 * kept as the source stores them, or quantized as `options` asks (LinearWeights). With
 * `promptHead` N, the graph also takes a prompt head and which rows it applies to
 * (PROMPT_HEAD_INPUTS; model/prompt-head.ts).
 */
export function buildLlamaGraph(config: LlamaConfig, tensors: TensorSource, external: ExternalDataSink, options: InferenceOptions = {}): Uint8Array {
  const g = new GraphBuilder('ppd_llama', external);
  const weights: WeightMode = { kind: 'initializers', tensors, linears: options.quantize ?? 'stored', matmul: options.matmul ?? 'int8' };
  const N = options.promptHead;
  const C = config.hiddenSize;
  const beforeHead =
    N === undefined
      ? undefined
      : (hidden: string) =>
          promptHeadOnRows(
            g,
            hidden,
            g.input(PROMPT_HEAD_INPUTS.select, 'float32', ['T', N]),
            g.input(PROMPT_HEAD_INPUTS.parents, 'int64', ['T']),
            g.input(PROMPT_HEAD_INPUTS.weights, 'float32', [2 * C, N * C]),
            g.input(PROMPT_HEAD_INPUTS.bias, 'float32', [N, C]),
            N,
            C,
          );
  const logits = new LlamaGraph(g, config, weights, { rows: 'T', past: 'P', emitKeys: true, orderFreeSoftmax: true }).build({ beforeHead });
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
 * Adds a training forward over `windows` independent sequences of `windowRows` rows each (weights
 * as inputs, no past, causal attention per window) to `g`, from values the caller already has:
 * `embeds` [windows*windowRows, C], `positions` [windowRows] and, for a tied head, `table`
 * [V, C]. Returns the logits value [windows*windowRows, V].
 */
export function windowedTrainingForward(g: GraphBuilder, config: LlamaConfig, windows: number, windowRows: number, given: ForwardInputs): string {
  return new LlamaGraph(g, config, { kind: 'inputs' }, { rows: windows * windowRows, past: null, emitKeys: false, windows }).build(given);
}

/**
 * Adds a forward of `rows` new rows after exactly `past` cached rows (null: no cache), with the
 * checkpoint's weights baked in (frozen, f32 even where the source stores blocks), to `g`, from
 * the inputs `given` or new graph inputs; returns its logits [rows, V]. Prompt-token training
 * differentiates it with respect to the prompt rows' embeddings (and a prompt head) only.
 */
export function frozenForward(g: GraphBuilder, config: LlamaConfig, tensors: TensorSource, rows: number, past: number | null, given: ForwardInputs = {}): string {
  return new LlamaGraph(g, config, { kind: 'initializers', tensors, linears: 'f32', matmul: 'f32' }, { rows, past, emitKeys: false }).build(given);
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
