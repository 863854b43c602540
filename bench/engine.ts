/**
 * Engine benchmark: how fast ppd's ONNX forward runs on this machine, and how close decode comes
 * to the memory-bandwidth bound. One run measures everything and writes docs/bench/engine.json
 * (the data; schema: `EngineReport` below), docs/bench/engine.md (the same for people) and
 * docs/bench/engine-latency.svg (L(T)/L(1) against T).
 *
 *   npm run bench:engine                   full run, both shapes (about 3 minutes on 2 cores)
 *   npm run bench:engine -- --quick        smoke check: small shape only, few repeats; written
 *                                          to a temporary folder so the published report stays
 *   npm run bench:engine -- --threads 1    ONNX Runtime intra-op threads (default: all cores)
 *
 * What it measures, per model shape (random weights generated on read, so nothing big is on
 * disk): load time; greedy decode (T = 1 forwards appended to the cache after a 64-row prompt);
 * forward latency L(T) for T rows over a fixed 64-row past, which is what a tree or a batch of
 * guesses costs against one token. After each shape, the memory bandwidth ONNX Runtime reaches
 * on a 1 GiB tensor (after, so that the peak RSS figures are the models' own).
 *
 * The shapes, their loading and the decode and latency loops are model-timing.ts's (shared with
 * bench:quant); the bandwidth measurement, the figures derived from it and the report are here.
 *
 * What it is not: a test. Targets are reported as pass/fail, never asserted; a busy machine
 * makes every figure worse, so each phase also records how much CPU other processes took.
 *
 * Shape legend: T = rows in one forward, P = rows in the KV cache, C = hidden size,
 * V = vocabulary, K = key/value heads, D = head dim.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder } from '../src/graph/builder.ts';
import { parameterCount, parseLlamaConfig } from '../src/model/config.ts';
import { Progress } from '../src/report/progress.ts';
import { createSession, OrtTensor } from '../src/runtime/ort.ts';
import {
  BUSY_MACHINE_CORES,
  describeMachine,
  fmt,
  GB,
  gib,
  machineSection,
  MiB,
  msSpread,
  otherCpu,
  parseBenchArgs,
  pct,
  REPO_ROOT,
  runBenchmark,
  writeReportFiles,
  shownPath,
  timed,
  warnIfBusy,
  watchLoad,
  type Machine,
  type PhaseLoad,
} from './harness.ts';
import { spread, type Spread } from '../src/report/timing.ts';
import {
  decodeCache,
  DECODE_WARMUP_STEPS,
  LATENCY_WARMUP_ROUNDS,
  latencyRows,
  loadRandomModel,
  maxRssBytes,
  measureDecode,
  measureLatency,
  PROMPT_ROWS,
  SMALL,
  TINYLLAMA,
  type LatencyRow,
  type RandomShape,
} from './model-timing.ts';

// ---------------------------------------------------------------------------------------------
// Report schema (docs/bench/engine.json). Times in milliseconds, sizes in bytes, rates per second.

export interface EngineReport {
  schema: 'ppd.bench.engine/1';
  mode: 'full' | 'quick';
  command: string;
  /** ISO 8601, when the run started. */
  date: string;
  durationSeconds: number;
  machine: Machine;
  shapes: ShapeResult[];
  bandwidth: BandwidthResult;
  targets: TargetResult[];
  /** CPU that other processes used during the whole run; see PhaseLoad. */
  load: PhaseLoad;
}

export interface ShapeResult {
  name: string;
  /** The Hugging Face config.json the model was built from. */
  config: Record<string, unknown>;
  parameters: number;
  /** parameters * 4: the brief's weight bytes (f32). */
  weightBytes: number;
  /** Bytes of weights the graph reads per forward: all but the embedding table, which is looked
   *  up in TypeScript (one row per token), unless it is tied to the LM head. */
  graphWeightBytes: number;
  /** Generate random weights, build and write the ONNX graph, create the ORT session. */
  loadMs: number;
  rssAfterLoadBytes: number;
  /** process.resourceUsage().maxRSS after this shape's runs (a process-wide high-water mark). */
  peakRssBytes: number;
  decode: {
    promptRows: number;
    warmupSteps: number;
    step: Spread;
    tokensPerSecond: number;
    /** weightBytes / median step time. */
    weightBandwidthGBs: number;
    /** weightBandwidthGBs / the measured bandwidth. */
    bandwidthShare: number;
    /** The same two with graphWeightBytes. */
    graphWeightBandwidthGBs: number;
    graphBandwidthShare: number;
  };
  latency: {
    pastRows: number;
    warmupRounds: number;
    rows: LatencyRow[];
  };
  load: PhaseLoad;
}

export interface BandwidthMethod {
  name: string;
  description: string;
  run: Spread;
  /** Bytes read / median run time. */
  gbPerSecond: number;
}

/** One bandwidth phase; there is one after each shape. */
export interface BandwidthPhase {
  /** The shape measured just before. */
  after: string;
  methods: BandwidthMethod[];
  load: PhaseLoad;
}

export interface BandwidthResult {
  tensorBytes: number;
  warmupRuns: number;
  phases: BandwidthPhase[];
  /** The machine's bandwidth: the highest median of any method in any phase (other processes
   *  can only lower a reading, and a slower method is limited by its own kernel). */
  gbPerSecond: number;
  chosen: { after: string; method: string };
  why: string;
}

export interface TargetResult {
  name: string;
  shape: string;
  value: number | null;
  comparison: '>=' | '<=';
  threshold: number;
  /** null when the shape was not measured in this run (--quick). */
  pass: boolean | null;
}

// ---------------------------------------------------------------------------------------------
// What is measured, and how often.

interface ShapeSpec extends RandomShape {
  decodeSteps: number;
  latencyRepeats: number;
}

const LATENCY_ROWS = [1, 2, 4, 8, 16, 32, 64];

const BANDWIDTH_FLOATS = 2 ** 28; // 1 GiB of f32
const BANDWIDTH_WARMUP = 2;

const TARGET_DECODE_SHARE = 0.6;
const TARGET_L16_RATIO = 1.5;
const TARGET_L16_SHAPE = TINYLLAMA.name;

interface Plan {
  mode: 'full' | 'quick';
  threads: number;
  shapes: ShapeSpec[];
  bandwidthRepeats: number;
  outDir: string;
}

function planFromArgs(argv: string[]): Plan {
  const { quick, threads } = parseBenchArgs(argv);
  if (quick) {
    return {
      mode: 'quick',
      threads,
      shapes: [{ ...SMALL, decodeSteps: 16, latencyRepeats: 3 }],
      bandwidthRepeats: 3,
      outDir: join(tmpdir(), 'ppd-bench-engine-quick'),
    };
  }
  return {
    mode: 'full',
    threads,
    shapes: [
      { ...SMALL, decodeSteps: 32, latencyRepeats: 15 },
      { ...TINYLLAMA, decodeSteps: 16, latencyRepeats: 9 },
    ],
    bandwidthRepeats: 9,
    outDir: join(REPO_ROOT, 'docs', 'bench'),
  };
}

// ---------------------------------------------------------------------------------------------
// Model shapes: load, decode, latency sweep.

/** Everything about one shape except the bandwidth share, which needs the bandwidth. */
type ShapeMeasurement = Omit<ShapeResult, 'decode'> & { decode: Omit<ShapeResult['decode'], 'weightBandwidthGBs' | 'bandwidthShare' | 'graphWeightBandwidthGBs' | 'graphBandwidthShare'> };

async function benchShape(spec: ShapeSpec, threads: number): Promise<ShapeMeasurement> {
  const config = parseLlamaConfig(spec.config, `${spec.name} config`);
  const endPhase = watchLoad();
  const parameters = parameterCount(config);
  const { model, ms: loadMs } = await loadRandomModel(config, spec.name, threads);
  const rssAfterLoadBytes = process.memoryUsage().rss;
  try {
    const subject = { name: spec.name, model, cache: decodeCache(config, spec.decodeSteps) };
    const [stepMs] = await measureDecode([subject], spec.decodeSteps, spec.name);
    subject.cache.truncate(PROMPT_ROWS);
    const [latency] = await measureLatency([subject], LATENCY_ROWS, spec.latencyRepeats, spec.name);
    const step = spread(stepMs!);
    return {
      name: spec.name,
      config: spec.config,
      parameters,
      weightBytes: parameters * 4,
      graphWeightBytes: (parameters - (config.tieWordEmbeddings ? 0 : config.vocabSize * config.hiddenSize)) * 4,
      loadMs,
      rssAfterLoadBytes,
      peakRssBytes: maxRssBytes(),
      decode: { promptRows: PROMPT_ROWS, warmupSteps: DECODE_WARMUP_STEPS, step, tokensPerSecond: 1000 / step.medianMs },
      latency: {
        pastRows: PROMPT_ROWS,
        warmupRounds: LATENCY_WARMUP_ROUNDS,
        rows: latencyRows(latency!),
      },
      load: endPhase(),
    };
  } finally {
    await model.release();
  }
}

// ---------------------------------------------------------------------------------------------
// Memory bandwidth as ONNX Runtime sees it.

interface BandwidthGraph {
  name: string;
  description: string;
  build(g: GraphBuilder): void;
  feeds(data: Float32Array): Record<string, OrtTensor>;
}

/**
 * Both read one 1 GiB f32 tensor fed as an input: ORT reads the caller's buffer in place (no
 * copy, no 1 GiB external-data file to write, no prepacking), and nothing can be constant-folded.
 */
function bandwidthGraphs(): BandwidthGraph[] {
  const N = BANDWIDTH_FLOATS;
  const rows = 4096; // ReduceSum over axis 1 of [rows, N/rows] is parallel over rows
  const K = 32768; // [1, K] x [K, N/K]: how decode reads a weight matrix
  return [
    {
      name: 'ReduceSum',
      description: `ReduceSum over axis 1 of x [${rows}, ${N / rows}]`,
      build: (g) => {
        const x = g.input('x', 'float32', [rows, N / rows]);
        g.output(g.op('ReduceSum', [x, g.ints([1])], { keepdims: 0 }), 'y', 'float32', [rows]);
      },
      feeds: (data) => ({ x: new OrtTensor('float32', data, [rows, N / rows]) }),
    },
    {
      name: 'MatMul [1,K]x[K,M]',
      description: `MatMul of v [1, ${K}] with W [${K}, ${N / K}] (a matrix-vector product, as in decode)`,
      build: (g) => {
        const v = g.input('v', 'float32', [1, K]);
        const w = g.input('w', 'float32', [K, N / K]);
        g.output(g.op('MatMul', [v, w]), 'y', 'float32', [1, N / K]);
      },
      feeds: (data) => ({
        v: new OrtTensor('float32', new Float32Array(K).fill(0.5), [1, K]),
        w: new OrtTensor('float32', data, [K, N / K]),
      }),
    },
  ];
}

/** Best of each method over the phases: which reads memory fastest, and by how much. */
function whyChosen(phases: BandwidthPhase[], chosen: string): string {
  const best = (name: string) => Math.max(...phases.map((p) => p.methods.find((m) => m.name === name)!.gbPerSecond));
  const others = phases[0]!.methods.filter((m) => m.name !== chosen).map((m) => `${m.name} at most ${fmt(best(m.name))} GB/s`);
  return (
    `${chosen} read the same bytes fastest (${others.join(', ')}). Both read one tensor with the same threads, ` +
    'so a slower one is limited by its own kernel (arithmetic or how it splits the work), not by memory. ' +
    `The highest of the ${phases.length} phase${phases.length > 1 ? 's' : ''} is used: other processes can only lower a reading.`
  );
}

function summarizeBandwidth(phases: BandwidthPhase[]): BandwidthResult {
  let chosen = { after: phases[0]!.after, method: phases[0]!.methods[0]! };
  for (const phase of phases) {
    for (const method of phase.methods) if (method.gbPerSecond > chosen.method.gbPerSecond) chosen = { after: phase.after, method };
  }
  return {
    tensorBytes: BANDWIDTH_FLOATS * 4,
    warmupRuns: BANDWIDTH_WARMUP,
    phases,
    gbPerSecond: chosen.method.gbPerSecond,
    chosen: { after: chosen.after, method: chosen.method.name },
    why: whyChosen(phases, chosen.method.name),
  };
}

/** Opens `graph` in its own session, times it, and releases the session. */
async function timeBandwidthGraph(graph: BandwidthGraph, data: Float32Array, threads: number, repeats: number, dir: string, progress: Progress): Promise<BandwidthMethod> {
  const g = new GraphBuilder('bandwidth');
  graph.build(g);
  const path = join(dir, 'bandwidth.onnx');
  writeFileSync(path, g.finish());
  const session = await createSession(path, { threads });
  try {
    const feeds = graph.feeds(data);
    const samples: number[] = [];
    for (let run = 0; run < BANDWIDTH_WARMUP + repeats; run++) {
      const ms = await timed(() => session.run(feeds));
      if (run >= BANDWIDTH_WARMUP) samples.push(ms);
      progress.tick();
    }
    const timing = spread(samples);
    return { name: graph.name, description: graph.description, run: timing, gbPerSecond: (data.byteLength / GB) / (timing.medianMs / 1000) };
  } finally {
    await session.release();
  }
}

/**
 * One session at a time, never alternating: after a run, ORT's pool threads spin for a while
 * waiting for more work, and on a 2-core machine another session's spinning threads take a core
 * from the one being timed (alternating two sessions measured ~12 GB/s where one alone read ~21).
 */
async function measureBandwidth(threads: number, repeats: number, after: string): Promise<BandwidthPhase> {
  const endPhase = watchLoad();
  const dir = mkdtempSync(join(tmpdir(), 'ppd-bandwidth-'));
  const data = new Float32Array(BANDWIDTH_FLOATS).fill(0.5); // non-zero: every page really mapped
  const graphs = bandwidthGraphs();
  const progress = new Progress(`bandwidth after ${after}`, (BANDWIDTH_WARMUP + repeats) * graphs.length, 'GiB');
  try {
    const methods: BandwidthMethod[] = [];
    for (const graph of graphs) methods.push(await timeBandwidthGraph(graph, data, threads, repeats, dir, progress));
    progress.stop(methods.map((m) => `${m.name} ${fmt(m.gbPerSecond)} GB/s`).join(', '));
    return { after, methods, load: endPhase() };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Report: derived figures, targets, JSON, Markdown, SVG.

function withBandwidth(shape: ShapeMeasurement, gbPerSecond: number): ShapeResult {
  const stepSeconds = shape.decode.step.medianMs / 1000;
  const weightBandwidthGBs = shape.weightBytes / stepSeconds / GB;
  const graphWeightBandwidthGBs = shape.graphWeightBytes / stepSeconds / GB;
  return {
    ...shape,
    decode: {
      ...shape.decode,
      weightBandwidthGBs,
      bandwidthShare: weightBandwidthGBs / gbPerSecond,
      graphWeightBandwidthGBs,
      graphBandwidthShare: graphWeightBandwidthGBs / gbPerSecond,
    },
  };
}

function evaluateTargets(shapes: ShapeResult[]): TargetResult[] {
  const decodeTargets = [SMALL.name, TINYLLAMA.name].map((name): TargetResult => {
    const value = shapes.find((s) => s.name === name)?.decode.bandwidthShare ?? null;
    return { name: 'decode reads weights at a share of measured bandwidth', shape: name, value, comparison: '>=', threshold: TARGET_DECODE_SHARE, pass: value === null ? null : value >= TARGET_DECODE_SHARE };
  });
  const l16 = shapes.find((s) => s.name === TARGET_L16_SHAPE)?.latency.rows.find((r) => r.T === 16)?.ratioToT1 ?? null;
  return [
    ...decodeTargets,
    { name: 'L(16)/L(1)', shape: TARGET_L16_SHAPE, value: l16, comparison: '<=', threshold: TARGET_L16_RATIO, pass: l16 === null ? null : l16 <= TARGET_L16_RATIO },
  ];
}

/** Why a shape can read its weights faster than the measured bandwidth. */
function fasterThanMemory(shape: ShapeResult, machine: Machine): string {
  const llc = machine.lastLevelCacheBytes;
  if (llc !== null && shape.graphWeightBytes <= 2 * llc) {
    return (
      `decode reads weights faster than the measured bandwidth: its ${gib(shape.graphWeightBytes)} of graph weights are within twice the ` +
      `${fmt(llc / MiB, 0)} MiB last-level cache, so part of them come from cache, not memory; its share says little.`
    );
  }
  return `decode reads weights faster than the measured bandwidth, so the bandwidth reading is low: see the other-CPU column of the bandwidth phases.`;
}

function markdown(report: EngineReport, svgName: string): string {
  const m = report.machine;
  const bw = report.bandwidth;
  const lines: string[] = [
    '# Engine benchmark',
    '',
    `Command: \`${report.command}\` (${report.mode} run, ${report.date}, ${fmt(report.durationSeconds, 0)} s). Data: \`engine.json\` (schema \`${report.schema}\`, see \`bench/engine.ts\`).`,
    '',
    ...machineSection(m, report.load),
    '## Memory bandwidth (as ONNX Runtime reads it)',
    '',
    `A 1 GiB f32 tensor fed as an input (ORT reads the caller's buffer in place), read after each shape is released: ` +
      `${bw.warmupRuns} warm-up runs, then the median of ${bw.phases[0]!.methods[0]!.run.samples} runs, one method (one ORT session) at a time.`,
    '',
    ...bw.phases[0]!.methods.map((x) => `- ${x.name}: ${x.description}`),
    '',
    '| phase | method | GB/s (median) | run ms median [min–max] | other CPU |',
    '| --- | --- | --- | --- | --- |',
    ...bw.phases.flatMap((p) =>
      p.methods.map((x) => `| after ${p.after} | ${x.name} | ${fmt(x.gbPerSecond)} | ${msSpread(x.run)} | ${otherCpu(p.load)} |`),
    ),
    '',
    `**Measured bandwidth: ${fmt(bw.gbPerSecond)} GB/s** (${bw.chosen.method}, after ${bw.chosen.after}). ${bw.why}`,
    '',
    '## Model shapes (random weights, f32)',
    '',
    '| shape | parameters | weights | load | RSS after load | peak RSS | decode tok/s | step ms median [min–max] | weight read rate | share of bandwidth | other CPU |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...report.shapes.map((s) => {
      const d = s.decode;
      return (
        `| ${s.name} | ${fmt(s.parameters / 1e6)}M | ${gib(s.weightBytes)} | ${fmt(s.loadMs / 1000)} s | ${gib(s.rssAfterLoadBytes)} | ${gib(s.peakRssBytes)} | ` +
        `${fmt(d.tokensPerSecond, 2)} | ${msSpread(d.step)} | ${fmt(d.weightBandwidthGBs)} GB/s | ` +
        `${pct(d.bandwidthShare)} (${pct(d.graphBandwidthShare)} of graph weights) | ${otherCpu(s.load)} |`
      );
    }),
    '',
    `Decode: a ${PROMPT_ROWS}-row prompt, ${DECODE_WARMUP_STEPS} warm-up steps, then greedy T = 1 forwards appended to the KV cache (step = embed + forward + append + argmax). ` +
      'Weight read rate = parameters × 4 bytes / median step. "Graph weights" leave out the embedding table, which decode looks up one row at a time in TypeScript instead of reading it. ' +
      'Load = generating the random weights, writing the ONNX graph and creating the ORT session. Peak RSS is the process high-water mark (shapes run one after another, each released before the next).',
    '',
    ...report.shapes.filter((s) => s.decode.bandwidthShare > 1).map((s) => `${s.name}: ${fasterThanMemory(s, m)}\n`),
    '## Forward latency against rows',
    '',
    `L(T): one forward of T rows over a fixed past of ${PROMPT_ROWS} rows (nothing appended), ${LATENCY_WARMUP_ROUNDS} warm-up round, then rounds over all T; median [min–max].`,
    '',
    `![L(T)/L(1) against T](${svgName})`,
    '',
  ];
  for (const s of report.shapes) {
    lines.push(
      `### ${s.name} (${s.latency.rows[0]!.latency.samples} repeats)`,
      '',
      '| T | L(T) ms median [min–max] | L(T)/L(1) | same, of minimums |',
      '| --- | --- | --- | --- |',
      ...s.latency.rows.map(
        (r) => `| ${r.T} | ${msSpread(r.latency)} | ${fmt(r.ratioToT1, 2)} | ${fmt(r.ratioOfMinimums, 2)} |`,
      ),
      '',
    );
  }
  lines.push('## Targets', '', '| target | shape | value | threshold | result |', '| --- | --- | --- | --- | --- |');
  for (const t of report.targets) {
    const isShare = t.comparison === '>=';
    const value = t.value === null ? '—' : isShare ? pct(t.value) : fmt(t.value, 2);
    const threshold = isShare ? pct(t.threshold) : fmt(t.threshold, 2);
    const result = t.pass === null ? 'not measured' : t.pass ? 'pass' : '**fail**';
    lines.push(`| ${t.name} | ${t.shape} | ${value} | ${t.comparison} ${threshold} | ${result} |`);
  }
  const phases = [...report.shapes.map((s) => [s.name, s.load] as const), ...bw.phases.map((p) => [`bandwidth after ${p.after}`, p.load] as const)];
  const busy = phases.filter(
    ([, load]) => load.otherCores !== null && load.otherCores > BUSY_MACHINE_CORES,
  );
  if (busy.length > 0) {
    lines.push(
      '',
      `**Warning:** other processes used more than ${BUSY_MACHINE_CORES} cores during ${busy.map(([name, load]) => `${name} (${otherCpu(load)})`).join(', ')}; those figures understate the engine. Rerun on an idle machine.`,
    );
  }
  return lines.join('\n') + '\n';
}

function writeReport(report: EngineReport, outDir: string): Promise<string[]> {
  const svgName = 'engine-latency.svg';
  return writeReportFiles(outDir, 'engine', report, markdown(report, svgName), svgName, {
    title: `Forward latency against rows (past ${PROMPT_ROWS} rows, ${report.machine.threadsUsed} threads)`,
    x: { title: 'T (rows in one forward)', logBase: 2 },
    y: { title: 'L(T) / L(1)' },
    series: report.shapes.map((s) => ({ name: s.name, points: s.latency.rows.map((r) => ({ x: r.T, y: r.ratioToT1 })) })),
    yRules: [{ y: TARGET_L16_RATIO, label: `target for ${TARGET_L16_SHAPE} at T = 16` }],
  });
}

// ---------------------------------------------------------------------------------------------
// Main.

async function main(argv: string[]): Promise<void> {
  const plan = planFromArgs(argv);
  const date = new Date().toISOString();
  const endRun = watchLoad();
  const machine = describeMachine(plan.threads);
  process.stderr.write(`engine benchmark (${plan.mode}): ${machine.cpuModel}, ${machine.cores} cores, ${plan.threads} threads, ORT ${machine.onnxruntime}\n`);
  await warnIfBusy();

  // Bandwidth after each shape, not before the first: its 1 GiB would set the peak RSS figures.
  const measured: ShapeMeasurement[] = [];
  const bandwidthPhases: BandwidthPhase[] = [];
  for (const spec of plan.shapes) {
    measured.push(await benchShape(spec, plan.threads));
    bandwidthPhases.push(await measureBandwidth(plan.threads, plan.bandwidthRepeats, spec.name));
  }
  const bandwidth = summarizeBandwidth(bandwidthPhases);

  const shapes = measured.map((s) => withBandwidth(s, bandwidth.gbPerSecond));
  const load = endRun();
  const report: EngineReport = {
    schema: 'ppd.bench.engine/1',
    mode: plan.mode,
    command: `npm run bench:engine${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`,
    date,
    durationSeconds: load.wallSeconds,
    machine,
    shapes,
    bandwidth,
    targets: evaluateTargets(shapes),
    load,
  };
  const paths = await writeReport(report, plan.outDir);

  for (const s of shapes) {
    const l16 = s.latency.rows.find((r) => r.T === 16)!.ratioToT1;
    console.log(`${s.name}: ${fmt(s.decode.tokensPerSecond, 2)} tok/s, ${pct(s.decode.bandwidthShare)} of ${fmt(bandwidth.gbPerSecond)} GB/s, L(16)/L(1) = ${fmt(l16, 2)}`);
  }
  for (const path of paths) console.log(`wrote ${shownPath(path)}`);
}

await runBenchmark(main);
