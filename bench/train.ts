/**
 * Training benchmark: how fast ppd pretrains on this machine, and how much of the CPU's
 * matrix-product speed the training graph turns into counted FLOPs. One run measures everything
 * and writes docs/bench/train.json (the data; schema: `TrainReport` below) and
 * docs/bench/train.md (the same for people).
 *
 *   npm run bench:train                   full run: configs/ppd-base.json, the default layout
 *   npm run bench:train -- --quick        smoke check: a tiny model, 2 steps of each kind; written
 *                                         to a temporary folder so the published report stays
 *   npm run bench:train -- --threads 1    ONNX Runtime intra-op threads (default: all cores)
 *
 * What it measures, one phase after another, one ORT session at a time (a released session's
 * pool threads no longer spin; see bench/engine.ts):
 *   1. peak: every distinct matrix product of the training graph (MatMul or Gemm, its shapes and
 *      transposes), alone in a graph with both operands fed as inputs, as in training, where the
 *      weights change every step so ORT cannot prepack them. The best is the peak. The graph's
 *      2-D forward products again with B an initializer, which ORT prepacks once, for reference.
 *   2. training: PretrainSession.step (one graph call: loss, every gradient and their norm), then
 *      whole optimiser steps as the pretraining loop runs them (accumulatedGradients, then
 *      AdamW.update with the clipping factor folded in), each piece timed; then the same for the
 *      previous step (bench/train-baseline.ts: packed rows, block-diagonal mask, embeddings and
 *      clipping in TypeScript), in the same run, for the speed-up.
 *   3. FLOPs per graph call, counted from the builder's record of nodes and static shapes:
 *      2·M·K·N per MatMul / Gemm, times the batch of a batched MatMul. Elementwise ops, softmax,
 *      reductions and copies are not counted. Achieved GFLOP/s = FLOPs / median call time.
 *   4. profile: a separate session with ORT profiling on, its node times summed by op type.
 *
 * What it is not: a test. The target (achieved >= 40% of the peak) is reported, never asserted.
 *
 * Shape legend: R = rows per graph call (seq × windows), C = hidden size, F = intermediate size,
 * V = vocabulary; a product multiplies [M, K] by [K, N].
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from '../src/format/atomic.ts';
import { readJsonObject } from '../src/format/text-file.ts';
import { GraphBuilder, type AttrValue, type GraphNode } from '../src/graph/builder.ts';
import { parameterCount, parseLlamaConfig, type LlamaConfig } from '../src/model/config.ts';
import { gaussian } from '../src/checkpoint/random-init.ts';
import { Progress } from '../src/report/progress.ts';
import { sumKernels, type TraceEvent } from '../src/report/ort-profile.ts';
import { createSession, OrtTensor } from '../src/runtime/ort.ts';
import { WindowSampler } from '../src/train/batches.ts';
import { AdamW, DEFAULT_ADAMW } from '../src/train/optimizer.ts';
import { accumulatedGradients, initialParams } from '../src/train/pretrain.ts';
import { buildPretrainGraph, PretrainSession, type StepInput } from '../src/train/training-graph.ts';
import { PreviousPretrainStep } from './train-baseline.ts';
import {
  BUSY_MACHINE_CORES,
  describeMachine,
  fmt,
  machineSection,
  msSpread,
  otherCpu,
  parseBenchArgs,
  pct,
  REPO_ROOT,
  runBenchmark,
  shownPath,
  timed,
  tokenIds,
  warnIfBusy,
  watchLoad,
  type Machine,
  type PhaseLoad,
} from './harness.ts';
import { spread, type Spread } from '../src/report/timing.ts';

// ---------------------------------------------------------------------------------------------
// Report schema (docs/bench/train.json). Times in milliseconds, FLOPs as counts, rates per second.

export interface TrainReport {
  schema: 'ppd.bench.train/2';
  mode: 'full' | 'quick';
  command: string;
  /** ISO 8601, when the run started. */
  date: string;
  durationSeconds: number;
  machine: Machine;
  model: ModelShape;
  flops: FlopCount;
  peak: PeakResult;
  training: TrainingResult;
  achieved: Achieved;
  profile: ProfileResult;
  targets: TargetResult[];
  /** CPU that other processes used during the whole run. */
  load: PhaseLoad;
}

export interface ModelShape {
  name: string;
  /** The Hugging Face config.json the model was built from. */
  config: Record<string, unknown>;
  parameters: number;
  seqLen: number;
  /** Windows per micro-batch (one graph call). */
  batchWindows: number;
  /** Micro-batches per optimiser step. */
  accumulation: number;
  /** R = seqLen × batchWindows: rows (tokens) per graph call. */
  rowsPerCall: number;
}

/** One matrix product as a node of the graph sees it. */
export interface Product {
  /** e.g. "Gemm transA [512, 256] x [512, 688]". */
  label: string;
  op: 'MatMul' | 'Gemm';
  a: number[];
  b: number[];
  transA: boolean;
  transB: boolean;
  /** 2·M·K·N, times the batch of a batched MatMul. */
  flops: number;
}

export interface ProductKind extends Product {
  /** Nodes of the training graph with this product. */
  count: number;
  /** Share of the graph's counted FLOPs. */
  share: number;
}

export interface FlopCount {
  perGraphCall: number;
  matrixProductNodes: number;
  /** Distinct products, most FLOPs (count × flops) first. */
  kinds: ProductKind[];
  notCounted: string;
}

export interface ProductTiming extends Product {
  /** How B reaches ORT: fed every run (as in training), or an initializer that ORT prepacks once. */
  bAs: 'input' | 'initializer';
  run: Spread;
  gflops: number;
}

export interface PeakResult {
  warmupRuns: number;
  /** Every distinct product of the graph, B fed as an input; graph order of `flops.kinds`. */
  products: ProductTiming[];
  /** The fastest of `products`: the peak the target is measured against. */
  best: { label: string; gflops: number };
  /** The graph's product mix, each product at its own rate here: counted FLOPs / Σ count × median. */
  mixGflops: number;
  /** The 2-D forward MatMuls again with B an initializer (prepacked), for reference. */
  prepacked: ProductTiming[];
  load: PhaseLoad;
}

/** One way of training: its layout, its graph calls alone, and whole optimiser steps. */
export interface PathTiming {
  seqLen: number;
  batchWindows: number;
  accumulation: number;
  /** Build the training graph and create its ORT session. */
  sessionCreateMs: number;
  graphCall: { warmupCalls: number; time: Spread; tokensPerSecond: number };
  optimizerStep: {
    warmupSteps: number;
    /** The whole step: gradients + update. */
    total: Spread;
    /** `accumulation` graph calls with the TypeScript around them. */
    gradients: Spread;
    /** Clipping (where it is a pass of its own) and AdamW. */
    update: Spread;
    /** gradients median − accumulation × graph-call median: the TypeScript around the graph calls. */
    typescriptMs: number;
    tokensPerSecond: number;
  };
}

export interface TrainingResult {
  /** What `ppd pretrain` runs: per-window graph, one call per step (PretrainSession). */
  current: PathTiming;
  /** The step before the per-window graph (bench/train-baseline.ts). */
  previous: PathTiming;
  /** current / previous optimiser-step tokens per second. */
  speedup: number;
  load: PhaseLoad;
}

export interface Achieved {
  /** flops.perGraphCall / training.graphCall median. */
  gflops: number;
  shareOfPeak: number;
  shareOfMix: number;
}

export type OpCategory = 'matrix products' | 'softmax' | 'normalisation' | 'elementwise' | 'reductions' | 'data movement' | 'other';

export interface ProfileResult {
  /** Profiled runs, after one warm-up run that is left out. */
  runs: number;
  /** Mean wall time of a profiled run (ORT's model_run events). */
  runMs: number;
  /** Sum of the node kernel times of a run; runMs − kernelMs is ORT's own work between nodes. */
  kernelMs: number;
  /** Op types as ORT ran them (after its fusions), most time first. */
  ops: { opType: string; category: OpCategory; nodesPerRun: number; msPerRun: number; share: number }[];
  categories: { category: OpCategory; msPerRun: number; share: number }[];
  /** flops.perGraphCall / the matrix-product kernel time: how fast the products run inside the graph. */
  matrixProductGflops: number;
  /** What limits the achieved share, in a sentence drawn from the figures. */
  limits: string;
  load: PhaseLoad;
}

export interface TargetResult {
  name: string;
  value: number;
  comparison: '>=';
  threshold: number;
  pass: boolean;
  /** How value and threshold read: a share (as a percentage) or a ratio (as ×). */
  unit: 'share' | 'ratio';
}

// ---------------------------------------------------------------------------------------------
// What is measured, and how often.

interface Plan {
  mode: 'full' | 'quick';
  threads: number;
  outDir: string;
  model: { name: string; config: Record<string, unknown> };
  seqLen: number;
  batchWindows: number;
  accumulation: number;
  peakWarmup: number;
  peakRuns: number;
  graphWarmup: number;
  graphCalls: number;
  stepWarmup: number;
  steps: number;
  profileRuns: number;
}

/** The default pretraining layout, as scripts/pretrain-default.sh trains configs/ppd-base.json. */
const DEFAULT_LAYOUT = { seqLen: 512, batchWindows: 4, accumulation: 1 };
/** The layout the previous step trained ppd-base with: 1 packed window per call, 2 calls per step. */
const PREVIOUS_LAYOUT = { batchWindows: 1, accumulation: 2 };
const TARGET_SPEEDUP = 2;
const CLIP_NORM = 1;
const LEARNING_RATE = 3e-3;
const SEED = 0;
/** Windows' worth of synthetic tokens to sample from (their values do not change the cost). */
const TOKEN_STREAM_WINDOWS = 64;
const TARGET_SHARE_OF_PEAK = 0.4;

/** A tiny LLaMA for --quick: every phase runs, in seconds. */
const QUICK_CONFIG = {
  model_type: 'llama',
  vocab_size: 256,
  hidden_size: 64,
  intermediate_size: 172,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: true,
};

function planFromArgs(argv: string[]): Plan {
  const { quick, threads } = parseBenchArgs(argv);
  if (quick) {
    return {
      mode: 'quick',
      threads,
      outDir: join(tmpdir(), 'ppd-bench-train-quick'),
      model: { name: 'tiny (--quick)', config: QUICK_CONFIG },
      seqLen: 64,
      batchWindows: 1,
      accumulation: 2,
      peakWarmup: 1,
      peakRuns: 2,
      graphWarmup: 1,
      graphCalls: 2,
      stepWarmup: 1,
      steps: 2,
      profileRuns: 2,
    };
  }
  const configPath = join(REPO_ROOT, 'configs', 'ppd-base.json');
  return {
    mode: 'full',
    threads,
    outDir: join(REPO_ROOT, 'docs', 'bench'),
    model: { name: 'ppd-base', config: readJsonObject(configPath) },
    ...DEFAULT_LAYOUT,
    peakWarmup: 3,
    peakRuns: 20,
    graphWarmup: 3,
    graphCalls: 20,
    stepWarmup: 2,
    steps: 10,
    profileRuns: 3,
  };
}

// ---------------------------------------------------------------------------------------------
// FLOPs of the training graph, from the builder's record.

const elements = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);

function product(op: Product['op'], a: number[], b: number[], transA: boolean, transB: boolean): Product {
  let flops: number;
  if (op === 'Gemm') {
    const [M, K] = transA ? [a[1]!, a[0]!] : [a[0]!, a[1]!];
    const N = transB ? b[0]! : b[1]!;
    flops = 2 * M * K * N;
  } else {
    // A [..., M, K] @ B [..., K, N]: the batch axes broadcast against each other (1 or equal).
    const [M, K] = a.slice(-2) as [number, number];
    const N = b.at(-1)!;
    const batchA = a.slice(0, -2);
    const batchB = b.slice(0, -2);
    let batch = 1;
    for (let axis = 1; axis <= Math.max(batchA.length, batchB.length); axis++) {
      batch *= Math.max(batchA.at(-axis) ?? 1, batchB.at(-axis) ?? 1);
    }
    flops = 2 * batch * M * K * N;
  }
  const trans = `${transA ? ' transA' : ''}${transB ? ' transB' : ''}`;
  return { label: `${op}${trans} [${a.join(', ')}] x [${b.join(', ')}]`, op, a, b, transA, transB, flops };
}

/** The static shape of input `index` of `node`; the training graph has no symbolic dimension. */
function staticShape(g: GraphBuilder, node: GraphNode, index: number): number[] {
  const shape = g.shapeOf(node.inputs[index]!);
  if (!shape || shape.some((d) => typeof d !== 'number') || (node.opType === 'MatMul' && shape.length < 2)) {
    throw new Error(`${node.name}: input ${index} has shape ${JSON.stringify(shape)}; FLOPs need a static shape of rank >= 2`);
  }
  return shape as number[];
}

/** Every MatMul and Gemm node of `g`, grouped by product, most FLOPs first. */
function countFlops(g: GraphBuilder): FlopCount {
  const kinds = new Map<string, ProductKind>();
  let matrixProductNodes = 0;
  for (const node of g.nodes) {
    if (node.opType !== 'MatMul' && node.opType !== 'Gemm') continue;
    matrixProductNodes++;
    const p = product(node.opType, staticShape(g, node, 0), staticShape(g, node, 1), node.attrs.transA === 1, node.attrs.transB === 1);
    const kind = kinds.get(p.label);
    if (kind) kind.count++;
    else kinds.set(p.label, { ...p, count: 1, share: 0 });
  }
  const perGraphCall = [...kinds.values()].reduce((sum, k) => sum + k.count * k.flops, 0);
  for (const kind of kinds.values()) kind.share = (kind.count * kind.flops) / perGraphCall;
  return {
    perGraphCall,
    matrixProductNodes,
    kinds: [...kinds.values()].sort((x, y) => y.count * y.flops - x.count * x.flops),
    notCounted: 'elementwise ops, softmax, reductions, transposes and copies (a few FLOPs per element, against K per output element of a product)',
  };
}

// ---------------------------------------------------------------------------------------------
// Matrix-product peak: each product alone in a graph.

function productGraph(p: Product, bInitializer: Float32Array | undefined): Uint8Array {
  const g = new GraphBuilder('product');
  const a = g.input('a', 'float32', p.a);
  const b = bInitializer ? g.initializer('b', bInitializer, p.b) : g.input('b', 'float32', p.b);
  const attrs: Record<string, AttrValue> = p.op === 'Gemm' ? { transA: Number(p.transA), transB: Number(p.transB) } : {};
  g.output(g.op(p.op, [a, b], attrs), 'y');
  return g.finish();
}

async function timeProduct(p: Product, bAs: ProductTiming['bAs'], plan: Plan, dir: string, progress: Progress): Promise<ProductTiming> {
  const aData = gaussian(elements(p.a), SEED + 1, 0, 1);
  const bData = gaussian(elements(p.b), SEED + 2, 0, 1);
  const path = join(dir, 'product.onnx');
  writeFileSync(path, productGraph(p, bAs === 'initializer' ? bData : undefined));
  const session = await createSession(path, { threads: plan.threads });
  try {
    const feeds: Record<string, OrtTensor> = { a: new OrtTensor('float32', aData, p.a) };
    if (bAs === 'input') feeds.b = new OrtTensor('float32', bData, p.b);
    const samples: number[] = [];
    for (let run = 0; run < plan.peakWarmup + plan.peakRuns; run++) {
      const ms = await timed(() => session.run(feeds));
      if (run >= plan.peakWarmup) samples.push(ms);
      progress.tick();
    }
    const time = spread(samples);
    return { ...p, bAs, run: time, gflops: p.flops / (time.medianMs * 1e6) };
  } finally {
    await session.release();
  }
}

async function measurePeak(kinds: ProductKind[], plan: Plan): Promise<PeakResult> {
  const endPhase = watchLoad();
  // Prepacking applies to a constant 2-D B: the forward products of the linear layers.
  const prepackable = kinds.filter((k) => k.op === 'MatMul' && k.b.length === 2);
  const runsEach = plan.peakWarmup + plan.peakRuns;
  const progress = new Progress('matrix-product peak', (kinds.length + prepackable.length) * runsEach, 'runs');
  const dir = mkdtempSync(join(tmpdir(), 'ppd-bench-peak-'));
  try {
    const products: ProductTiming[] = [];
    for (const kind of kinds) products.push(await timeProduct(kind, 'input', plan, dir, progress));
    const prepacked: ProductTiming[] = [];
    for (const kind of prepackable) prepacked.push(await timeProduct(kind, 'initializer', plan, dir, progress));
    const best = products.reduce((x, y) => (y.gflops > x.gflops ? y : x));
    const mixMs = kinds.reduce((sum, k, i) => sum + k.count * products[i]!.run.medianMs, 0);
    const mixFlops = kinds.reduce((sum, k) => sum + k.count * k.flops, 0);
    progress.stop(`peak ${fmt(best.gflops)} GFLOP/s (${best.label}), the graph's mix ${fmt(mixFlops / (mixMs * 1e6))} GFLOP/s`);
    return {
      warmupRuns: plan.peakWarmup,
      products,
      best: { label: best.label, gflops: best.gflops },
      mixGflops: mixFlops / (mixMs * 1e6),
      prepacked,
      load: endPhase(),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Training throughput: graph calls, then optimiser steps as the loop runs them.

/** One call's graph input: the first windows of the synthetic stream (their values do not change the cost). */
function stepInput(params: Map<string, Float32Array>, tokens: Int32Array, plan: Plan): StepInput {
  const N = plan.seqLen * plan.batchWindows;
  return { ids: tokens.subarray(0, N), targets: tokens.subarray(1, N + 1), weights: params };
}

async function timeCalls(label: string, rows: number, warmup: number, calls: number, call: () => Promise<unknown>): Promise<Spread> {
  const progress = new Progress(label, warmup + calls, 'calls');
  const samples: number[] = [];
  for (let i = 0; i < warmup + calls; i++) {
    const ms = await timed(call);
    if (i >= warmup) samples.push(ms);
    progress.tick();
  }
  const time = spread(samples);
  progress.stop(`median ${fmt(time.medianMs)} ms, ${fmt((rows * 1000) / time.medianMs, 0)} tokens/s`);
  return time;
}

/** Times `steps` optimiser steps, each split into its gradients and its update. */
async function timeSteps(label: string, tokensPerStep: number, plan: Plan, step: () => Promise<{ gradientsMs: number; updateMs: number }>) {
  const samples = { total: [] as number[], gradients: [] as number[], update: [] as number[] };
  const progress = new Progress(label, plan.stepWarmup + plan.steps, 'steps');
  for (let i = 0; i < plan.stepWarmup + plan.steps; i++) {
    const { gradientsMs, updateMs } = await step();
    if (i >= plan.stepWarmup) {
      samples.total.push(gradientsMs + updateMs);
      samples.gradients.push(gradientsMs);
      samples.update.push(updateMs);
    }
    progress.tick();
  }
  const result = { total: spread(samples.total), gradients: spread(samples.gradients), update: spread(samples.update) };
  progress.stop(`median ${fmt(result.total.medianMs)} ms, ${fmt((tokensPerStep * 1000) / result.total.medianMs, 0)} tokens/s`);
  return result;
}

function pathTiming(layout: { seqLen: number; batchWindows: number; accumulation: number }, sessionCreateMs: number, graph: Spread, steps: Awaited<ReturnType<typeof timeSteps>>, plan: Plan): PathTiming {
  const rows = layout.seqLen * layout.batchWindows;
  return {
    ...layout,
    sessionCreateMs,
    graphCall: { warmupCalls: plan.graphWarmup, time: graph, tokensPerSecond: (rows * 1000) / graph.medianMs },
    optimizerStep: {
      warmupSteps: plan.stepWarmup,
      ...steps,
      typescriptMs: steps.gradients.medianMs - layout.accumulation * graph.medianMs,
      tokensPerSecond: (rows * layout.accumulation * 1000) / steps.total.medianMs,
    },
  };
}

async function measureCurrent(config: LlamaConfig, params: Map<string, Float32Array>, tokens: Int32Array, plan: Plan): Promise<PathTiming> {
  const rows = plan.seqLen * plan.batchWindows;
  const createStart = performance.now();
  const session = await PretrainSession.create(config, { windows: plan.batchWindows, windowTokens: plan.seqLen }, { threads: plan.threads });
  const sessionCreateMs = performance.now() - createStart;
  try {
    const input = stepInput(params, tokens, plan);
    const graph = await timeCalls('graph call (loss + gradients)', rows, plan.graphWarmup, plan.graphCalls, () => session.step(input));
    const optimizer = new AdamW(DEFAULT_ADAMW); // its hyperparameters do not change its cost
    const sampler = new WindowSampler(tokens.length, plan.seqLen, SEED);
    const steps = await timeSteps('optimiser step', rows * plan.accumulation, plan, async () => {
      const t0 = performance.now();
      const { grads, scale } = await accumulatedGradients(session, params, tokens, sampler, { ...plan, clipNorm: CLIP_NORM });
      const t1 = performance.now();
      optimizer.update(params, grads, LEARNING_RATE, scale);
      return { gradientsMs: t1 - t0, updateMs: performance.now() - t1 };
    });
    return pathTiming(plan, sessionCreateMs, graph, steps, plan);
  } finally {
    await session.release();
  }
}

async function measurePrevious(config: LlamaConfig, params: Map<string, Float32Array>, tokens: Int32Array, plan: Plan): Promise<PathTiming> {
  const layout = { seqLen: plan.seqLen, ...PREVIOUS_LAYOUT };
  const rows = layout.seqLen * layout.batchWindows;
  const createStart = performance.now();
  const previous = await PreviousPretrainStep.create(config, layout.seqLen, layout.batchWindows, { threads: plan.threads });
  const sessionCreateMs = performance.now() - createStart;
  try {
    const starts = new WindowSampler(tokens.length, plan.seqLen, SEED).next(layout.batchWindows);
    const graph = await timeCalls('previous step: graph call', rows, plan.graphWarmup, plan.graphCalls, () => previous.call(params, tokens, starts));
    const optimizer = new AdamW(DEFAULT_ADAMW);
    const sampler = new WindowSampler(tokens.length, plan.seqLen, SEED);
    const steps = await timeSteps('previous step: optimiser step', rows * layout.accumulation, plan, async () => {
      const t0 = performance.now();
      const grads = await previous.gradients(params, tokens, sampler, layout.accumulation);
      const t1 = performance.now();
      previous.update(params, grads, optimizer, LEARNING_RATE, CLIP_NORM);
      return { gradientsMs: t1 - t0, updateMs: performance.now() - t1 };
    });
    return pathTiming(layout, sessionCreateMs, graph, steps, plan);
  } finally {
    await previous.release();
  }
}

async function measureTraining(config: LlamaConfig, params: Map<string, Float32Array>, tokens: Int32Array, plan: Plan): Promise<TrainingResult> {
  const endPhase = watchLoad();
  const current = await measureCurrent(config, params, tokens, plan);
  const previous = await measurePrevious(config, params, tokens, plan);
  return { current, previous, speedup: current.optimizerStep.tokensPerSecond / previous.optimizerStep.tokensPerSecond, load: endPhase() };
}

// ---------------------------------------------------------------------------------------------
// ORT profile by op type.

const CATEGORY_OPS: [OpCategory, string[]][] = [
  ['matrix products', ['MatMul', 'Gemm', 'FusedMatMul', 'FusedGemm']],
  ['softmax', ['Softmax', 'LogSoftmax', 'SoftmaxGrad', 'SoftmaxGrad_13', 'LogSoftmaxGrad', 'LogSoftmaxGrad_13', 'BiasSoftmax']],
  ['normalisation', ['SimplifiedLayerNormalization', 'SkipSimplifiedLayerNormalization', 'LayerNormalization', 'SkipLayerNormalization']],
  ['elementwise', ['Add', 'Sub', 'Mul', 'Div', 'Neg', 'Pow', 'Sqrt', 'Exp', 'Log', 'Sigmoid', 'Sin', 'Cos', 'Where', 'Sum', 'Reciprocal', 'Equal', 'QuickGelu']],
  ['reductions', ['ReduceSum', 'ReduceMean', 'ReduceMax']],
  ['data movement', ['Transpose', 'Reshape', 'Expand', 'Concat', 'Split', 'Slice', 'Tile', 'Gather', 'GatherElements', 'ScatterElements', 'Identity', 'Unsqueeze', 'Squeeze', 'Cast']],
];
const CATEGORY_OF = new Map(CATEGORY_OPS.flatMap(([category, ops]) => ops.map((op) => [op, category] as const)));

/** Sums the kernel times of the profiled runs (the first, a warm-up, left out) by op type. */
function summarizeProfile(events: TraceEvent[], flopsPerCall: number): Omit<ProfileResult, 'limits' | 'load'> {
  const { runs, runMs, kernelMs, groups } = sumKernels(events, { skip: 1 });
  const ops = groups.map((g) => ({ opType: g.key, category: CATEGORY_OF.get(g.key) ?? 'other', nodesPerRun: g.nodesPerRun, msPerRun: g.msPerRun, share: g.share }));
  const categories = [...new Set(ops.map((o) => o.category))]
    .map((category) => {
      const msPerRun = ops.filter((o) => o.category === category).reduce((sum, o) => sum + o.msPerRun, 0);
      return { category, msPerRun, share: msPerRun / kernelMs };
    })
    .sort((x, y) => y.msPerRun - x.msPerRun);
  const productMs = categories.find((c) => c.category === 'matrix products')?.msPerRun ?? 0;
  return { runs, runMs, kernelMs, ops, categories, matrixProductGflops: productMs > 0 ? flopsPerCall / (productMs * 1e6) : 0 };
}

async function profileByOpType(config: LlamaConfig, input: StepInput, flopsPerCall: number, plan: Plan): Promise<Omit<ProfileResult, 'limits'>> {
  const endPhase = watchLoad();
  const dir = mkdtempSync(join(tmpdir(), 'ppd-bench-profile-'));
  const progress = new Progress('ORT profile', 1 + plan.profileRuns, 'calls');
  try {
    const session = await PretrainSession.create(config, { windows: plan.batchWindows, windowTokens: plan.seqLen }, { threads: plan.threads, profilePrefix: join(dir, 'train') });
    try {
      for (let run = 0; run < 1 + plan.profileRuns; run++) {
        await session.step(input);
        progress.tick();
      }
    } finally {
      await session.release(); // ORT writes the profile now
    }
    const file = readdirSync(dir).find((name) => name.endsWith('.json'));
    if (!file) throw new Error(`ONNX Runtime wrote no profile into ${dir}`);
    const summary = summarizeProfile(JSON.parse(readFileSync(join(dir, file), 'utf8')) as TraceEvent[], flopsPerCall);
    progress.stop(summary.categories.map((c) => `${c.category} ${pct(c.share)}`).join(', '));
    return { ...summary, load: endPhase() };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Achieved / peak = (product rate inside the graph / peak) × (product time / call time): says
 * which factor loses more, and what fills the rest of the call.
 */
function limitsSentence(profile: Omit<ProfileResult, 'limits'>, peak: PeakResult): string {
  const products = profile.categories.find((c) => c.category === 'matrix products');
  const speed = profile.matrixProductGflops / peak.best.gflops;
  const fill = (products?.msPerRun ?? 0) / profile.runMs;
  const rest = profile.categories
    .filter((c) => c.category !== 'matrix products')
    .slice(0, 3)
    .map((c) => `${c.category} ${pct(c.msPerRun / profile.runMs)}`);
  const between = Math.max(0, profile.runMs - profile.kernelMs) / profile.runMs;
  const fedRate = new Map(peak.products.map((p) => [p.label, p.gflops]));
  const gains = peak.prepacked.map((p) => p.gflops / fedRate.get(p.label)!).sort((x, y) => x - y);
  const prepacking = gains.length === 0 ? '' : `; prepacking B would make the forward ones ${fmt(gains[0]!, 2)}–${fmt(gains.at(-1)!, 2)}× faster, which training cannot use since B changes every step`;
  const main =
    speed < fill
      ? `the products themselves: even alone, the graph's mix of shapes reaches ${fmt(peak.mixGflops)} GFLOP/s (${pct(peak.mixGflops / peak.best.gflops)} of the peak)${prepacking}`
      : 'the work around the products, which counts no FLOPs';
  return (
    `What limits the share: it is the product of two factors. Inside the graph the matrix products run at ${fmt(profile.matrixProductGflops)} GFLOP/s, ${pct(speed)} of the peak, ` +
    `and they fill ${pct(fill)} of a graph call; the rest is ${rest.join(', ')} and ${pct(between)} between kernels. ` +
    `The larger loss is ${main}.`
  );
}

// ---------------------------------------------------------------------------------------------
// Report: Markdown and JSON.

const gflop = (flops: number) => fmt(flops / 1e9, 3);
const count = (n: number, noun: string, plural = `${noun}s`) => `${n} ${n === 1 ? noun : plural}`;

function markdown(r: TrainReport): string {
  const t = r.training;
  const cur = t.current;
  const fedRate = new Map(r.peak.products.map((p) => [p.label, p.gflops]));
  const phases: [string, PhaseLoad][] = [
    ['peak', r.peak.load],
    ['training', t.load],
    ['profile', r.profile.load],
  ];
  const busy = phases.filter(([, load]) => load.otherCores !== null && load.otherCores > BUSY_MACHINE_CORES);
  const lines = [
    '# Training benchmark',
    '',
    `Command: \`${r.command}\` (${r.mode} run, ${r.date}, ${fmt(r.durationSeconds, 0)} s). Data: \`train.json\` (schema \`${r.schema}\`, see \`bench/train.ts\`).`,
    '',
    ...machineSection(r.machine, r.load),
    '## Model and layout',
    '',
    '| | |',
    '| --- | --- |',
    `| model | ${r.model.name}: ${fmt(r.model.parameters / 1e6, 2)}M parameters, f32 |`,
    `| layout | seq ${r.model.seqLen}, ${count(r.model.batchWindows, 'window')} per micro-batch, ${count(r.model.accumulation, 'micro-batch', 'micro-batches')} per optimiser step |`,
    `| rows per graph call (R) | ${r.model.rowsPerCall} |`,
    `| counted FLOPs per graph call | ${gflop(r.flops.perGraphCall)} GFLOP in ${r.flops.matrixProductNodes} MatMul/Gemm nodes |`,
    '',
    `FLOPs are counted from the graph's nodes and static shapes: 2·M·K·N per MatMul/Gemm, times the batch of a batched MatMul. Not counted: ${r.flops.notCounted}.`,
    '',
    '## Matrix-product peak',
    '',
    `Each distinct product of the training graph alone in a graph, A and B both fed as inputs (as in training: the weights change every step, so ORT cannot prepack them); ` +
      `${count(r.peak.warmupRuns, 'warm-up run')}, then the median of ${r.peak.products[0]?.run.samples ?? 0}.`,
    '',
    '| product | nodes | share of graph FLOPs | GFLOP each | ms median [min–max] | GFLOP/s |',
    '| --- | --- | --- | --- | --- | --- |',
    ...r.peak.products.map((p, i) => {
      const kind = r.flops.kinds[i]!;
      return `| ${p.label} | ${kind.count} | ${pct(kind.share)} | ${gflop(p.flops)} | ${msSpread(p.run, 2)} | ${fmt(p.gflops)} |`;
    }),
    '',
    `**Peak: ${fmt(r.peak.best.gflops)} GFLOP/s** (${r.peak.best.label}). The graph's own mix of products, each at its rate above: ${fmt(r.peak.mixGflops)} GFLOP/s.`,
    '',
    'For reference, the forward products with B an initializer, which ORT prepacks once:',
    '',
    '| product | GFLOP/s, B fed | GFLOP/s, B prepacked | prepacked / fed |',
    '| --- | --- | --- | --- |',
    ...r.peak.prepacked.map((p) => `| ${p.label} | ${fmt(fedRate.get(p.label)!)} | ${fmt(p.gflops)} | ${fmt(p.gflops / fedRate.get(p.label)!, 2)} |`),
    '',
    '## Training throughput',
    '',
    `Random initial weights, synthetic tokens, ${count(cur.graphCall.warmupCalls, 'warm-up call')} and ${count(cur.optimizerStep.warmupSteps, 'warm-up step')} of each path, in the same run. ` +
      'Current = what `ppd pretrain` runs: `PretrainSession.step` (embedding lookup, per-window attention in query chunks, loss, every gradient and their norm in one ORT run), ' +
      '`accumulatedGradients`, then `AdamW.update` with the clipping factor folded in. ' +
      'Previous = the step before (bench/train-baseline.ts): windows packed as rows with a block-diagonal mask fed as data, embedding lookup and scatter in TypeScript, ' +
      'the cross-entropy differentiated by chained rules, calls averaged in TypeScript, clipping as a pass of its own, then AdamW.',
    '',
    '| | current | previous |',
    '| --- | --- | --- |',
    `| layout | ${count(cur.batchWindows, 'window')} of ${cur.seqLen} per graph call, ${count(cur.accumulation, 'call')} per step | ${count(t.previous.batchWindows, 'window')} of ${t.previous.seqLen} per graph call, ${count(t.previous.accumulation, 'call')} per step |`,
    `| session creation | ${fmt(cur.sessionCreateMs / 1000)} s | ${fmt(t.previous.sessionCreateMs / 1000)} s |`,
    `| graph call, ms median [min–max] | ${msSpread(cur.graphCall.time)} | ${msSpread(t.previous.graphCall.time)} |`,
    `| graph call, tokens/s | ${fmt(cur.graphCall.tokensPerSecond, 0)} | ${fmt(t.previous.graphCall.tokensPerSecond, 0)} |`,
    `| optimiser step, ms median [min–max] | ${msSpread(cur.optimizerStep.total)} | ${msSpread(t.previous.optimizerStep.total)} |`,
    `| — gradients (graph calls and the TypeScript around them) | ${msSpread(cur.optimizerStep.gradients)} | ${msSpread(t.previous.optimizerStep.gradients)} |`,
    `| — of which TypeScript (gradients − calls × graph call) | ${fmt(cur.optimizerStep.typescriptMs)} | ${fmt(t.previous.optimizerStep.typescriptMs)} |`,
    `| — update (clipping and AdamW) | ${msSpread(cur.optimizerStep.update)} | ${msSpread(t.previous.optimizerStep.update)} |`,
    `| **optimiser steps, tokens/s** | **${fmt(cur.optimizerStep.tokensPerSecond, 0)}** | ${fmt(t.previous.optimizerStep.tokensPerSecond, 0)} |`,
    '',
    `Speed-up of whole optimiser steps: **${fmt(t.speedup, 2)}×**.`,
    '',
    '## Achieved FLOP rate',
    '',
    `${gflop(r.flops.perGraphCall)} GFLOP per graph call of the current step / ${fmt(cur.graphCall.time.medianMs)} ms = **${fmt(r.achieved.gflops)} GFLOP/s**: ` +
      `**${pct(r.achieved.shareOfPeak)} of the peak**, ${pct(r.achieved.shareOfMix)} of the graph's product mix at its isolated rates.`,
    '',
    '## Where a graph call spends its time (ORT profile)',
    '',
    `A separate session with profiling on, ${count(r.profile.runs, 'run')} after a warm-up: ${fmt(r.profile.runMs)} ms a run, ${fmt(r.profile.kernelMs)} ms of it in kernels. ` +
      'Op types are as ORT runs them, after its fusions (FusedMatMul is a MatMul with a transposed operand folded in).',
    '',
    '| category | ms per run | share of kernel time |',
    '| --- | --- | --- |',
    ...r.profile.categories.map((c) => `| ${c.category} | ${fmt(c.msPerRun)} | ${pct(c.share)} |`),
    '',
    '| op type | category | nodes per run | ms per run | share of kernel time |',
    '| --- | --- | --- | --- | --- |',
    ...r.profile.ops.map((op) => `| ${op.opType} | ${op.category} | ${fmt(op.nodesPerRun, 0)} | ${fmt(op.msPerRun, 2)} | ${pct(op.share)} |`),
    '',
    r.profile.limits,
    '',
    '## Targets',
    '',
    '| target | value | threshold | result |',
    '| --- | --- | --- | --- |',
    ...r.targets.map((x) => {
      const shown = (v: number) => (x.unit === 'share' ? pct(v) : `${fmt(v, 2)}×`);
      return `| ${x.name} | ${shown(x.value)} | ${x.comparison} ${shown(x.threshold)} | ${x.pass ? 'pass' : '**fail**'} |`;
    }),
  ];
  if (busy.length > 0) {
    lines.push(
      '',
      `**Warning:** other processes used more than ${BUSY_MACHINE_CORES} cores during ${busy.map(([name, load]) => `${name} (${otherCpu(load)})`).join(', ')}; those figures understate ppd. Rerun on an idle machine.`,
    );
  }
  return lines.join('\n') + '\n';
}

function writeReport(report: TrainReport, outDir: string): string[] {
  mkdirSync(outDir, { recursive: true });
  const paths = [join(outDir, 'train.json'), join(outDir, 'train.md')];
  writeJsonAtomic(paths[0]!, report);
  writeFileAtomic(paths[1]!, markdown(report));
  return paths;
}

// ---------------------------------------------------------------------------------------------
// Main.

async function main(argv: string[]): Promise<void> {
  const plan = planFromArgs(argv);
  const date = new Date().toISOString();
  const endRun = watchLoad();
  const machine = describeMachine(plan.threads);
  const config = parseLlamaConfig(plan.model.config, plan.model.name);
  const rows = plan.seqLen * plan.batchWindows;
  process.stderr.write(
    `training benchmark (${plan.mode}): ${plan.model.name}, ${rows} rows per graph call, ${machine.cpuModel}, ${machine.cores} cores, ${plan.threads} threads, ORT ${machine.onnxruntime}\n`,
  );
  await warnIfBusy();

  const flops = countFlops(buildPretrainGraph(config, { windows: plan.batchWindows, windowTokens: plan.seqLen }).builder);
  const peak = await measurePeak(flops.kinds, plan);

  const params = initialParams(config, SEED);
  const tokens = Int32Array.from(tokenIds(TOKEN_STREAM_WINDOWS * (plan.seqLen + 1), config.vocabSize, 0));
  const training = await measureTraining(config, params, tokens, plan);
  const gflops = flops.perGraphCall / (training.current.graphCall.time.medianMs * 1e6);
  const achieved: Achieved = { gflops, shareOfPeak: gflops / peak.best.gflops, shareOfMix: gflops / peak.mixGflops };

  const profiled = await profileByOpType(config, stepInput(params, tokens, plan), flops.perGraphCall, plan);
  const profile: ProfileResult = { ...profiled, limits: limitsSentence(profiled, peak) };

  const load = endRun();
  const report: TrainReport = {
    schema: 'ppd.bench.train/2',
    mode: plan.mode,
    command: `npm run bench:train${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`,
    date,
    durationSeconds: load.wallSeconds,
    machine,
    model: {
      name: plan.model.name,
      config: plan.model.config,
      parameters: parameterCount(config),
      seqLen: plan.seqLen,
      batchWindows: plan.batchWindows,
      accumulation: plan.accumulation,
      rowsPerCall: rows,
    },
    flops,
    peak,
    training,
    achieved,
    profile,
    targets: [
      {
        name: 'achieved GFLOP/s of a graph call, share of the matrix-product peak',
        value: achieved.shareOfPeak,
        comparison: '>=',
        threshold: TARGET_SHARE_OF_PEAK,
        pass: achieved.shareOfPeak >= TARGET_SHARE_OF_PEAK,
        unit: 'share',
      },
      {
        name: 'optimiser-step tokens/s, current over previous step',
        value: training.speedup,
        comparison: '>=',
        threshold: TARGET_SPEEDUP,
        pass: training.speedup >= TARGET_SPEEDUP,
        unit: 'ratio',
      },
    ],
    load,
  };
  const paths = writeReport(report, plan.outDir);

  console.log(
    `${plan.model.name}: ${fmt(training.current.optimizerStep.tokensPerSecond, 0)} tokens/s (optimiser steps; previous step ${fmt(training.previous.optimizerStep.tokensPerSecond, 0)}, ${fmt(training.speedup, 2)}x), graph call ${fmt(training.current.graphCall.time.medianMs)} ms, ` +
      `${fmt(gflops)} GFLOP/s = ${pct(achieved.shareOfPeak)} of the ${fmt(peak.best.gflops)} GFLOP/s peak (target ${pct(TARGET_SHARE_OF_PEAK)}: ${report.targets[0]!.pass ? 'pass' : 'fail'})`,
  );
  for (const path of paths) console.log(`wrote ${shownPath(path)}`);
}

await runBenchmark(main);
