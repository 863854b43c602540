/**
 * Static type and shape inference for the ONNX ops ppd builds, one small rule per op.
 *
 * A shape is a list of dims, each a number or a symbolic name ('T'). Symbols pass through ops
 * that copy them (broadcasting 'T' with 1, transposing, reshaping [T, 16] to [-1, 4, 4]); where
 * an op would need arithmetic on a symbol (concatenating 'P' and 'T' rows, tiling 'T'), the
 * output's shape is undefined rather than guessed. Inputs that fix a shape (Reshape's shape,
 * axes, Split sizes, Slice bounds) must be small constants for the output shape to be known.
 *
 * A rule throws a plain Error when the shapes can never fit (broadcasting 3 with 4, MatMul inner
 * dims that differ); the builder adds the op and node names. Ops without a rule get undefined
 * type and shape. This file knows ONNX semantics, nothing about autodiff or LLaMA.
 */

export type FloatType = 'float32' | 'float64';
export type ElemType = FloatType | 'int64' | 'bool' | 'uint8';
/** A static size, or a symbolic one (a name) where the graph leaves it free. */
export type Dim = number | string;
export type AttrValue = number | number[] | string | { floats: number[] } | { float: number };

export interface ValueInfo {
  type?: ElemType;
  shape?: Dim[];
}

/** What a rule knows of one input: type, shape and, for small constants, the values. */
export interface KnownInput extends ValueInfo {
  value?: number[];
}

type Attrs = Readonly<Record<string, AttrValue>>;
/** `ins` has undefined for an absent optional input (''). */
type ShapeRule = (ins: (KnownInput | undefined)[], attrs: Attrs, outputCount: number) => ValueInfo[];

/** ONNX TensorProto.DataType codes of the element types ppd uses. */
const TYPE_OF_CODE: Record<number, ElemType> = { 1: 'float32', 7: 'int64', 9: 'bool', 11: 'float64' };

const intAttr = (attrs: Attrs, name: string, fallback: number): number => {
  const v = attrs[name];
  return typeof v === 'number' ? v : fallback;
};
const intsAttr = (attrs: Attrs, name: string): number[] | undefined => {
  const v = attrs[name];
  return Array.isArray(v) ? v : undefined;
};

/** Normalises a possibly negative axis against `rank`. */
function axisOf(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new Error(`axis ${axis} out of range for rank ${rank}`);
  return a;
}

/** Numpy broadcasting of two dims; undefined when two different symbols meet. */
function broadcastDim(a: Dim, b: Dim): Dim | undefined {
  if (a === b) return a;
  if (a === 1) return b;
  if (b === 1) return a;
  if (typeof a === 'number' && typeof b === 'number') throw new Error(`cannot broadcast ${a} with ${b}`);
  if (typeof a === 'number') return a; // the symbol must be a (or 1) at run time
  if (typeof b === 'number') return b;
  return undefined;
}

export function broadcastShapes(shapes: (Dim[] | undefined)[]): Dim[] | undefined {
  if (shapes.some((s) => s === undefined)) return undefined;
  const rank = Math.max(...shapes.map((s) => s!.length));
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    let dim: Dim | undefined = 1;
    for (const s of shapes) {
      const d = s![s!.length - rank + i] ?? 1;
      dim = dim === undefined ? undefined : broadcastDim(dim, d);
    }
    if (dim === undefined) return undefined;
    out.push(dim);
  }
  return out;
}

const numeric = (dims: Dim[]): dims is number[] => dims.every((d) => typeof d === 'number');
const product = (dims: number[]) => dims.reduce((a, b) => a * b, 1);

/** Same type and shape as the first input (unary elementwise ops, Softmax, Identity). */
const sameAsFirst: ShapeRule = ([x]) => [{ type: x?.type, shape: x?.shape }];

/** Elementwise ops with numpy broadcasting; `type` overrides the first input's type (Equal: bool). */
const broadcasting =
  (type?: ElemType): ShapeRule =>
  (ins) => [{ type: type ?? ins[0]?.type, shape: broadcastShapes(ins.map((i) => i?.shape)) }];

/** MatMul: [..., M, K] x [..., K, N] -> [..., M, N], batch dims broadcast; 1-D operands as numpy. */
const matMul: ShapeRule = ([a, b]) => {
  if (!a?.shape || !b?.shape) return [{ type: a?.type }];
  const as = a.shape.length === 1 ? [1, a.shape[0]!] : a.shape;
  const bs = b.shape.length === 1 ? [b.shape[0]!, 1] : b.shape;
  const k1 = as[as.length - 1]!;
  const k2 = bs[bs.length - 2]!;
  if (typeof k1 === 'number' && typeof k2 === 'number' && k1 !== k2) throw new Error(`inner dims ${k1} and ${k2} differ`);
  const batch = broadcastShapes([as.slice(0, -2), bs.slice(0, -2)]);
  if (!batch) return [{ type: a.type }];
  const shape = [...batch];
  if (a.shape.length > 1) shape.push(as[as.length - 2]!);
  if (b.shape.length > 1) shape.push(bs[bs.length - 1]!);
  return [{ type: a.type, shape }];
};

/** Gemm: op(A) [M, K] x op(B) [K, N] -> [M, N], op = transpose when transA / transB. */
const gemm: ShapeRule = ([a, b], attrs) => {
  if (!a?.shape || !b?.shape) return [{ type: a?.type }];
  const [m, k1] = intAttr(attrs, 'transA', 0) ? [a.shape[1]!, a.shape[0]!] : [a.shape[0]!, a.shape[1]!];
  const [k2, n] = intAttr(attrs, 'transB', 0) ? [b.shape[1]!, b.shape[0]!] : [b.shape[0]!, b.shape[1]!];
  if (typeof k1 === 'number' && typeof k2 === 'number' && k1 !== k2) throw new Error(`inner dims ${k1} and ${k2} differ`);
  return [{ type: a.type, shape: [m, n] }];
};

/** ReduceSum / ReduceMean / ReduceMax: axes from input 1 (or the attribute), keepdims default 1. */
const reduce: ShapeRule = ([x, axesIn], attrs) => {
  if (!x?.shape) return [{ type: x?.type }];
  const rank = x.shape.length;
  const listed = axesIn ? axesIn.value : intsAttr(attrs, 'axes');
  if (axesIn && !listed) return [{ type: x.type }]; // axes given but not constant
  const noop = intAttr(attrs, 'noop_with_empty_axes', 0) === 1;
  const axes = listed && listed.length > 0 ? listed.map((a) => axisOf(a, rank)) : noop ? [] : x.shape.map((_, i) => i);
  const keep = intAttr(attrs, 'keepdims', 1) === 1;
  const shape: Dim[] = [];
  x.shape.forEach((d, i) => {
    if (!axes.includes(i)) shape.push(d);
    else if (keep) shape.push(1);
  });
  return [{ type: x.type, shape }];
};

/** Reshape: 0 copies the input dim (allowzero 0), -1 takes what is left. */
const reshape: ShapeRule = ([x, target]) => {
  if (!x?.shape || !target?.value) return [{ type: x?.type }];
  const shape: Dim[] = target.value.map((d, i) => (d === 0 ? x.shape![i]! : d));
  const unknown = shape.indexOf(-1);
  if (unknown < 0) return [{ type: x.type, shape }];
  const known = shape.filter((_, i) => i !== unknown);
  if (numeric(x.shape) && numeric(known)) {
    const total = product(x.shape);
    if (total % product(known) !== 0) throw new Error(`cannot reshape ${x.shape.length}-D size ${total} into [${target.value}]`);
    shape[unknown] = total / product(known);
    return [{ type: x.type, shape }];
  }
  // One symbol in the input and none among the known target dims: -1 is that symbol when the
  // numeric parts match ([T, 16] -> [-1, 4, 4] gives [T, 4, 4]).
  const symbols = x.shape.filter((d) => typeof d === 'string');
  const inNumbers = product(x.shape.filter((d): d is number => typeof d === 'number'));
  if (symbols.length === 1 && numeric(known) && inNumbers === product(known)) {
    shape[unknown] = symbols[0]!;
    return [{ type: x.type, shape }];
  }
  return [{ type: x.type }];
};

const transpose: ShapeRule = ([x], attrs) => {
  if (!x?.shape) return [{ type: x?.type }];
  const perm = intsAttr(attrs, 'perm') ?? x.shape.map((_, i) => x.shape!.length - 1 - i);
  return [{ type: x.type, shape: perm.map((p) => x.shape![p]!) }];
};

/** The sum of dims along an axis; undefined unless every dim is a number (or one of two is 0). */
function sumDims(dims: Dim[]): Dim | undefined {
  const nonZero = dims.filter((d) => d !== 0);
  if (nonZero.length === 1) return nonZero[0];
  return numeric(dims) ? dims.reduce((a, b) => a + b, 0) : undefined;
}

const concat: ShapeRule = (ins, attrs) => {
  const type = ins[0]?.type;
  const shapes = ins.map((i) => i?.shape);
  if (shapes.length === 0 || shapes.some((s) => !s)) return [{ type }];
  const rank = shapes[0]!.length;
  const axis = axisOf(intAttr(attrs, 'axis', 0), rank);
  const shape: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    const dims = shapes.map((s) => s![i]!);
    if (i === axis) {
      const total = sumDims(dims);
      if (total === undefined) return [{ type }];
      shape.push(total);
      continue;
    }
    const numbers = new Set(dims.filter((d) => typeof d === 'number'));
    if (numbers.size > 1) throw new Error(`dims ${[...numbers].join(' and ')} differ on axis ${i}`);
    shape.push(numbers.size === 1 ? [...numbers][0]! : dims[0]!);
  }
  return [{ type, shape }];
};

/** Split: sizes from input 1 (or the attribute), else equal parts (num_outputs or output count). */
const split: ShapeRule = ([x, sizesIn], attrs, outputCount) => {
  const unknown = Array.from({ length: outputCount }, () => ({ type: x?.type }));
  if (!x?.shape || (sizesIn && !sizesIn.value)) return unknown;
  const axis = axisOf(intAttr(attrs, 'axis', 0), x.shape.length);
  const dim = x.shape[axis]!;
  let sizes = sizesIn ? sizesIn.value : intsAttr(attrs, 'split');
  if (!sizes) {
    if (typeof dim !== 'number') return unknown;
    const part = Math.ceil(dim / outputCount);
    sizes = Array.from({ length: outputCount }, (_, i) => Math.max(0, Math.min(part, dim - i * part)));
  }
  if (sizes.length !== outputCount) throw new Error(`${sizes.length} split sizes for ${outputCount} outputs`);
  if (typeof dim === 'number' && sizes.reduce((a, b) => a + b, 0) !== dim) {
    throw new Error(`split sizes [${sizes}] do not add up to ${dim}`);
  }
  return sizes.map((s) => ({ type: x.type, shape: x.shape!.map((d, i) => (i === axis ? s : d)) }));
};

const tile: ShapeRule = ([x, repeats]) => {
  if (!x?.shape || !repeats?.value) return [{ type: x?.type }];
  const shape: Dim[] = [];
  for (let i = 0; i < x.shape.length; i++) {
    const d = x.shape[i]!;
    const r = repeats.value[i]!;
    if (r === 1) shape.push(d);
    else if (typeof d === 'number') shape.push(d * r);
    else return [{ type: x.type }];
  }
  return [{ type: x.type, shape }];
};

const unsqueeze: ShapeRule = ([x, axesIn], attrs) => {
  const axes = axesIn ? axesIn.value : intsAttr(attrs, 'axes');
  if (!x?.shape || !axes) return [{ type: x?.type }];
  const rank = x.shape.length + axes.length;
  const at = new Set(axes.map((a) => axisOf(a, rank)));
  const rest = [...x.shape];
  return [{ type: x.type, shape: Array.from({ length: rank }, (_, i) => (at.has(i) ? 1 : rest.shift()!)) }];
};

const squeeze: ShapeRule = ([x, axesIn], attrs) => {
  if (!x?.shape || (axesIn && !axesIn.value)) return [{ type: x?.type }];
  const listed = axesIn ? axesIn.value : intsAttr(attrs, 'axes');
  const axes = listed ? listed.map((a) => axisOf(a, x.shape!.length)) : x.shape.flatMap((d, i) => (d === 1 ? [i] : []));
  for (const a of axes) if (x.shape[a] !== 1) throw new Error(`cannot squeeze axis ${a} of size ${x.shape[a]}`);
  return [{ type: x.type, shape: x.shape.filter((_, i) => !axes.includes(i)) }];
};

const cast: ShapeRule = ([x], attrs) => [{ type: TYPE_OF_CODE[intAttr(attrs, 'to', -1)], shape: x?.shape }];

const expand: ShapeRule = ([x, target]) => {
  if (!x?.shape || !target?.value) return [{ type: x?.type }];
  return [{ type: x.type, shape: broadcastShapes([x.shape, target.value]) }];
};

/** Slice with constant starts / ends / axes / steps, clamped as ONNX specifies. */
const slice: ShapeRule = ([x, starts, ends, axesIn, stepsIn]) => {
  if (!x?.shape || !starts?.value || !ends?.value) return [{ type: x?.type }];
  const rank = x.shape.length;
  const axes = axesIn?.value ?? starts.value.map((_, i) => i);
  const steps = stepsIn?.value ?? starts.value.map(() => 1);
  if ((axesIn && !axesIn.value) || (stepsIn && !stepsIn.value)) return [{ type: x.type }];
  const shape = [...x.shape];
  for (let i = 0; i < axes.length; i++) {
    const axis = axisOf(axes[i]!, rank);
    const dim = x.shape[axis]!;
    if (typeof dim !== 'number') return [{ type: x.type }];
    const r = sliceRange(dim, starts.value[i]!, ends.value[i]!, steps[i]!);
    shape[axis] = r.size;
  }
  return [{ type: x.type, shape }];
};

/** ONNX Slice bounds on one axis of size `dim`: the first index taken and how many. */
export function sliceRange(dim: number, start: number, end: number, step: number): { start: number; size: number } {
  if (step === 0) throw new Error('slice step 0');
  const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
  let s = start < 0 ? start + dim : start;
  let e = end < 0 ? end + dim : end;
  if (step > 0) {
    s = clamp(s, 0, dim);
    e = clamp(e, 0, dim);
  } else {
    s = clamp(s, 0, dim - 1);
    e = clamp(e, -1, dim - 1);
  }
  return { start: s, size: Math.max(0, Math.ceil((e - s) / step)) };
}

/** Pad with constant pads [begin_0, ..., begin_r-1, end_0, ..., end_r-1] (no axes input). */
const pad: ShapeRule = ([x, pads, , axesIn]) => {
  if (!x?.shape || !pads?.value || axesIn) return [{ type: x?.type }];
  const rank = x.shape.length;
  const shape: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    const d = x.shape[i]!;
    const extra = pads.value[i]! + pads.value[i + rank]!;
    if (extra === 0) shape.push(d);
    else if (typeof d === 'number') shape.push(d + extra);
    else return [{ type: x.type }];
  }
  return [{ type: x.type, shape }];
};

const where: ShapeRule = ([c, a, b]) => [{ type: a?.type, shape: broadcastShapes([c?.shape, a?.shape, b?.shape]) }];

/** Gather: data.shape[:axis] + indices.shape + data.shape[axis+1:]. */
const gather: ShapeRule = ([data, indices], attrs) => {
  if (!data?.shape || !indices?.shape) return [{ type: data?.type }];
  const axis = axisOf(intAttr(attrs, 'axis', 0), data.shape.length);
  return [{ type: data.type, shape: [...data.shape.slice(0, axis), ...indices.shape, ...data.shape.slice(axis + 1)] }];
};

/** OneHot(indices, depth, values): depth inserted at `axis` (default -1); the values' type. */
const oneHot: ShapeRule = ([indices, depth, values], attrs) => {
  if (!indices?.shape || !depth?.value) return [{ type: values?.type }];
  const rank = indices.shape.length + 1;
  const axis = axisOf(intAttr(attrs, 'axis', -1), rank);
  const shape: Dim[] = [...indices.shape];
  shape.splice(axis, 0, depth.value[0]!);
  return [{ type: values?.type, shape }];
};

const RULES: Record<string, ShapeRule> = {
  Identity: sameAsFirst,
  Neg: sameAsFirst,
  Sqrt: sameAsFirst,
  Exp: sameAsFirst,
  Log: sameAsFirst,
  Sigmoid: sameAsFirst,
  Tanh: sameAsFirst,
  Relu: sameAsFirst,
  Cos: sameAsFirst,
  Sin: sameAsFirst,
  Softmax: sameAsFirst,
  LogSoftmax: sameAsFirst,
  Add: broadcasting(),
  Sub: broadcasting(),
  Mul: broadcasting(),
  Div: broadcasting(),
  Pow: ([x, y]) => [{ type: x?.type, shape: broadcastShapes([x?.shape, y?.shape]) }],
  Sum: broadcasting(),
  Max: broadcasting(),
  Min: broadcasting(),
  Equal: broadcasting('bool'),
  Less: broadcasting('bool'),
  Greater: broadcasting('bool'),
  Where: where,
  MatMul: matMul,
  Gemm: gemm,
  ReduceSum: reduce,
  ReduceSumSquare: reduce,
  ReduceMean: reduce,
  ReduceMax: reduce,
  Reshape: reshape,
  Transpose: transpose,
  Concat: concat,
  Split: split,
  Tile: tile,
  Unsqueeze: unsqueeze,
  Squeeze: squeeze,
  Cast: cast,
  Expand: expand,
  Slice: slice,
  Pad: pad,
  Gather: gather,
  OneHot: oneHot,
  GatherElements: ([data, indices]) => [{ type: data?.type, shape: indices?.shape }],
  ScatterND: sameAsFirst,
  ScatterElements: sameAsFirst,
  Shape: ([x], attrs) => {
    if (!x?.shape) return [{ type: 'int64' }];
    // start/end (opset 15) select a range of the dims, clamped as Slice clamps.
    const { size } = sliceRange(x.shape.length, intAttr(attrs, 'start', 0), intAttr(attrs, 'end', x.shape.length), 1);
    return [{ type: 'int64', shape: [size] }];
  },
};

/**
 * Types and shapes of a node's outputs from what is known of its inputs (an absent optional
 * input is undefined). Unknown ops give `{}` for every output.
 */
export function inferOutputs(opType: string, ins: (KnownInput | undefined)[], attrs: Attrs, outputCount: number): ValueInfo[] {
  const rule = RULES[opType];
  if (!rule) return Array.from({ length: outputCount }, () => ({}));
  return rule(ins, attrs, outputCount);
}
