/**
 * Quantized-compute benchmark: what keeping linear weights in 8- or 4-bit blocks (ONNX Runtime's
 * MatMulNBits, `LoadOptions.quantize`) gains in speed and costs in accuracy, side by side with
 * f32 in one run. Writes docs/bench/quant.json (the data; schema: `QuantReport` below),
 * docs/bench/quant.md (the same for people) and docs/bench/quant-latency.svg (L(T)/L(1) per
 * precision).
 *
 *   npm run bench:quant                    full run: TinyLlama-1.1B shape (about 8 GB of memory,
 *                                          about 10 minutes on 2 cores) and models/ppd-base
 *   npm run bench:quant -- --quick         smoke check: the 125M shape, few repeats, 1024 tokens;
 *                                          written to a temporary folder so the published report stays
 *   --tokens N                             held-out tokens scored for perplexity (16384)
 *   --repeats N                            timed rounds of the latency sweep (9)
 *   --accuracy                             the accuracy section alone (nothing timed, so it can run
 *                                          beside other work): docs/bench/quant-accuracy.{json,md}
 *   --threads N                            ONNX Runtime intra-op threads (default: all cores)
 *
 * What it measures:
 *   speed     a TinyLlama-1.1B-shape model with random weights (generated on read, nothing big on
 *             disk) loaded three times, f32, q8 and q4, all held at once: load time, process RSS
 *             after each load, greedy decode after a 64-row prompt, and L(T), one forward of T rows
 *             over a 64-row past, for T = 1..32. The three take turns round by round
 *             (model-timing.ts), so the machine's noise lands on all of them alike and the ratios
 *             (L(16)/L(1), speed over f32) are fair even where the absolute figures are not. The
 *             same for models/ppd-base, with its GGUF Q8_0, Q4_0 and Q4_K_M exports (stored blocks
 *             passed straight to MatMulNBits) beside ppd's own q8 and q4.
 *   accuracy  held-out perplexity of models/ppd-base on the first --tokens tokens of the
 *             test split of its corpus (window 512, stride 256, as its model card) for f32, q8, q4,
 *             q8 and q4 with f32 products (accuracy_level 0: the weight rounding alone), every
 *             GGUF type `ppd convert` writes (GGUF_TYPES), and Q4_K_M with f32 products.
 *   reference llama.cpp's own figures as issue #8 quotes them, printed beside ours: quoted, not
 *             measured by this script.
 *
 * What it is not: a test. Nothing is asserted; a busy machine lowers every speed figure (each
 * phase records how much CPU other processes took), perplexities are deterministic.
 *
 * Shape legend: T = rows in one forward, P = rows in the KV cache.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_MODEL } from '../src/cli/demo.ts';
import { documentsOf, tokenizeDocuments } from '../src/data/tokenize.ts';
import { writeFileAtomic, writeJsonAtomic } from '../src/format/atomic.ts';
import { perplexity } from '../src/eval/perplexity.ts';
import { writeLlamaGguf } from '../src/checkpoint/gguf-export.ts';
import { openModelDir } from '../src/checkpoint/model-dir.ts';
import { loadModel, requireTokenizer, type LoadedModel } from '../src/checkpoint/load.ts';
import { parameterCount, parseLlamaConfig } from '../src/model/config.ts';
import type { QuantizedMatmul } from '../src/model/llama-graph.ts';
import type { LlamaModel } from '../src/model/llama-model.ts';
import type { QuantizeMode } from '../src/format/quantize.ts';
import { Progress } from '../src/report/progress.ts';
import {
  BUSY_MACHINE_CORES,
  bytes,
  describeMachine,
  fmt,
  gib,
  machineSection,
  msSpread,
  otherCpu,
  parseBenchArgs,
  positiveInt,
  REPO_ROOT,
  repoPath,
  residentMemory,
  runBenchmark,
  shownPath,
  warnIfBusy,
  watchLoad,
  type Machine,
  type PhaseLoad,
  writeReportFiles,
} from './harness.ts';
import { spread, type Spread } from '../src/report/timing.ts';
import {
  decodeCache,
  DECODE_TURN_STEPS,
  DECODE_WARMUP_STEPS,
  LATENCY_WARMUP_ROUNDS,
  latencyRows,
  loadRandomModel,
  maxRssBytes,
  measureDecode,
  measureLatency,
  PROMPT_ROWS,
  SETTLE_MS,
  SMALL,
  TINYLLAMA,
  type LatencyRow,
  type RandomShape,
  type Subject,
} from './model-timing.ts';
import { heldOutTextFor } from './prompts.ts';

// ---------------------------------------------------------------------------------------------
// Report schema (docs/bench/quant.json). Times in milliseconds, sizes in bytes, rates per second,
// ratios as plain numbers (2 = twice).

export interface QuantReport {
  schema: 'ppd.bench.quant/1';
  mode: 'full' | 'quick';
  command: string;
  /** ISO 8601, when the run started. */
  date: string;
  durationSeconds: number;
  machine: Machine;
  /** The random TinyLlama-shape model (--quick: the 125M shape), then models/ppd-base. */
  speed: SpeedSection[];
  accuracy: AccuracySection;
  /** llama.cpp's figures as issue #8 quotes them: not measured by this script. */
  reference: LlamaCppReference;
  /** CPU that other processes used during the whole run; see PhaseLoad. */
  load: PhaseLoad;
}

export interface SpeedSection {
  name: string;
  /** 'random weights (seed 0)', or the model folder. */
  weights: string;
  /** The Hugging Face config.json the model was built from (random shapes only). */
  config?: Record<string, unknown>;
  parameters: number;
  decode: { promptRows: number; warmupSteps: number; steps: number; stepsPerTurn: number };
  latency: { pastRows: number; warmupRounds: number; repeats: number };
  /** Pause before each model's turn (model-timing.ts). */
  settleMs: number;
  /** f32 first: every `overF32` ratio divides by its figures. */
  precisions: PrecisionSpeed[];
  /** process.resourceUsage().maxRSS after the section (a process-wide high-water mark). */
  peakRssBytes: number;
  load: PhaseLoad;
}

export interface PrecisionSpeed {
  precision: PrecisionId;
  description: string;
  /** Opening the weights (random: generating them, and quantizing), building the graph, creating the session. */
  loadMs: number;
  /** Process RSS after this load (after a full garbage collection), the earlier precisions' models still loaded. */
  rssAfterLoadBytes: number;
  /** RSS after this load minus RSS before it: about this model's own memory. */
  rssAddedBytes: number;
  decode: {
    step: Spread;
    tokensPerSecond: number;
    /** tokensPerSecond / f32's. */
    speedOverF32: number;
  };
  latency: {
    /** speedOverF32 = f32's median L(T) / this precision's. */
    rows: (LatencyRow & { speedOverF32: number })[];
    /** Median L(16) / median L(1). */
    l16OverL1: number;
  };
}

export interface AccuracySection {
  model: string;
  file: string;
  window: number;
  stride: number;
  /** Tokens scored (all but the first of the tokens read). */
  tokens: number;
  /** The GGUF files the gguf variants load, written for this run and removed after. */
  ggufExports: { type: GgufType; bytes: number; tensorTypes: Record<string, number>; f16Fallbacks: string[] }[];
  variants: AccuracyResult[];
  load: PhaseLoad;
}

export interface AccuracyResult {
  variant: VariantId;
  description: string;
  /** How the linear weights are held. */
  weights: string;
  /** How rows are multiplied by them: 'f32', or 'int8' (rows quantized per block, MatMulNBits accuracy_level 4). */
  products: 'f32' | 'int8';
  /** Mean negative log-likelihood per token, nats. */
  nll: number;
  perplexity: number;
  /** nll minus f32's. */
  nllOverF32: number;
  /** perplexity / f32's. */
  perplexityOverF32: number;
  /** Wall time of the scoring forwards (one model at a time, not interleaved: indicative only). */
  scoringMs: number;
}

export interface LlamaCppReference {
  source: string;
  quote: string;
  rows: { type: 'F32' | 'F16' | 'Q8_0'; decodeTokensPerSecond: number; l16OverL1: number }[];
}

// ---------------------------------------------------------------------------------------------
// What is measured, and how often.

/** The GGUF file types exported from models/ppd-base: every quantized type ppd writes, and the usual mixes. */
const GGUF_TYPES = ['Q8_0', 'Q6_K', 'Q5_K_M', 'Q5_1', 'Q5_0', 'Q4_K_M', 'Q4_1', 'Q4_0', 'Q3_K_M', 'Q2_K'] as const;
type GgufType = (typeof GGUF_TYPES)[number];
type PrecisionId = 'f32' | 'q8' | 'q4' | `gguf ${GgufType}`;
type VariantId = 'f32' | 'q8' | 'q4' | 'q8, f32 products' | 'q4, f32 products' | `gguf ${GgufType}` | 'gguf Q4_K_M, f32 products';

/** How one variant of a model is loaded: from the checkpoint (optionally quantized) or from a GGUF export. */
interface Variant {
  id: VariantId;
  description: string;
  weights: string;
  products: AccuracyResult['products'];
  gguf?: GgufType;
  quantize?: QuantizeMode;
  matmul?: QuantizedMatmul;
}

const VARIANTS: readonly Variant[] = [
  { id: 'f32', description: 'f32 weights, f32 MatMul', weights: 'f32', products: 'f32' },
  { id: 'q8', description: '--quantize q8: 8-bit blocks of 32 (Q8_0 rounding), int8 products', weights: 'q8', products: 'int8', quantize: 'q8' },
  { id: 'q4', description: '--quantize q4: 4-bit blocks of 32 (Q4_0 rounding; LM head 8-bit), int8 products', weights: 'q4', products: 'int8', quantize: 'q4' },
  { id: 'q8, f32 products', description: 'q8 weights, rows kept f32 (accuracy_level 0): the weight rounding alone', weights: 'q8', products: 'f32', quantize: 'q8', matmul: 'f32' },
  { id: 'q4, f32 products', description: 'q4 weights, rows kept f32 (accuracy_level 0): the weight rounding alone', weights: 'q4', products: 'f32', quantize: 'q4', matmul: 'f32' },
  ...GGUF_TYPES.map((type): Variant => ({
    id: `gguf ${type}`,
    description: `\`ppd convert --type ${type.toLowerCase()}\` export, its blocks passed through exactly, int8 products`,
    weights: `GGUF ${type}`,
    products: 'int8',
    gguf: type,
  })),
  { id: 'gguf Q4_K_M, f32 products', description: 'the Q4_K_M export with rows kept f32 (accuracy_level 0): its weight rounding alone', weights: 'GGUF Q4_K_M', products: 'f32', gguf: 'Q4_K_M', matmul: 'f32' },
];
const variant = (id: VariantId) => VARIANTS.find((v) => v.id === id)!;

/** Precisions timed on the random shape, and on models/ppd-base (where the GGUF exports exist). */
const RANDOM_PRECISIONS: readonly PrecisionId[] = ['f32', 'q8', 'q4'];
const BASE_PRECISIONS: readonly PrecisionId[] = ['f32', 'q8', 'q4', 'gguf Q8_0', 'gguf Q4_0', 'gguf Q4_K_M'];

const LATENCY_ROWS = [1, 2, 4, 8, 16, 32];
/** As models/ppd-base/perplexity-test.json was scored. */
const PERPLEXITY_WINDOW = 512;
const PERPLEXITY_STRIDE = 256;
const SVG_NAME = 'quant-latency.svg';

const LLAMACPP_REFERENCE: LlamaCppReference = {
  source: 'issue #8, quoted; not measured by this script',
  quote:
    "llama.cpp's own benchmark here, TinyLlama-1.1B shapes, random weights, 2 threads: decode ~9 tok/s F32, ~19 F16, ~25 Q8_0; " +
    'L(16)/L(1) = 2.4 F32, 2.8 F16, 5.3 Q8_0',
  rows: [
    { type: 'F32', decodeTokensPerSecond: 9, l16OverL1: 2.4 },
    { type: 'F16', decodeTokensPerSecond: 19, l16OverL1: 2.8 },
    { type: 'Q8_0', decodeTokensPerSecond: 25, l16OverL1: 5.3 },
  ],
};
/** Which quoted llama.cpp type matches one of our precisions. */
const LLAMACPP_TYPE: Partial<Record<PrecisionId, 'F32' | 'Q8_0'>> = { f32: 'F32', q8: 'Q8_0' };

interface Plan {
  mode: 'full' | 'quick';
  threads: number;
  outDir: string;
  shape: RandomShape;
  decodeSteps: number;
  latencyRepeats: number;
  tokens: number;
  /** --accuracy: perplexities only. */
  accuracyOnly: boolean;
}

function planFromArgs(argv: string[]): Plan {
  // --quick and --threads are read and checked by the harness; the rest are this benchmark's.
  const { quick, threads, flags, switches } = parseBenchArgs(argv, ['tokens', 'repeats'], ['accuracy']);
  return {
    mode: quick ? 'quick' : 'full',
    threads,
    outDir: quick ? join(tmpdir(), 'ppd-bench-quant-quick') : join(REPO_ROOT, 'docs', 'bench'),
    shape: quick ? SMALL : TINYLLAMA,
    decodeSteps: quick ? 8 : 16,
    latencyRepeats: positiveInt('repeats', flags.repeats, quick ? 2 : 9),
    tokens: positiveInt('tokens', flags.tokens, quick ? 1024 : 16384),
    accuracyOnly: switches.accuracy === true,
  };
}

// ---------------------------------------------------------------------------------------------
// Speed: several precisions of one model, loaded at once, taking turns.

/** A precision to time: how to load it (returns the model and its load time). */
interface Contender {
  precision: PrecisionId;
  description: string;
  load: () => Promise<{ model: LlamaModel; ms: number }>;
}

/** Process RSS after a full garbage collection (harness.ts). */
const rssAfterCollection = async (): Promise<number> => (await residentMemory()).rssBytes;

async function timedLoad(load: () => Promise<LlamaModel>): Promise<{ model: LlamaModel; ms: number }> {
  const start = performance.now();
  const model = await load();
  return { model, ms: performance.now() - start };
}

/** Each precision's figures and its ratios to f32's (contender 0). */
function precisionResults(contenders: Contender[], loads: { ms: number; rssAfter: number; rssAdded: number }[], steps: number[][], latency: Map<number, number[]>[]): PrecisionSpeed[] {
  const f32Step = spread(steps[0]!).medianMs;
  const f32Rows = latencyRows(latency[0]!);
  return contenders.map((c, i) => {
    const step = spread(steps[i]!);
    const rows = latencyRows(latency[i]!).map((r, j) => ({ ...r, speedOverF32: f32Rows[j]!.latency.medianMs / r.latency.medianMs }));
    return {
      precision: c.precision,
      description: c.description,
      loadMs: loads[i]!.ms,
      rssAfterLoadBytes: loads[i]!.rssAfter,
      rssAddedBytes: loads[i]!.rssAdded,
      decode: { step, tokensPerSecond: 1000 / step.medianMs, speedOverF32: f32Step / step.medianMs },
      latency: { rows, l16OverL1: rows.find((r) => r.T === 16)!.ratioToT1 },
    };
  });
}

/**
 * Loads every contender (f32 first), all held at once; decodes after a prompt and sweeps L(T),
 * the contenders taking turns; releases them.
 */
async function benchSpeed(section: Pick<SpeedSection, 'name' | 'weights' | 'config'>, contenders: Contender[], plan: Plan): Promise<SpeedSection> {
  const endPhase = watchLoad();
  const subjects: Subject[] = [];
  const loads: { ms: number; rssAfter: number; rssAdded: number }[] = [];
  try {
    for (const c of contenders) {
      const rssBefore = await rssAfterCollection();
      const { model, ms } = await c.load();
      const rssAfter = await rssAfterCollection();
      subjects.push({ name: c.precision, model, cache: decodeCache(model.config, plan.decodeSteps) });
      loads.push({ ms, rssAfter, rssAdded: rssAfter - rssBefore });
    }
    const steps = await measureDecode(subjects, plan.decodeSteps, section.name);
    for (const s of subjects) s.cache.truncate(PROMPT_ROWS);
    const latency = await measureLatency(subjects, LATENCY_ROWS, plan.latencyRepeats, section.name);
    return {
      ...section,
      parameters: parameterCount(subjects[0]!.model.config),
      decode: { promptRows: PROMPT_ROWS, warmupSteps: DECODE_WARMUP_STEPS, steps: plan.decodeSteps, stepsPerTurn: DECODE_TURN_STEPS },
      latency: { pastRows: PROMPT_ROWS, warmupRounds: LATENCY_WARMUP_ROUNDS, repeats: plan.latencyRepeats },
      settleMs: SETTLE_MS,
      precisions: precisionResults(contenders, loads, steps, latency),
      peakRssBytes: maxRssBytes(),
      load: endPhase(),
    };
  } finally {
    for (const s of subjects) await s.model.release();
  }
}

async function benchRandomShape(plan: Plan): Promise<SpeedSection> {
  const config = parseLlamaConfig(plan.shape.config, `${plan.shape.name} config`);
  const contenders = RANDOM_PRECISIONS.map((precision): Contender => {
    const { description, quantize } = variant(precision);
    return { precision, description, load: () => loadRandomModel(config, `${plan.shape.name} ${precision}`, plan.threads, quantize) };
  });
  return benchSpeed({ name: plan.shape.name, weights: 'random weights (seed 0)', config: plan.shape.config }, contenders, plan);
}

// ---------------------------------------------------------------------------------------------
// models/ppd-base: its GGUF exports, speed and held-out perplexity.

/** Where each variant of the trained model is loaded from. */
function variantPath(v: Variant, ggufFiles: Map<string, string>): string {
  return v.gguf ? ggufFiles.get(v.gguf)! : DEFAULT_MODEL;
}

async function loadVariant(v: Variant, ggufFiles: Map<string, string>, threads: number) {
  return loadModel(variantPath(v, ggufFiles), { threads, cacheDir: false, quantize: v.quantize, matmul: v.matmul, needsTokenizer: true });
}

/** Writes models/ppd-base as every GGUF_TYPES file into `dir`, as `ppd convert --to gguf` would. */
function exportGguf(dir: string): { files: Map<string, string>; exports: AccuracySection['ggufExports'] } {
  const files = new Map<string, string>();
  const exports: AccuracySection['ggufExports'] = [];
  const model = openModelDir(DEFAULT_MODEL);
  try {
    for (const type of GGUF_TYPES) {
      const path = join(dir, `ppd-base-${type.toLowerCase()}.gguf`);
      const summary = writeLlamaGguf(model, path, type);
      files.set(type, path);
      exports.push({ type, bytes: summary.bytes, tensorTypes: summary.types, f16Fallbacks: summary.fallbacks });
    }
  } finally {
    model.tensors.close();
  }
  process.stderr.write(`models/ppd-base exported as GGUF ${exports.map((e) => `${e.type} (${bytes(e.bytes)})`).join(', ')}\n`);
  return { files, exports };
}

async function benchBaseSpeed(plan: Plan, ggufFiles: Map<string, string>): Promise<SpeedSection> {
  const contenders = BASE_PRECISIONS.map((precision): Contender => {
    const v = variant(precision);
    return { precision, description: v.description, load: () => timedLoad(async () => (await loadVariant(v, ggufFiles, plan.threads)).model) };
  });
  return benchSpeed({ name: 'ppd-base', weights: repoPath(DEFAULT_MODEL) }, contenders, plan);
}

/** The first `tokens + 1` tokens of the test split, documents as training saw them (BOS + text + EOS). */
function heldOutIds(loaded: LoadedModel, file: string, tokens: number): number[] {
  const all = tokenizeDocuments(requireTokenizer(loaded), documentsOf(readFileSync(file, 'utf8')));
  return Array.from(all.subarray(0, tokens + 1));
}

async function benchAccuracy(plan: Plan, gguf: ReturnType<typeof exportGguf>): Promise<AccuracySection> {
  const endPhase = watchLoad();
  let ids: number[] | undefined;
  let file: string | undefined;
  const measured: Omit<AccuracyResult, 'nllOverF32' | 'perplexityOverF32'>[] = [];
  for (const v of VARIANTS) {
    const loaded = await loadVariant(v, gguf.files, plan.threads);
    try {
      file ??= heldOutTextFor(loaded);
      ids ??= heldOutIds(loaded, file, plan.tokens);
      const progress = new Progress(`perplexity ${v.id}`, ids.length - 1, 'tok');
      const start = performance.now();
      const result = await perplexity(loaded.model, ids, { window: PERPLEXITY_WINDOW, stride: PERPLEXITY_STRIDE, onProgress: (done) => progress.update(done) });
      const scoringMs = performance.now() - start;
      progress.stop(`${fmt(result.perplexity, 3)} (${fmt(result.nll, 4)} nats/token)`);
      measured.push({ variant: v.id, description: v.description, weights: v.weights, products: v.products, nll: result.nll, perplexity: result.perplexity, scoringMs });
    } finally {
      await loaded.model.release();
    }
  }
  const f32 = measured[0]!;
  return {
    model: repoPath(DEFAULT_MODEL),
    file: repoPath(file!),
    window: PERPLEXITY_WINDOW,
    stride: PERPLEXITY_STRIDE,
    tokens: ids!.length - 1,
    ggufExports: gguf.exports,
    variants: measured.map((m) => ({ ...m, nllOverF32: m.nll - f32.nll, perplexityOverF32: m.perplexity / f32.perplexity })),
    load: endPhase(),
  };
}

// ---------------------------------------------------------------------------------------------
// Report: Markdown, SVG, JSON.

const times = (x: number) => `${fmt(x, 2)}×`;
/** Sizes from a few MiB (ppd-base) to several GiB (TinyLlama f32) in one column. */
const size = (n: number) => (Math.abs(n) >= 2 ** 30 ? gib(n) : bytes(n));
const signedSize = (n: number) => `${n >= 0 ? '+' : '−'}${size(Math.abs(n))}`;
/** Two decimals for the few-millisecond forwards of ppd-base, one for the rest. */
const ms = (s: Spread) => msSpread(s, s.medianMs < 10 ? 2 : 1);
const signedPct = (ratio: number) => `${ratio >= 1 ? '+' : '−'}${fmt(Math.abs(ratio - 1) * 100, 2)} %`;

function speedTables(s: SpeedSection): string[] {
  const ps = s.precisions;
  const row = (p: PrecisionSpeed, T: number) => p.latency.rows.find((r) => r.T === T)!;
  return [
    `${fmt(s.parameters / 1e6)}M parameters, ${s.weights}. ${ps.length} models loaded at once (in this order), taking turns.`,
    '',
    '| precision | load | RSS after load (added) | decode tok/s | step ms median [min–max] | decode × f32 | L(1) ms | L(16) ms | L(16)/L(1) | L(1) × f32 | L(16) × f32 |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...ps.map(
      (p) =>
        `| ${p.precision} | ${fmt(p.loadMs / 1000)} s | ${size(p.rssAfterLoadBytes)} (${signedSize(p.rssAddedBytes)}) | ${fmt(p.decode.tokensPerSecond, 2)} | ${ms(p.decode.step)} | ` +
        `${times(p.decode.speedOverF32)} | ${ms(row(p, 1).latency)} | ${ms(row(p, 16).latency)} | **${fmt(p.latency.l16OverL1, 2)}** | ` +
        `${times(row(p, 1).speedOverF32)} | ${times(row(p, 16).speedOverF32)} |`,
    ),
    '',
    ...ps.map((p) => `- ${p.precision}: ${p.description}`),
    '',
    `L(T) in ms, median [min–max] of ${s.latency.repeats} rounds; L(T)/L(1) of medians (of minimums in brackets); × f32 = f32's median L(T) / this one's.`,
    '',
    `| T | ${ps.map((p) => `${p.precision} L(T) | ${p.precision} L(T)/L(1)${p.precision === 'f32' ? '' : ` | ${p.precision} × f32`}`).join(' | ')} |`,
    `| --- | ${ps.map((p) => (p.precision === 'f32' ? '--- | ---' : '--- | --- | ---')).join(' | ')} |`,
    ...s.precisions[0]!.latency.rows.map(
      (r, j) =>
        `| ${r.T} | ${ps
          .map((p) => {
            const x = p.latency.rows[j]!;
            const cells = [ms(x.latency), `${fmt(x.ratioToT1, 2)} (${fmt(x.ratioOfMinimums, 2)})`];
            if (p.precision !== 'f32') cells.push(times(x.speedOverF32));
            return cells.join(' | ');
          })
          .join(' | ')} |`,
    ),
    '',
    `Other processes used ${otherCpu(s.load)} during this section; peak RSS ${gib(s.peakRssBytes)}.`,
    '',
  ];
}

function referenceSection(r: QuantReport): string[] {
  const ref = r.reference;
  const random = r.speed[0]!;
  const lines = [
    '## llama.cpp, quoted from issue #8 (not measured by this script)',
    '',
    `> ${ref.quote}`,
    '',
    '| llama.cpp type | decode tok/s (quoted) | L(16)/L(1) (quoted) |',
    '| --- | --- | --- |',
    ...ref.rows.map((x) => `| ${x.type} | ~${x.decodeTokensPerSecond} | ${fmt(x.l16OverL1, 1)} |`),
    '',
  ];
  if (random.name !== TINYLLAMA.name) {
    lines.push(`This run timed the ${random.name} shape, not TinyLlama's: the quoted figures are not comparable with it.`, '');
    return lines;
  }
  lines.push(
    `Beside ppd's figures from this run (same shape, random weights; ${r.machine.threadsUsed} threads here, 2 there; another run on another day, so compare ratios, not absolutes):`,
    '',
    '| ppd precision | llama.cpp type | ppd decode tok/s | llama.cpp decode tok/s (quoted) | ppd L(16)/L(1) | llama.cpp L(16)/L(1) (quoted) |',
    '| --- | --- | --- | --- | --- | --- |',
    ...random.precisions.map((p) => {
      const type = LLAMACPP_TYPE[p.precision];
      const quoted = ref.rows.find((x) => x.type === type);
      return `| ${p.precision} | ${type ?? '—'} | ${fmt(p.decode.tokensPerSecond, 2)} | ${quoted ? `~${quoted.decodeTokensPerSecond}` : '—'} | ${fmt(p.latency.l16OverL1, 2)} | ${quoted ? fmt(quoted.l16OverL1, 1) : '—'} |`;
    }),
    '',
  );
  return lines;
}

/** The accuracy section: perplexity per variant and the GGUF exports. */
function accuracyLines(a: AccuracySection): string[] {
  return [
    `## Accuracy: held-out perplexity of ${a.model}`,
    '',
    `The first ${a.tokens} tokens of \`${a.file}\` (held out from training; documents as BOS + text + EOS), window ${a.window}, stride ${a.stride}.`,
    '',
    '| variant | weights | products | perplexity | nats/token | Δ nats/token vs f32 | perplexity vs f32 | scoring s |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...a.variants.map(
      (v) =>
        `| ${v.variant} | ${v.weights} | ${v.products} | ${fmt(v.perplexity, 3)} | ${fmt(v.nll, 4)} | ${v.variant === 'f32' ? '—' : `${v.nllOverF32 >= 0 ? '+' : '−'}${fmt(Math.abs(v.nllOverF32), 4)}`} | ` +
        `${v.variant === 'f32' ? '—' : signedPct(v.perplexityOverF32)} | ${fmt(v.scoringMs / 1000)} |`,
    ),
    '',
    ...a.variants.map((v) => `- ${v.variant}: ${v.description}`),
    '',
    'GGUF exports (written for this run, removed after): ' +
      a.ggufExports
        .map((e) => `${e.type} ${bytes(e.bytes)} (${Object.entries(e.tensorTypes).map(([t, n]) => `${n} ${t}`).join(', ')}${e.f16Fallbacks.length > 0 ? `; ${e.f16Fallbacks.length} matrices fell back to another type because their rows are not whole blocks of theirs, e.g. \`${e.f16Fallbacks[0]}\`` : ''})`)
        .join('; ') +
      '.',
    '',
  ];
}

function markdown(r: QuantReport): string {
  const a = r.accuracy;
  const [random, base] = r.speed as [SpeedSection, SpeedSection];
  const lines: string[] = [
    '# Quantized compute benchmark',
    '',
    `Command: \`${r.command}\` (${r.mode} run, ${r.date}, ${fmt(r.durationSeconds, 0)} s). Data: \`quant.json\` (schema \`${r.schema}\`, see \`bench/quant.ts\`).`,
    '',
    `## Speed: ${random.name} shape, random weights`,
    '',
    ...speedTables(random),
    `![L(T)/L(1) against T per precision](${SVG_NAME})`,
    '',
    ...accuracyLines(a),
    `## Speed: ${base.name} (trained), with its GGUF exports`,
    '',
    "A model this small runs a forward in a few milliseconds, which overheads (dispatching the graph's nodes, attention, the TypeScript around each call) " +
      "dominate rather than reading weights: this section checks that the GGUF files' stored blocks run like ppd's own q8/q4, not what quantization gains at scale.",
    '',
    ...speedTables(base),
    ...referenceSection(r),
    '## What is and is not measured',
    '',
    '- Measured: every speed figure above, in one process, the precisions of one model loaded at once and timed in turns ' +
      `(each round every model in turn: a ${fmt(SETTLE_MS, 0)} ms pause for the other sessions' ORT threads to stop spinning, one untimed forward, then its share of the forwards; ` +
      `decode: ${DECODE_WARMUP_STEPS} untimed steps, then turns of ${DECODE_TURN_STEPS} steps; latency: ${LATENCY_WARMUP_ROUNDS} untimed round, then the sweep over T each turn). ` +
      'So the ratios (L(16)/L(1), × f32) are measured under the same noise; the absolute figures drop with any other load on the machine.',
    `- Decode: a ${PROMPT_ROWS}-row prompt, then greedy T = 1 forwards appended to the KV cache (step = embed + forward + append + argmax). ` +
      `L(T): one forward of T rows over a fixed past of ${PROMPT_ROWS} rows, nothing appended.`,
    '- Load: for the random shape, generating the weights in TypeScript (and quantizing them, for q8/q4), writing the ONNX graph to a temporary folder and creating the ORT session; ' +
      'for ppd-base, reading the checkpoint or GGUF file instead of generating. RSS is the whole process after each load, the earlier models still loaded; ' +
      '"added" is the growth during that load, both read after a full garbage collection (every model also keeps its f32 embedding table in TypeScript for lookups, 250 MiB for the TinyLlama shape).',
    "- Quantized: only the linear weights (attention and MLP projections, LM head). Norms, rotary, attention scores and softmax stay f32; q4 keeps the LM head at 8 bits (as llama.cpp keeps it above 4 bits). " +
      "ppd's own q8/q4 store f32 block scales, GGUF stores f16 ones; a GGUF file stores the tied embedding table quantized, so its lookups are dequantized too, where ppd's --quantize looks up f32 rows.",
    '- Accuracy: perplexity is deterministic (no noise), on the trained model only: random weights have no accuracy to lose. The scoring times are sequential, one model at a time, and indicative only.',
    '- Not measured: llama.cpp. Its figures above are quoted from issue #8 (its own benchmark, on the machine the issue was written on) and were not rerun by this script; `npm run bench:llamacpp` compares the two engines end to end.',
    '',
    ...machineSection(r.machine, r.load),
  ];
  const busy = [...r.speed.map((s) => [s.name, s.load] as const)].filter(([, load]) => load.otherCores !== null && load.otherCores > BUSY_MACHINE_CORES);
  if (busy.length > 0) {
    lines.push(
      `**Warning:** other processes used more than ${BUSY_MACHINE_CORES} cores during ${busy.map(([name, load]) => `${name} (${otherCpu(load)})`).join(', ')}; those speed figures understate ppd (the ratios less so). Rerun on an idle machine.`,
      '',
    );
  }
  return lines.join('\n');
}

function writeReport(report: QuantReport, outDir: string): Promise<string[]> {
  const random = report.speed[0]!;
  const quoted = random.name === TINYLLAMA.name ? report.reference.rows.filter((x) => x.type !== 'F16') : [];
  return writeReportFiles(outDir, 'quant', report, markdown(report), SVG_NAME, {
    title: `L(T)/L(1) per precision, ${random.name} (past ${PROMPT_ROWS} rows, ${report.machine.threadsUsed} threads)`,
    x: { title: 'T (rows in one forward)', logBase: 2 },
    y: { title: 'L(T) / L(1)' },
    series: random.precisions.map((p) => ({ name: p.precision, points: p.latency.rows.map((r) => ({ x: r.T, y: r.ratioToT1 })) })),
    yRules: quoted.map((x) => ({ y: x.l16OverL1, label: `llama.cpp ${x.type} at T = 16 (quoted, issue #8)` })),
  });
}

// ---------------------------------------------------------------------------------------------
// Main.

/** --accuracy: the bundled model's perplexity per variant and GGUF type, written as quant-accuracy.*. */
async function accuracyOnly(plan: Plan, command: string, date: string): Promise<void> {
  const ggufDir = mkdtempSync(join(tmpdir(), 'ppd-bench-quant-'));
  let accuracy: AccuracySection;
  try {
    accuracy = await benchAccuracy(plan, exportGguf(ggufDir));
  } finally {
    rmSync(ggufDir, { recursive: true, force: true });
  }
  const report = { schema: 'ppd.bench.quant-accuracy/1', mode: plan.mode, command, date, machine: describeMachine(plan.threads), accuracy };
  const markdown = [
    '# Quantized weights: held-out perplexity per type',
    '',
    `Command: \`${command}\` (${plan.mode} run, ${date}). Data: \`quant-accuracy.json\` (the accuracy section of \`bench/quant.ts\`'s report). Perplexity is deterministic; nothing here is timed but the indicative scoring seconds.`,
    '',
    ...accuracyLines(accuracy),
    ...machineSection(report.machine, accuracy.load),
  ].join('\n');
  mkdirSync(plan.outDir, { recursive: true });
  writeJsonAtomic(join(plan.outDir, 'quant-accuracy.json'), report);
  writeFileAtomic(join(plan.outDir, 'quant-accuracy.md'), markdown);
  console.log(`wrote ${shownPath(join(plan.outDir, 'quant-accuracy.json'))} and quant-accuracy.md`);
}

async function main(argv: string[]): Promise<void> {
  const plan = planFromArgs(argv);
  if (plan.accuracyOnly) return accuracyOnly(plan, `npm run bench:quant${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`, new Date().toISOString());
  const date = new Date().toISOString();
  const endRun = watchLoad();
  const machine = describeMachine(plan.threads);
  process.stderr.write(
    `quant benchmark (${plan.mode}): ${plan.shape.name} and ppd-base, f32/q8/q4, ${plan.tokens} perplexity tokens; ` +
      `${machine.cpuModel}, ${machine.cores} cores, ${plan.threads} threads, ORT ${machine.onnxruntime}\n`,
  );
  await warnIfBusy();

  const random = await benchRandomShape(plan);
  const ggufDir = mkdtempSync(join(tmpdir(), 'ppd-bench-quant-'));
  let base: SpeedSection;
  let accuracy: AccuracySection;
  try {
    const gguf = exportGguf(ggufDir);
    base = await benchBaseSpeed(plan, gguf.files);
    accuracy = await benchAccuracy(plan, gguf);
  } finally {
    rmSync(ggufDir, { recursive: true, force: true });
  }

  const load = endRun();
  const report: QuantReport = {
    schema: 'ppd.bench.quant/1',
    mode: plan.mode,
    command: `npm run bench:quant${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`,
    date,
    durationSeconds: load.wallSeconds,
    machine,
    speed: [random, base],
    accuracy,
    reference: LLAMACPP_REFERENCE,
    load,
  };
  const paths = await writeReport(report, plan.outDir);

  for (const s of report.speed) {
    for (const p of s.precisions) {
      const l = (T: number) => p.latency.rows.find((r) => r.T === T)!;
      console.log(
        `${s.name} ${p.precision}: load ${fmt(p.loadMs / 1000)} s, RSS ${size(p.rssAfterLoadBytes)} (${signedSize(p.rssAddedBytes)}), ` +
          `${fmt(p.decode.tokensPerSecond, 2)} tok/s (${times(p.decode.speedOverF32)} f32), L(16)/L(1) = ${fmt(p.latency.l16OverL1, 2)}, ` +
          `L(1) ${times(l(1).speedOverF32)} f32, L(16) ${times(l(16).speedOverF32)} f32`,
      );
    }
  }
  for (const v of accuracy.variants) {
    console.log(`ppd-base ${v.variant}: perplexity ${fmt(v.perplexity, 3)} over ${accuracy.tokens} tokens${v.variant === 'f32' ? '' : ` (${signedPct(v.perplexityOverF32)} vs f32)`}`);
  }
  console.log(`llama.cpp, quoted from issue #8 (not measured here): ${LLAMACPP_REFERENCE.rows.map((x) => `${x.type} ~${x.decodeTokensPerSecond} tok/s, L(16)/L(1) ${fmt(x.l16OverL1, 1)}`).join('; ')}`);
  for (const path of paths) console.log(`wrote ${shownPath(path)}`);
}

await runBenchmark(main);
