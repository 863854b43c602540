/**
 * Reverse-mode automatic differentiation of a GraphBuilder graph, emitted as more ONNX nodes.
 *
 * ONNX Runtime's inference build has no gradient ops, so the backward pass is written with the
 * same forward ops (MatMul, Gemm, ReduceSum, ...) into the same graph: one session run then
 * returns the loss and its gradients. `addGradients` walks the recorded nodes from the loss
 * backwards and calls one vector-Jacobian product (VJP) rule per op type; each rule gets dY (the
 * gradient of the loss with respect to the node's output) and returns dX for the inputs that
 * need one. Gradients reaching a value from several consumers are summed.
 *
 * Only values that depend on a `wrt` value through float tensors are differentiated: integer and
 * boolean paths (positions, Cast from int, Equal, OneHot indices) and constants (masks, rotary
 * tables) are skipped, so their ops need no rule. Every value on a differentiated path must have
 * a static numeric shape: the rules size their Reshape / Expand / ReduceSum from it.
 *
 * Not here: optimisers, loss functions, second derivatives.
 */
import { GraphBuilder, GraphError, isFloat, DATA_TYPE, type AttrValue, type GraphNode } from './builder.ts';
import { sliceRange } from './shapes.ts';

/** What a rule sees of the node it differentiates. */
class Vjp {
  constructor(
    readonly g: GraphBuilder,
    readonly node: GraphNode,
    /** dY of each output; undefined where no gradient reaches that output. */
    readonly dys: (string | undefined)[],
    private readonly needed: boolean[],
  ) {}

  /** Whether input `i` needs a gradient (it depends on a wrt value through floats). */
  needs(i: number): boolean {
    return this.needed[i] ?? false;
  }
  x(i: number): string {
    return this.node.inputs[i]!;
  }
  y(i = 0): string {
    return this.node.outputs[i]!;
  }
  intAttr(name: string, fallback: number): number {
    const v = this.node.attrs[name];
    return typeof v === 'number' ? v : fallback;
  }
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}): string {
    return this.g.op(opType, inputs, attrs);
  }

  /** The static numeric shape of `value`; the error names this node when it is not known. */
  dims(value: string): number[] {
    const shape = this.g.shapeOf(value);
    if (!shape || !shape.every((d): d is number => typeof d === 'number')) {
      throw this.error(`needs the static shape of '${value}', which is ${shape ? `[${shape.join(', ')}]` : 'unknown'}`);
    }
    return shape;
  }

  /** The values of a constant input (a shape, axes, exponent). */
  constant(i: number): number[] {
    const value = this.g.constantOf(this.x(i));
    if (!value) throw this.error(`needs input ${i} ('${this.x(i)}') to be a constant`);
    return value;
  }

  /** An axis attribute normalised against the rank of input 0. */
  axis(name: string, fallback: number): number {
    const a = this.intAttr(name, fallback);
    return a < 0 ? a + this.dims(this.x(0)).length : a;
  }

  /**
   * Sums `dy` over the axes along which input `i` was broadcast to the output's shape, so the
   * result has input i's shape: leading extra axes and axes where the input had size 1.
   */
  unbroadcast(dy: string, i: number): string {
    const from = this.dims(dy);
    const to = this.dims(this.x(i));
    const lead = from.length - to.length;
    const axes = from.flatMap((d, a) => (a < lead || (to[a - lead] === 1 && d !== 1) ? [a] : []));
    if (axes.length === 0) return lead === 0 ? dy : this.reshape(dy, to);
    const summed = this.op('ReduceSum', [dy, this.g.ints(axes)], { keepdims: 1 });
    return lead === 0 ? summed : this.reshape(summed, to);
  }

  reshape(value: string, dims: number[]): string {
    return this.op('Reshape', [value, this.g.ints(dims)]);
  }

  /** Zeros of a static shape, expanded from a scalar at run time (nothing large in the file). */
  zeros(dims: number[]): string {
    return this.op('Expand', [this.g.scalar(0), this.g.ints(dims)]);
  }

  error(detail: string): GraphError {
    return new GraphError(`autodiff: ${this.node.opType} (${this.node.name}) ${detail}`);
  }
}

/** dX for each input of the node (undefined where not needed); `dy` is output 0's gradient. */
type VjpRule = (v: Vjp, dy: string) => (string | undefined)[];

/** Runs `grad` only for an input that needs it. */
const when = (v: Vjp, i: number, grad: () => string): string | undefined => (v.needs(i) ? grad() : undefined);

/** The axes of a Reduce node (input 1 or the attribute; all axes when absent), normalised. */
function reducedAxes(v: Vjp): number[] {
  const rank = v.dims(v.x(0)).length;
  const listed = v.node.inputs[1] ? v.constant(1) : (v.node.attrs.axes as number[] | undefined);
  if ((!listed || listed.length === 0) && v.intAttr('noop_with_empty_axes', 0) === 1) return [];
  const axes = listed && listed.length > 0 ? listed : Array.from({ length: rank }, (_, a) => a);
  return axes.map((a) => (a < 0 ? a + rank : a));
}

/** Y = Reduce(X): dX = dY with the reduced axes restored (size 1), expanded back to X's shape. */
function expandReduced(v: Vjp, dy: string, scale: number): string {
  const xDims = v.dims(v.x(0));
  const axes = reducedAxes(v);
  const kept = xDims.map((d, a) => (axes.includes(a) ? 1 : d));
  let g = v.intAttr('keepdims', 1) === 1 ? dy : v.reshape(dy, kept);
  if (scale !== 1) g = v.op('Mul', [g, v.g.scalar(scale)]);
  return v.op('Expand', [g, v.g.ints(xDims)]);
}

/** Swaps the last two axes of a value of rank `rank`. */
function swapLast(v: Vjp, value: string, rank: number): string {
  const perm = Array.from({ length: rank }, (_, a) => a);
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1]!, perm[rank - 2]!];
  return v.op('Transpose', [value], { perm });
}

/**
 * Y = A @ B, A [..., M, K], B [..., K, N]: dA = dY @ B^T, dB = A^T @ dY, each summed over the
 * batch axes it was broadcast along. A 2-D B (a weight shared by every row) takes the fast path:
 * the batch is flattened into rows and both products are single Gemms with transposed operands.
 */
const matMul: VjpRule = (v, dy) => {
  const [a, b] = [v.x(0), v.x(1)];
  const aDims = v.dims(a);
  const bDims = v.dims(b);
  if (aDims.length < 2 || bDims.length < 2) throw v.error('has a 1-D operand; reshape it to 2-D first');
  if (bDims.length === 2) {
    const [k, n] = bDims as [number, number];
    const flat = aDims.length === 2;
    const a2 = flat ? a : v.reshape(a, [-1, k]); // [R, K]
    const dy2 = flat ? dy : v.reshape(dy, [-1, n]); // [R, N]
    return [
      when(v, 0, () => {
        const da = v.op('Gemm', [dy2, b], { transB: 1 }); // [R, N] @ [K, N]^T
        return flat ? da : v.reshape(da, aDims);
      }),
      when(v, 1, () => v.op('Gemm', [a2, dy2], { transA: 1 })), // [R, K]^T @ [R, N]
    ];
  }
  return [
    when(v, 0, () => v.unbroadcast(v.op('MatMul', [dy, swapLast(v, b, bDims.length)]), 0)),
    when(v, 1, () => v.unbroadcast(v.op('MatMul', [swapLast(v, a, aDims.length), dy]), 1)),
  ];
};

/** Y = X^E: dX = dY * E * X^(E-1), dE = dY * Y * ln X (X > 0). A constant E = 2 is dY * 2X. */
const pow: VjpRule = (v, dy) => {
  const [x, e] = [v.x(0), v.x(1)];
  const dx = () => {
    const c = v.g.constantOf(e);
    if (c && c.length === 1) {
      const slope = c[0] === 2 ? x : c[0] === 1 ? undefined : v.op('Pow', [x, v.g.scalar(c[0]! - 1)]);
      const scaled = v.op('Mul', [dy, v.g.scalar(c[0]!)]);
      return v.unbroadcast(slope ? v.op('Mul', [scaled, slope]) : scaled, 0);
    }
    const slope = v.op('Mul', [e, v.op('Pow', [x, v.op('Sub', [e, v.g.scalar(1)])])]);
    return v.unbroadcast(v.op('Mul', [dy, slope]), 0);
  };
  return [when(v, 0, dx), when(v, 1, () => v.unbroadcast(v.op('Mul', [dy, v.op('Mul', [v.y(), v.op('Log', [x])])]), 1))];
};

/** Y = Concat(X_0, X_1, ...) on `axis`: dX_i = the slice of dY where X_i landed. */
const concat: VjpRule = (v, dy) => {
  const axis = v.axis('axis', 0);
  let start = 0;
  return v.node.inputs.map((x, i) => {
    const size = v.dims(x)[axis]!;
    const from = start;
    start += size;
    return when(v, i, () => v.op('Slice', [dy, v.g.ints([from]), v.g.ints([from + size]), v.g.ints([axis])]));
  });
};

/** (Y_0, Y_1, ...) = Split(X) on `axis`: dX = Concat(dY_0, dY_1, ...), zeros for unused outputs. */
const split: VjpRule = (v) => {
  const parts = v.dys.map((d, i) => d ?? v.zeros(v.dims(v.y(i))));
  return [v.op('Concat', parts, { axis: v.axis('axis', 0) })];
};

/**
 * Y = Tile(X, r): Y on axis a is r_a copies of X's d_a entries, so viewing dY as
 * [r_0, d_0, r_1, d_1, ...] and summing the r axes gives dX.
 */
const tile: VjpRule = (v, dy) => {
  const xDims = v.dims(v.x(0));
  const repeats = v.constant(1);
  if (repeats.every((r) => r === 1)) return [dy];
  const view = xDims.flatMap((d, a) => [repeats[a]!, d]);
  const axes = xDims.map((_, a) => 2 * a);
  return [v.op('ReduceSum', [v.reshape(dy, view), v.g.ints(axes)], { keepdims: 0 })];
};

/** Y = Slice(X) with unit steps: dX = dY padded with zeros back to X's shape. */
const slice: VjpRule = (v, dy) => {
  const xDims = v.dims(v.x(0));
  const starts = v.constant(1);
  const ends = v.constant(2);
  const axes = v.node.inputs[3] ? v.constant(3) : starts.map((_, i) => i);
  const steps = v.node.inputs[4] ? v.constant(4) : starts.map(() => 1);
  const pads = new Array<number>(2 * xDims.length).fill(0);
  axes.forEach((axis, i) => {
    if (steps[i] !== 1) throw v.error(`has step ${steps[i]}; only unit steps are differentiated`);
    const a = axis < 0 ? axis + xDims.length : axis;
    const { start, size } = sliceRange(xDims[a]!, starts[i]!, ends[i]!, 1);
    pads[a] = start;
    pads[a + xDims.length] = xDims[a]! - start - size;
  });
  return [v.op('Pad', [dy, v.g.ints(pads)])];
};

/** Y = Gather(X, idx) on axis 0: dX = zeros with dY rows scatter-added at idx (repeats add up). */
const gather: VjpRule = (v, dy) => {
  if (v.axis('axis', 0) !== 0) throw v.error('gathers on an axis other than 0; only axis 0 is differentiated');
  const indices = v.op('Unsqueeze', [v.x(1), v.g.ints([-1])]);
  return [v.op('ScatterND', [v.zeros(v.dims(v.x(0))), indices, dy], { reduction: 'add' })];
};

/** Y = GatherElements(X, idx) on axis: dX = zeros with each dY entry added where it was taken. */
const gatherElements: VjpRule = (v, dy) => {
  const axis = v.axis('axis', 0);
  return [v.op('ScatterElements', [v.zeros(v.dims(v.x(0))), v.x(1), dy], { axis, reduction: 'add' })];
};

/** Same-shape reshapes (Reshape, Unsqueeze, Squeeze): dX = dY reshaped to X's shape. */
const reshapeBack: VjpRule = (v, dy) => [v.reshape(dy, v.dims(v.x(0)))];

/**
 * The VJP of every differentiable op, by ONNX op type. Inputs that are integer (shapes, axes,
 * indices) never need a gradient and get none.
 */
const RULES: Record<string, VjpRule> = {
  /** Y = X: dX = dY. */
  Identity: (_v, dy) => [dy],
  /** Y = -X: dX = -dY. */
  Neg: (v, dy) => [v.op('Neg', [dy])],
  /** Y = sqrt X: dX = dY / (2Y). */
  Sqrt: (v, dy) => [v.op('Div', [v.op('Mul', [dy, v.g.scalar(0.5)]), v.y()])],
  /** Y = e^X: dX = dY * Y. */
  Exp: (v, dy) => [v.op('Mul', [dy, v.y()])],
  /** Y = ln X: dX = dY / X. */
  Log: (v, dy) => [v.op('Div', [dy, v.x(0)])],
  /** Y = 1 / (1 + e^-X): dX = dY * Y * (1 - Y). */
  Sigmoid: (v, dy) => [v.op('Mul', [dy, v.op('Mul', [v.y(), v.op('Sub', [v.g.scalar(1), v.y()])])])],
  /** Y = tanh X: dX = dY * (1 - Y^2). */
  Tanh: (v, dy) => [v.op('Mul', [dy, v.op('Sub', [v.g.scalar(1), v.op('Mul', [v.y(), v.y()])])])],
  /** Y = cos X: dX = -dY * sin X. */
  Cos: (v, dy) => [v.op('Neg', [v.op('Mul', [dy, v.op('Sin', [v.x(0)])])])],
  /** Y = sin X: dX = dY * cos X. */
  Sin: (v, dy) => [v.op('Mul', [dy, v.op('Cos', [v.x(0)])])],
  /** Y = A + B (broadcast): dA = dY, dB = dY, each summed back to its shape. */
  Add: (v, dy) => [when(v, 0, () => v.unbroadcast(dy, 0)), when(v, 1, () => v.unbroadcast(dy, 1))],
  /** Y = X_0 + X_1 + ... (broadcast): dX_i = dY summed back to X_i's shape. */
  Sum: (v, dy) => v.node.inputs.map((_, i) => when(v, i, () => v.unbroadcast(dy, i))),
  /** Y = A - B: dA = dY, dB = -dY. */
  Sub: (v, dy) => [when(v, 0, () => v.unbroadcast(dy, 0)), when(v, 1, () => v.op('Neg', [v.unbroadcast(dy, 1)]))],
  /** Y = A * B: dA = dY * B, dB = dY * A. */
  Mul: (v, dy) => [
    when(v, 0, () => v.unbroadcast(v.op('Mul', [dy, v.x(1)]), 0)),
    when(v, 1, () => v.unbroadcast(v.op('Mul', [dy, v.x(0)]), 1)),
  ],
  /** Y = A / B: dA = dY / B, dB = -dY * Y / B. */
  Div: (v, dy) => [
    when(v, 0, () => v.unbroadcast(v.op('Div', [dy, v.x(1)]), 0)),
    when(v, 1, () => v.op('Neg', [v.unbroadcast(v.op('Div', [v.op('Mul', [dy, v.y()]), v.x(1)]), 1)])),
  ],
  Pow: pow,
  /** Y = Where(C, A, B): dA = dY where C, dB = dY where not C. */
  Where: (v, dy) => {
    const zero = v.g.scalar(0);
    return [
      undefined,
      when(v, 1, () => v.unbroadcast(v.op('Where', [v.x(0), dy, zero]), 1)),
      when(v, 2, () => v.unbroadcast(v.op('Where', [v.x(0), zero, dy]), 2)),
    ];
  },
  MatMul: matMul,
  /** Y = ReduceSum(X, axes): dX = dY broadcast back over the reduced axes. */
  ReduceSum: (v, dy) => [expandReduced(v, dy, 1)],
  /** Y = ReduceMean(X, axes): dX = dY / n broadcast back, n = the number of entries averaged. */
  ReduceMean: (v, dy) => {
    const xDims = v.dims(v.x(0));
    const n = reducedAxes(v).reduce((p, a) => p * xDims[a]!, 1);
    return [expandReduced(v, dy, 1 / n)];
  },
  /** Y = softmax(X) on axis: dX = Y * (dY - sum(dY * Y, axis)). */
  Softmax: (v, dy) => {
    const axes = v.g.ints([v.axis('axis', -1)]);
    const dot = v.op('ReduceSum', [v.op('Mul', [dy, v.y()]), axes], { keepdims: 1 });
    return [v.op('Mul', [v.y(), v.op('Sub', [dy, dot])])];
  },
  /** Y = X - log sum exp X on axis: dX = dY - e^Y * sum(dY, axis). */
  LogSoftmax: (v, dy) => {
    const total = v.op('ReduceSum', [dy, v.g.ints([v.axis('axis', -1)])], { keepdims: 1 });
    return [v.op('Sub', [dy, v.op('Mul', [v.op('Exp', [v.y()]), total])])];
  },
  Reshape: reshapeBack,
  Unsqueeze: reshapeBack,
  Squeeze: reshapeBack,
  /** Y = Transpose(X, perm): dX = Transpose(dY, perm^-1). */
  Transpose: (v, dy) => {
    const rank = v.dims(v.x(0)).length;
    const perm = (v.node.attrs.perm as number[] | undefined) ?? Array.from({ length: rank }, (_, a) => rank - 1 - a);
    const inverse = new Array<number>(rank);
    perm.forEach((p, a) => (inverse[p] = a));
    return [v.op('Transpose', [dy], { perm: inverse })];
  },
  Concat: concat,
  Split: split,
  Tile: tile,
  /** Y = Expand(X, shape): dX = dY summed over the broadcast axes. */
  Expand: (v, dy) => [v.unbroadcast(dy, 0)],
  Slice: slice,
  /** Y = Cast(X) between float types: dX = dY cast back to X's type. */
  Cast: (v, dy) => {
    const from = v.g.typeOf(v.x(0));
    if (!isFloat(from)) throw v.error(`casts from ${from ?? 'an unknown type'}; only float-to-float casts are differentiated`);
    return [v.op('Cast', [dy], { to: DATA_TYPE[from] })];
  },
  Gather: gather,
  GatherElements: gatherElements,
};

/**
 * Adds the gradient of the scalar `loss` with respect to each of `wrt` (graph inputs,
 * initializers or any float values) to `g`, and returns the name of each gradient value (same
 * shape as its wrt value). A wrt value the loss does not depend on gets zeros.
 *
 * With `dLoss`, `loss` may be any float value and `dLoss` is the gradient reaching it (same
 * shape): the backward starts there. For a loss whose gradient has a cheaper closed form than
 * its rules chained (softmax cross-entropy: probabilities minus one-hot).
 */
export function addGradients(g: GraphBuilder, loss: string, wrt: string[], dLoss?: string): Map<string, string> {
  const nodes = [...g.nodes]; // the forward only: nodes added below are not walked
  const lossDims = g.shapeOf(loss);
  if (dLoss === undefined && (!isFloat(g.typeOf(loss)) || !lossDims || lossDims.some((d) => d !== 1))) {
    throw new GraphError(`autodiff: loss '${loss}' must be a float scalar, has shape ${lossDims ? `[${lossDims.join(', ')}]` : 'unknown'}`);
  }
  for (const w of wrt) {
    if (!isFloat(g.typeOf(w))) throw new GraphError(`autodiff: cannot differentiate with respect to '${w}' of type ${g.typeOf(w)}`);
  }

  // Forward: which float values depend on a wrt value (only they carry gradients).
  const depends = new Set(wrt);
  for (const node of nodes) {
    if (!node.inputs.some((x) => depends.has(x))) continue;
    for (const y of node.outputs) if (isFloat(g.typeOf(y)) || g.typeOf(y) === undefined) depends.add(y);
  }

  // Backward: each node's output gradients are complete once every later node is processed.
  const parts = new Map<string, string[]>();
  const add = (value: string, grad: string) => parts.set(value, [...(parts.get(value) ?? []), grad]);
  /** The sum of the contributions `value` received (one Add for two, one Sum for more). */
  const gradOf = (value: string): string | undefined => {
    const p = parts.get(value);
    if (!p || p.length === 1) return p?.[0];
    const summed = g.op(p.length === 2 ? 'Add' : 'Sum', p);
    parts.set(value, [summed]);
    return summed;
  };
  if (dLoss !== undefined) add(loss, dLoss);
  else if (depends.has(loss)) add(loss, lossDims!.length === 0 ? g.scalar(1) : g.floats([1], lossDims as number[]));
  for (let n = nodes.length - 1; n >= 0; n--) {
    const node = nodes[n]!;
    const dys = node.outputs.map(gradOf);
    if (dys.every((d) => d === undefined)) continue;
    const rule = RULES[node.opType];
    if (!rule) {
      throw new GraphError(`autodiff: no gradient rule for ${node.opType} (${node.name}), which lies between the loss and a wrt value`);
    }
    const needed = node.inputs.map((x) => depends.has(x));
    const v = new Vjp(g, node, dys, needed);
    const dxs = rule(v, dys[0] ?? '');
    node.inputs.forEach((x, i) => {
      const dx = dxs[i];
      if (needed[i] && dx) add(x, dx);
    });
  }

  const grads = new Map<string, string>();
  for (const w of wrt) {
    const grad = gradOf(w);
    if (grad) {
      grads.set(w, grad);
      continue;
    }
    const dims = g.shapeOf(w);
    if (!dims || !dims.every((d): d is number => typeof d === 'number')) {
      throw new GraphError(`autodiff: '${w}' does not reach the loss and its shape is not static`);
    }
    grads.set(w, g.op('Expand', [g.scalar(0), g.ints(dims)]));
  }
  return grads;
}

