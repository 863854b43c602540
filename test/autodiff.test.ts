/**
 * Gradient checks for every VJP rule in src/graph/autodiff.ts, run on ONNX Runtime in float64:
 * for f(x, ...) the graph computes loss = sum(f(x, ...) * R) with a fixed random R, its analytic
 * gradients come from `addGradients`, and each entry is compared with a central difference
 * (loss(x + eps) - loss(x - eps)) / 2eps from forward runs on perturbed inputs. Every case also
 * checks that the builder's inferred shape of every value, forward and backward, is the shape
 * ORT computes.
 *
 * Shape legend for the chains: T = rows, C = width, H = heads, D = head dim.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addGradients } from '../src/graph/autodiff.ts';
import { GraphBuilder, GraphError } from '../src/graph/builder.ts';
import { createSession, OrtTensor } from '../src/runtime/ort.ts';
import { Rng } from '../src/sampling/rng.ts';

const EPS = 1e-6;
/** Allowed |analytic - numeric| as a fraction of the largest numeric gradient entry. */
const RTOL = 1e-6;

/** A float64 input of f: its dims and where its random values lie. */
interface Arg {
  dims: number[];
  /** Values in [low, high); default [-1, 1). Positive ranges for Sqrt, Log, Div and Pow. */
  range?: [number, number];
}

type Build = (g: GraphBuilder, xs: string[]) => string;

const size = (dims: number[]) => dims.reduce((a, b) => a * b, 1);

function randomArray(rng: Rng, n: number, [low, high]: [number, number] = [-1, 1]): Float64Array {
  return Float64Array.from({ length: n }, () => low + (high - low) * rng.next());
}

/**
 * Builds loss = sum(f(xs) * R) plus its gradients; every node's output is also a graph output
 * `value_i`, returned with the dims the builder inferred for it.
 */
function gradientGraph(args: Arg[], build: Build, rng: Rng): { model: Uint8Array; inferred: Map<string, number[]> } {
  const g = new GraphBuilder('gradient_check', undefined, { float: 'float64' });
  const xs = args.map((a, i) => g.input(`x${i}`, 'float64', a.dims));
  const out = build(g, xs);
  const outDims = g.shapeOf(out);
  assert.ok(outDims && outDims.every((d) => typeof d === 'number'), `f's output shape is inferred: ${outDims}`);
  const r = g.initializer('R', randomArray(rng, size(outDims as number[])), outDims as number[]);
  const loss = g.op('ReduceSum', [g.op('Mul', [out, r])], { keepdims: 0 });
  const grads = addGradients(g, loss, xs);
  const inferred = new Map<string, number[]>();
  for (const [i, value] of g.nodes.flatMap((n) => n.outputs).entries()) {
    inferred.set(`value_${i}`, g.shapeOf(value) as number[]);
    g.output(value, `value_${i}`);
  }
  g.output(loss, 'loss');
  xs.forEach((x, i) => g.output(grads.get(x)!, `grad${i}`));
  return { model: g.finish(), inferred };
}

/** Runs the gradient graph once, then central differences on every input entry. */
async function checkGradients(args: Arg[], build: Build, seed = 7): Promise<void> {
  const rng = new Rng(seed);
  const { model, inferred } = gradientGraph(args, build, rng);
  const dir = mkdtempSync(join(tmpdir(), 'ppd-autodiff-'));
  try {
    writeFileSync(join(dir, 'model.onnx'), model);
    const session = await createSession(join(dir, 'model.onnx'), { threads: 1 });
    const values = args.map((a) => randomArray(rng, size(a.dims), a.range));
    const feeds = () => Object.fromEntries(values.map((v, i) => [`x${i}`, new OrtTensor('float64', v, args[i]!.dims)]));
    const result = await session.run(feeds());
    for (const [name, dims] of inferred) assert.deepEqual(result[name]!.dims, dims, `inferred shape of ${name}`);
    const lossAt = async () => (await session.run(feeds(), ['loss'])).loss!.data[0] as number;
    for (let i = 0; i < args.length; i++) {
      const analytic = result[`grad${i}`]!.data as Float64Array;
      assert.deepEqual(result[`grad${i}`]!.dims, args[i]!.dims, `grad${i} shape`);
      const numeric = new Float64Array(values[i]!.length);
      for (let j = 0; j < numeric.length; j++) {
        const saved = values[i]![j]!;
        values[i]![j] = saved + EPS;
        const up = await lossAt();
        values[i]![j] = saved - EPS;
        const down = await lossAt();
        values[i]![j] = saved;
        numeric[j] = (up - down) / (2 * EPS);
      }
      const scale = Math.max(...numeric.map(Math.abs), 1e-3);
      for (let j = 0; j < numeric.length; j++) {
        const diff = Math.abs(analytic[j]! - numeric[j]!);
        assert.ok(diff <= RTOL * scale, `d/dx${i}[${j}]: analytic ${analytic[j]} vs numeric ${numeric[j]} (diff ${diff})`);
      }
    }
    await session.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const POSITIVE: [number, number] = [0.5, 1.5];
const m34: Arg = { dims: [3, 4] };

/** One case per rule (and per broadcasting / batching variant worth its own check). */
const CASES: [string, Arg[], Build][] = [
  ['Identity', [m34], (g, [x]) => g.op('Identity', [x!])],
  ['Neg', [m34], (g, [x]) => g.op('Neg', [x!])],
  ['Sqrt', [{ dims: [3, 4], range: POSITIVE }], (g, [x]) => g.op('Sqrt', [x!])],
  ['Exp', [m34], (g, [x]) => g.op('Exp', [x!])],
  ['Log', [{ dims: [3, 4], range: POSITIVE }], (g, [x]) => g.op('Log', [x!])],
  ['Sigmoid', [m34], (g, [x]) => g.op('Sigmoid', [x!])],
  ['Tanh', [m34], (g, [x]) => g.op('Tanh', [x!])],
  ['Cos', [m34], (g, [x]) => g.op('Cos', [x!])],
  ['Sin', [m34], (g, [x]) => g.op('Sin', [x!])],
  ['Add [3,4] + [4]', [m34, { dims: [4] }], (g, [a, b]) => g.op('Add', [a!, b!])],
  ['Add [3,4] + [3,1]', [m34, { dims: [3, 1] }], (g, [a, b]) => g.op('Add', [a!, b!])],
  ['Add [3,1] + [1,4] (both broadcast)', [{ dims: [3, 1] }, { dims: [1, 4] }], (g, [a, b]) => g.op('Add', [a!, b!])],
  ['Sub [3,4] - [4]', [m34, { dims: [4] }], (g, [a, b]) => g.op('Sub', [a!, b!])],
  ['Mul [3,4] * [3,1]', [m34, { dims: [3, 1] }], (g, [a, b]) => g.op('Mul', [a!, b!])],
  ['Mul [2,3,4] * [4]', [{ dims: [2, 3, 4] }, { dims: [4] }], (g, [a, b]) => g.op('Mul', [a!, b!])],
  ['Mul x * x (fan-out)', [m34], (g, [x]) => g.op('Mul', [x!, x!])],
  ['Div [3,4] / [4]', [m34, { dims: [4], range: POSITIVE }], (g, [a, b]) => g.op('Div', [a!, b!])],
  ['Div [4] / [3,1]', [{ dims: [4] }, { dims: [3, 1], range: POSITIVE }], (g, [a, b]) => g.op('Div', [a!, b!])],
  ['Sum of [3,4], [4], [3,1]', [m34, { dims: [4] }, { dims: [3, 1] }], (g, xs) => g.op('Sum', xs)],
  ['Pow x^2 (constant)', [m34], (g, [x]) => g.op('Pow', [x!, g.scalar(2)])],
  ['Pow x^3 (constant)', [m34], (g, [x]) => g.op('Pow', [x!, g.scalar(3)])],
  ['Pow x^y (both inputs)', [{ dims: [3, 4], range: POSITIVE }, { dims: [4] }], (g, [x, y]) => g.op('Pow', [x!, y!])],
  [
    'Where with a constant condition',
    [m34, { dims: [4] }],
    (g, [a, b]) => {
      const cond = g.op('Equal', [g.ints([0, 1, 0, 2]), g.ints([0, 0, 0, 0])]); // [4] bool
      return g.op('Where', [cond, a!, b!]);
    },
  ],
  ['MatMul [3,4] x [4,5]', [m34, { dims: [4, 5] }], (g, [a, b]) => g.op('MatMul', [a!, b!])],
  ['MatMul [2,3,4] x [4,5] (shared 2-D weight)', [{ dims: [2, 3, 4] }, { dims: [4, 5] }], (g, [a, b]) => g.op('MatMul', [a!, b!])],
  ['MatMul [2,3,4] x [2,4,5] (batched)', [{ dims: [2, 3, 4] }, { dims: [2, 4, 5] }], (g, [a, b]) => g.op('MatMul', [a!, b!])],
  ['MatMul [3,4] x [2,4,5] (2-D left)', [m34, { dims: [2, 4, 5] }], (g, [a, b]) => g.op('MatMul', [a!, b!])],
  ['MatMul [2,1,3,4] x [3,4,5] (batch broadcast)', [{ dims: [2, 1, 3, 4] }, { dims: [3, 4, 5] }], (g, [a, b]) => g.op('MatMul', [a!, b!])],
  ['Softmax axis -1', [m34], (g, [x]) => g.op('Softmax', [x!], { axis: -1 })],
  ['Softmax axis 0', [m34], (g, [x]) => g.op('Softmax', [x!], { axis: 0 })],
  ['LogSoftmax axis -1', [{ dims: [2, 3, 4] }], (g, [x]) => g.op('LogSoftmax', [x!], { axis: -1 })],
  ['LogSoftmax axis 1', [{ dims: [2, 3, 4] }], (g, [x]) => g.op('LogSoftmax', [x!], { axis: 1 })],
  ['ReduceSum axes [1] keepdims 0', [{ dims: [2, 3, 4] }], (g, [x]) => g.op('ReduceSum', [x!, g.ints([1])], { keepdims: 0 })],
  ['ReduceSum axes [-1] keepdims 1', [{ dims: [2, 3, 4] }], (g, [x]) => g.op('ReduceSum', [x!, g.ints([-1])], { keepdims: 1 })],
  ['ReduceSum over all axes', [m34], (g, [x]) => g.op('ReduceSum', [x!], { keepdims: 0 })],
  ['ReduceMean axes [-1] keepdims 1', [{ dims: [2, 3, 4] }], (g, [x]) => g.op('ReduceMean', [x!, g.ints([-1])], { keepdims: 1 })],
  ['ReduceMean axes [0, 2] keepdims 0', [{ dims: [2, 3, 4] }], (g, [x]) => g.op('ReduceMean', [x!, g.ints([0, 2])], { keepdims: 0 })],
  ['Reshape with -1', [{ dims: [2, 3, 4] }], (g, [x]) => g.op('Reshape', [x!, g.ints([-1, 4])])],
  ['Reshape with 0 and -1', [{ dims: [2, 3, 4] }], (g, [x]) => g.op('Reshape', [x!, g.ints([0, -1])])],
  ['Transpose perm [2, 0, 1]', [{ dims: [2, 3, 4] }], (g, [x]) => g.op('Transpose', [x!], { perm: [2, 0, 1] })],
  ['Transpose default perm', [{ dims: [2, 3, 4] }], (g, [x]) => g.op('Transpose', [x!])],
  ['Concat of three on axis 1', [m34, { dims: [3, 2] }, { dims: [3, 1] }], (g, xs) => g.op('Concat', xs, { axis: 1 })],
  ['Concat with a constant on axis -1', [m34], (g, [x]) => g.op('Concat', [g.floats([1, 2, 3], [3, 1]), x!], { axis: -1 })],
  ['Split, one output used', [{ dims: [3, 6] }], (g, [x]) => g.opMulti('Split', [x!, g.ints([2, 4])], 2, { axis: 1 })[1]!],
  [
    'Split into equal parts on axis 0',
    [{ dims: [4, 3] }],
    (g, [x]) => {
      const [a, b] = g.opMulti('Split', [x!], 2, { axis: 0, num_outputs: 2 });
      return g.op('Mul', [a!, b!]);
    },
  ],
  ['Tile repeats [2, 1]', [m34], (g, [x]) => g.op('Tile', [x!, g.ints([2, 1])])],
  ['Tile repeats [2, 3]', [{ dims: [2, 3] }], (g, [x]) => g.op('Tile', [x!, g.ints([2, 3])])],
  ['Unsqueeze axes [0, -1]', [m34], (g, [x]) => g.op('Unsqueeze', [x!, g.ints([0, -1])])],
  ['Squeeze axes [1]', [{ dims: [3, 1, 4] }], (g, [x]) => g.op('Squeeze', [x!, g.ints([1])])],
  ['Expand [3,1] to [2,3,4]', [{ dims: [3, 1] }], (g, [x]) => g.op('Expand', [x!, g.ints([2, 3, 4])])],
  [
    'Slice with axes and a negative start',
    [{ dims: [4, 5] }],
    (g, [x]) => g.op('Slice', [x!, g.ints([-3, 1]), g.ints([100, 3]), g.ints([1, 0])]),
  ],
  ['Slice without axes', [{ dims: [4, 5] }], (g, [x]) => g.op('Slice', [x!, g.ints([1]), g.ints([3])])],
  ['Cast float64 to float64', [m34], (g, [x]) => g.op('Cast', [x!], { to: 11 })],
  [
    'Gather rows with repeats (embedding lookup)',
    [{ dims: [5, 3] }],
    (g, [table]) => g.op('Gather', [table!, g.initializer('ids', BigInt64Array.from([1n, 3n, 1n, 0n, 1n, 4n]), [2, 3])]),
  ],
  [
    'GatherElements on axis 1 with repeats (picking target logits)',
    [{ dims: [3, 5] }],
    (g, [x]) => g.op('GatherElements', [x!, g.initializer('picks', BigInt64Array.from([4n, 4n, 0n, 2n, 1n, 2n]), [3, 2])], { axis: 1 }),
  ],
];

for (const [label, args, build] of CASES) {
  test(`gradient of ${label} matches central differences`, () => checkGradients(args, build));
}

/** RMSNorm over the last axis, written as llama-graph.ts writes it: x / sqrt(mean(x^2) + eps) * w. */
function rmsNorm(g: GraphBuilder, x: string, w: string): string {
  const meanSquare = g.op('ReduceMean', [g.op('Pow', [x, g.scalar(2)]), g.ints([-1])], { keepdims: 1 });
  const rms = g.op('Sqrt', [g.op('Add', [meanSquare, g.scalar(1e-5)])]);
  return g.op('Mul', [g.op('Div', [x, rms]), w]);
}

test('gradient of an RMSNorm chain (Pow, ReduceMean, Add, Sqrt, Div, Mul) matches', () =>
  checkGradients([{ dims: [3, 8] }, { dims: [8] }], (g, [x, w]) => rmsNorm(g, x!, w!)));

test('gradient of a Reshape / Transpose / Split / Neg / Concat chain (rotate-half) matches', () =>
  checkGradients([{ dims: [3, 8] }], (g, [x]) => {
    const heads = g.op('Transpose', [g.op('Reshape', [x!, g.ints([-1, 2, 4])])], { perm: [1, 0, 2] }); // [H, T, D]
    const [x1, x2] = g.opMulti('Split', [heads, g.ints([2, 2])], 2, { axis: -1 });
    const rotated = g.op('Concat', [g.op('Neg', [x2!]), x1!], { axis: -1 });
    const angles = g.floats(Array.from({ length: 12 }, (_, i) => 0.3 * i), [3, 1, 4]);
    const mixed = g.op('Add', [g.op('Mul', [g.op('Transpose', [heads], { perm: [1, 0, 2] }), g.op('Cos', [angles])]),
      g.op('Mul', [g.op('Transpose', [rotated], { perm: [1, 0, 2] }), g.op('Sin', [angles])])]);
    return g.op('Reshape', [mixed, g.ints([3, 8])]);
  }));

test('gradient of a cross-entropy (LogSoftmax, OneHot targets, ReduceMean) matches', () =>
  checkGradients([{ dims: [4, 6] }], (g, [logits]) => {
    const targets = g.initializer('targets', BigInt64Array.from([2n, 0n, 5n, 2n]), [4]);
    // ORT's OneHot has no float64 kernel: build it in float32 and Cast; neither needs a rule.
    const offOn = g.initializer('off_on', BigInt64Array.from([0n, 1n]), [2]);
    const oneHot = g.op('Cast', [g.op('OneHot', [targets, g.ints([6]), offOn], { axis: -1 })], { to: 11 }); // [4, 6]
    const picked = g.op('ReduceSum', [g.op('Mul', [g.op('LogSoftmax', [logits!], { axis: -1 }), oneHot]), g.ints([-1])], { keepdims: 0 });
    return g.op('Neg', [g.op('ReduceMean', [picked], { keepdims: 1 })]);
  }));

test('gradient of a causal attention block (projections, heads, mask, softmax) matches', () => {
  const [T, C, H, D] = [4, 6, 2, 3];
  const mask = Float64Array.from({ length: T * T }, (_, i) => (i % T <= Math.floor(i / T) ? 0 : -Infinity));
  const projection: Arg = { dims: [C, H * D] };
  const args = [{ dims: [T, C] }, projection, projection, projection, { dims: [H * D, C] }];
  return checkGradients(args, (g, [x, wq, wk, wv, wo]) => {
    const heads = (w: string, perm: number[]) => {
      const split = g.op('Reshape', [g.op('MatMul', [x!, w]), g.ints([-1, H, D])]); // [T, H, D]
      return g.op('Transpose', [split], { perm });
    };
    const q = heads(wq!, [1, 0, 2]); // [H, T, D]
    const kT = heads(wk!, [1, 2, 0]); // [H, D, T]
    const v = heads(wv!, [1, 0, 2]); // [H, T, D]
    const scores = g.op('Add', [g.op('Mul', [g.op('MatMul', [q, kT]), g.scalar(1 / Math.sqrt(D))]), g.initializer('mask', mask, [T, T])]);
    const context = g.op('MatMul', [g.op('Softmax', [scores], { axis: -1 }), v]); // [H, T, D]
    const merged = g.op('Reshape', [g.op('Transpose', [context], { perm: [1, 0, 2] }), g.ints([-1, H * D])]);
    return g.op('MatMul', [merged, wo!]);
  });
});

test('integer paths need no rules: positions through Cast, Cos and Sin scale the input', () =>
  checkGradients([{ dims: [3, 4] }], (g, [x]) => {
    const positions = g.initializer('positions', BigInt64Array.from([0n, 1n, 2n]), [3]);
    const angle = g.op('Unsqueeze', [g.op('Cast', [positions], { to: 11 }), g.ints([1])]); // [3, 1]
    return g.op('Add', [g.op('Mul', [x!, g.op('Cos', [angle])]), g.op('Sin', [angle])]);
  }));

test('a wrt value the loss does not reach gets a zeros gradient of its shape', async () => {
  const g = new GraphBuilder('unreached', undefined, { float: 'float64' });
  const x = g.input('x', 'float64', [2, 3]);
  const unused = g.input('unused', 'float64', [4]);
  const loss = g.op('ReduceSum', [g.op('Mul', [x, x])], { keepdims: 0 });
  const grads = addGradients(g, loss, [x, unused]);
  assert.deepEqual(g.shapeOf(grads.get(unused)!), [4]);
  g.output(grads.get(x)!, 'dx');
  g.output(grads.get(unused)!, 'dunused');
  const dir = mkdtempSync(join(tmpdir(), 'ppd-autodiff-'));
  try {
    writeFileSync(join(dir, 'model.onnx'), g.finish());
    const session = await createSession(join(dir, 'model.onnx'), { threads: 1 });
    const out = await session.run({
      x: new OrtTensor('float64', Float64Array.from([1, 2, 3, 4, 5, 6]), [2, 3]),
      unused: new OrtTensor('float64', new Float64Array(4), [4]),
    });
    assert.deepEqual(Array.from(out.dx!.data as Float64Array), [2, 4, 6, 8, 10, 12]);
    assert.deepEqual(Array.from(out.dunused!.data as Float64Array), [0, 0, 0, 0]);
    await session.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a missing rule or an unknown shape is an error naming the op', () => {
  const g = new GraphBuilder('errors');
  const x = g.input('x', 'float32', [2, 3]);
  const relu = g.op('ReduceSum', [g.op('Relu', [x])], { keepdims: 0 });
  const isGraphError = (pattern: RegExp) => (e: unknown) => e instanceof GraphError && pattern.test(e.message);
  assert.throws(() => addGradients(g, relu, [x]), isGraphError(/no gradient rule for Relu \(Relu_\d+\)/));
  const t = g.input('t', 'float32', ['T', 3]);
  const squares = g.op('ReduceSum', [g.op('Mul', [t, t])], { keepdims: 0 });
  const unknownShape = /ReduceSum \(ReduceSum_\d+\) needs the static shape of 'Mul_\d+_out0', which is \[T, 3\]/;
  assert.throws(() => addGradients(g, squares, [t]), isGraphError(unknownShape));
  assert.throws(() => addGradients(g, x, [x]), /loss 'x' must be a float scalar/);
});

test('shape inference: broadcasting, symbols, reshapes and mismatches', () => {
  const g = new GraphBuilder('shapes');
  const x = g.input('x', 'float32', ['T', 16]);
  assert.deepEqual(g.shapeOf(g.op('Reshape', [x, g.ints([-1, 4, 4])])), ['T', 4, 4]);
  assert.deepEqual(g.shapeOf(g.op('Add', [x, g.input('b', 'float32', [1, 16])])), ['T', 16]);
  assert.deepEqual(g.shapeOf(g.op('MatMul', [g.op('Unsqueeze', [x, g.ints([0])]), g.input('w', 'float32', [16, 5])])), [1, 'T', 5]);
  assert.deepEqual(g.shapeOf(g.op('ReduceMean', [x, g.ints([-1])], { keepdims: 1 })), ['T', 1]);
  assert.equal(g.shapeOf(g.op('Concat', [x, g.input('p', 'float32', ['P', 16])], { axis: 0 })), undefined);
  assert.equal(g.typeOf(g.op('Cast', [x], { to: 7 })), 'int64');
  const [a, c] = [g.input('a', 'float32', [3, 4]), g.input('c', 'float32', [3])];
  assert.throws(() => g.op('Add', [a, c]), /Add \(Add_\d+\) on \[3, 4\], \[3\]: cannot broadcast 4 with 3/);
  assert.throws(() => g.op('MatMul', [x, g.input('v', 'float32', [15, 2])]), /inner dims 16 and 15 differ/);
  assert.throws(() => g.op('Neg', ['nowhere']), /'nowhere' is not a value/);
});
