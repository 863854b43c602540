/**
 * PPD alone against model size (issue 18: where would PPD's speed target be reached?). PPD's
 * speedup is τ(n)·L(1)/L(n): τ(n) tokens per step from an adapter's accuracy table through the
 * tree builder (hardware independent), L(n) a forward's latency over n rows on this machine. The
 * bundled 7.85M model's forward is mostly per-kernel overhead at one row and its rows are not
 * free (L(4)/L(1) about 1.3 here), so its trees do not pay; a larger model's one-row forward is
 * bound by reading its weights, which extra rows share if the cores can do their arithmetic in
 * that time: whether they can on this machine is what decides. This benchmark measures L(n) for
 * random-weight models of growing size (the bundled shape, two wider ones, three real
 * checkpoints' shapes from bench/shapes) and prices one adapter's τ(n) on each: the speedup PPD
 * alone would reach on that model at the same guessing accuracy. Writes
 * docs/bench/ppd-size.{json,md,svg}.
 *
 *   npm run bench:ppd-size                  every shape, models/ppd-base/ppd's accuracy table
 *   npm run bench:ppd-size -- --quick       smoke check: the two smallest shapes, few sizes, temporary folder
 *   --ppd DIR                               another adapter folder (its accuracy.json and adapter_config.json)
 *   --shapes a,b,...                        shape names (configs/ppd-base.json is `ppd-base`; else bench/shapes/NAME.json)
 *   --max-n N --repeats N                   largest step (32) and timed rounds (the median counts; default 15
 *                                           for a shape whose one-row forward is under 20 ms, where the
 *                                           machine's noise weighs most, else 7)
 *   --threads N                             ONNX Runtime intra-op threads (default: all cores)
 *
 * What it does not measure: how well a larger model's own prompt tokens would guess (that needs
 * the model trained; docs/bench/training-curve.md has accuracy against training length), and a
 * step's work outside the forward (tree building, verification, cache compaction), which the
 * bundled model's end-to-end figure (docs/bench/ppd.json, shown beside) includes.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_ADAPTER } from '../src/cli/demo.ts';
import { InputError } from '../src/errors.ts';
import { readJsonObject } from '../src/format/text-file.ts';
import { loadLlamaModel } from '../src/checkpoint/load.ts';
import { randomTensorSource } from '../src/checkpoint/random-init.ts';
import { measureLatency, type LatencyRow } from '../src/decode/latency.ts';
import { parameterCount, parseLlamaConfig, type LlamaConfig } from '../src/model/config.ts';
import type { LlamaModel } from '../src/model/llama-model.ts';
import { readAccuracyTable } from '../src/ppd/accuracy-files.ts';
import { loadAdapterShape } from '../src/ppd/adapter-files.ts';
import { ACCURACY_FILE } from '../src/ppd/adapter-folder.ts';
import { chooseTreeSize, predict, type Prediction } from '../src/ppd/tree-size-choice.ts';
import { sizeGrid } from '../src/ppd/tree-size-grid.ts';
import { tauCurve, type AdapterShape, type TauPoint } from '../src/ppd/tree-size-tau.ts';
import { Progress } from '../src/report/progress.ts';
import {
  describeMachine,
  fmt,
  machineSection,
  parseBenchArgs,
  positiveInt,
  REPO_ROOT,
  repoPath,
  runBenchmark,
  shapeConfigFile,
  shownPath,
  warnIfBusy,
  watchLoad,
  writeReportFiles,
  type Machine,
  type PhaseLoad,
} from './harness.ts';
import { MODEL_TARGETS, TARGET_NAMES } from './ppd-targets.ts';

const SHAPES = ['ppd-base', 'ppd-base-39m', 'ppd-base-185m', 'qwen2.5-0.5b', 'tinyllama-1.1b', 'llama-3.2-1b'];
const QUICK_SHAPES = ['ppd-base', 'ppd-base-39m'];
/**
 * The cache length each step size is timed after: one, between `ppd calibrate`'s 64 and 256, so
 * that the rounds go to repeats (on this noisy machine three rounds of the 1B shapes moved their
 * L(n)/L(1) by up to 0.3 between runs).
 */
const CONTEXTS = [128];
const SEED = 1;
const TARGET_SPEEDUP = MODEL_TARGETS.speedupAlone;
/** bench:ppd's report, for the bundled model's end-to-end figure. */
const PPD_REPORT = join(REPO_ROOT, 'docs', 'bench', 'ppd.json');

export interface ShapeResult {
  shape: string;
  /** Where its config.json came from. */
  configFile: string;
  parameters: number;
  /** Seconds to generate the random weights, build the graph and open the session. */
  loadSeconds: number;
  /** Timed rounds of its L(n) (the median counts). */
  repeats: number;
  latency: LatencyRow[];
  /** τ(n)·L(1)/L(n) for every n of the grid. */
  predictions: Prediction[];
  fastest: Prediction;
  /** Smallest n whose predicted speedup reaches the target, or null. */
  firstAtTarget: number | null;
}

export interface PpdSizeReport {
  schema: 'ppd.bench.ppd-size/1';
  mode: 'full' | 'quick';
  command: string;
  date: string;
  durationSeconds: number;
  machine: Machine;
  adapter: { dir: string; accuracyFile: string; promptTokens: number; virtualTokens: number };
  plan: { grid: number[]; contexts: number[]; warmupRounds: number };
  tau: TauPoint[];
  shapes: ShapeResult[];
  /** The bundled model's greedy PPD alone end to end, as bench:ppd last measured it; null if absent or another adapter was priced. */
  bundledMeasured: { tau: number; speedup: number; date: string } | null;
  load: PhaseLoad;
}

/** `ppd-base` is the bundled model's configs/ppd-base.json; any other name a bench/shapes file. */
function shapeConfig(name: string): { file: string; config: LlamaConfig } {
  const file = name === 'ppd-base' ? join(REPO_ROOT, 'configs', 'ppd-base.json') : shapeConfigFile(name, '--shapes');
  return { file, config: parseLlamaConfig(readJsonObject(file), file) };
}

/** A one-row forward under this many milliseconds gets NOISY_REPEATS timed rounds, else FEW_REPEATS. */
const NOISY_FORWARD_MS = 20;
const NOISY_REPEATS = 15;
const FEW_REPEATS = 7;

/** Timed rounds for `model`: many where a forward is short (cheap to repeat, and noisiest), few where it is long. */
async function defaultRepeats(model: LlamaModel): Promise<number> {
  const [probe] = await measureLatency(model, { grid: [1], contexts: [CONTEXTS[0]!], warmupRounds: 1, repeats: 3 });
  return probe!.meanMs < NOISY_FORWARD_MS ? NOISY_REPEATS : FEW_REPEATS;
}

function bundledMeasured(): PpdSizeReport['bundledMeasured'] {
  if (!existsSync(PPD_REPORT)) return null;
  const report = readJsonObject(PPD_REPORT) as { date?: string; targets?: { name: string; value: number }[] };
  const value = (name: string) => report.targets?.find((t) => t.name === name)?.value;
  const tau = value(TARGET_NAMES.tauAlone);
  const speedup = value(TARGET_NAMES.speedupAlone);
  return tau === undefined || speedup === undefined ? null : { tau, speedup, date: report.date ?? 'unknown' };
}

async function main(argv: string[]): Promise<void> {
  const { quick, threads, flags } = parseBenchArgs(argv, ['ppd', 'shapes', 'max-n', 'repeats']);
  const adapterDir = flags.ppd ?? DEFAULT_ADAPTER;
  const shapes = flags.shapes?.split(',').map((s) => s.trim()) ?? (quick ? QUICK_SHAPES : SHAPES);
  const maxN = positiveInt('max-n', flags['max-n'], quick ? 8 : 32);
  const fixedRepeats = flags.repeats === undefined ? undefined : positiveInt('repeats', flags.repeats, 1);
  const configs = shapes.map((name) => ({ name, ...shapeConfig(name) }));
  for (const { name, config } of configs) {
    if (Math.max(...CONTEXTS) + maxN > config.maxPositionEmbeddings) throw new InputError(`--max-n ${maxN}: ${name} has ${config.maxPositionEmbeddings} positions, under ${Math.max(...CONTEXTS)} + ${maxN}`);
  }

  const accuracyFile = join(adapterDir, ACCURACY_FILE);
  if (!existsSync(accuracyFile)) throw new InputError(`${accuracyFile}: missing (give --ppd an adapter folder with an accuracy table)`);
  const adapter = loadAdapterShape(adapterDir);
  const acc = readAccuracyTable(accuracyFile);
  if (acc.length !== adapter.promptTokens) throw new InputError(`${accuracyFile}: ${acc.length} rows, but the adapter has ${adapter.promptTokens} prompt tokens`);
  const adapterShape: AdapterShape = { ...adapter, accuracySource: accuracyFile };
  const grid = sizeGrid(maxN);
  const tau = tauCurve(acc, grid, adapterShape);
  const planFor = (repeats: number) => ({ grid, contexts: CONTEXTS, warmupRounds: 1, repeats });

  const outDir = quick ? mkdtempSync(join(tmpdir(), 'ppd-bench-ppd-size-')) : join(REPO_ROOT, 'docs', 'bench');
  const date = new Date().toISOString();
  const started = performance.now();
  const machine = describeMachine(threads);
  process.stderr.write(`PPD alone against model size: ${shapes.join(', ')}; τ(n) of ${repoPath(accuracyFile)}; n = ${grid.join(', ')}; ${machine.cpuModel}, ${threads} threads\n`);
  await warnIfBusy();

  const endTimed = watchLoad();
  const results: ShapeResult[] = [];
  for (const { name, file, config } of configs) {
    const loadStart = performance.now();
    process.stderr.write(`${name}: ${fmt(parameterCount(config) / 1e6, 1)}M parameters, random weights…\n`);
    const model = await loadLlamaModel(config, randomTensorSource(config, SEED), { cacheDir: false, threads });
    const loadSeconds = (performance.now() - loadStart) / 1000;
    try {
      const plan = planFor(fixedRepeats ?? (quick ? 1 : await defaultRepeats(model)));
      const bar = new Progress(`L(n) ${name}`, plan.contexts.length * grid.length * (plan.warmupRounds + plan.repeats), 'fwd');
      let forwards = 0;
      const latency = await measureLatency(model, plan, () => bar.update(++forwards));
      bar.stop();
      const predictions = predict(grid.map((n, i) => ({ n, tau: tau[i]!.tau, latencyMs: latency[i]!.meanMs })));
      const { fastest } = chooseTreeSize(predictions);
      const firstAtTarget = predictions.find((p) => p.speedup >= TARGET_SPEEDUP)?.n ?? null;
      results.push({ shape: name, configFile: repoPath(file), parameters: parameterCount(config), loadSeconds, repeats: plan.repeats, latency, predictions, fastest, firstAtTarget });
    } finally {
      await model.release();
    }
  }
  const load = endTimed();

  const report: PpdSizeReport = {
    schema: 'ppd.bench.ppd-size/1',
    mode: quick ? 'quick' : 'full',
    command: `npm run bench:ppd-size${argv.length ? ` -- ${argv.join(' ')}` : ''}`,
    date,
    durationSeconds: (performance.now() - started) / 1000,
    machine,
    adapter: { dir: repoPath(adapterDir), accuracyFile: repoPath(accuracyFile), promptTokens: adapter.promptTokens, virtualTokens: adapter.virtualTokens },
    plan: { grid, contexts: CONTEXTS, warmupRounds: 1 },
    tau,
    shapes: results,
    bundledMeasured: adapterDir === DEFAULT_ADAPTER ? bundledMeasured() : null,
    load,
  };
  const paths = await writeReportFiles(outDir, 'ppd-size', report, markdown(report), 'ppd-size.svg', {
    title: 'Greedy PPD alone, predicted speedup over plain decoding: τ(n)·L(1)/L(n)',
    x: { title: 'input rows per step (n)', logBase: 2 },
    y: { title: 'predicted speedup (×)' },
    series: results.map((r) => ({ name: `${millions(r.parameters)} ${r.shape}`, points: r.predictions.map((p) => ({ x: p.n, y: p.speedup })) })),
    yRules: [
      { y: 1, label: 'plain decoding' },
      { y: TARGET_SPEEDUP, label: 'issue 18 target' },
    ],
  });
  process.stderr.write(`wrote ${paths.map(shownPath).join(', ')}\n`);
}

const millions = (n: number) => (n >= 1e9 ? `${fmt(n / 1e9, 2)}B` : `${fmt(n / 1e6, 1)}M`);
/** A latency of shape `s` in units of its one-row forward, L(1). */
const overOneRow = (s: ShapeResult, ms: number) => ms / s.latency[0]!.meanMs;
const ratio = (s: ShapeResult, n: number) => {
  const row = s.latency.find((l) => l.n === n);
  return row ? fmt(overOneRow(s, row.meanMs), 2) : '–';
};

/** Which shapes reach the target at the adapter's accuracy, and what the others lack, from the figures. */
function reachedText(r: PpdSizeReport): string {
  const reached = r.shapes.filter((s) => s.firstAtTarget !== null);
  const best = r.shapes.reduce((a, b) => (b.fastest.speedup > a.fastest.speedup ? b : a));
  const ratios = r.shapes.map((s) => overOneRow(s, s.fastest.latencyMs));
  const lead = reached.length
    ? `At the adapter's accuracy the forward alone would allow ${TARGET_SPEEDUP}× on ${reached.map((s) => `${s.shape} (from n = ${s.firstAtTarget})`).join(', ')}, before any work outside the forward.`
    : `At the adapter's accuracy no shape reaches ${TARGET_SPEEDUP}× even on the forward alone (best: ${best.shape}, ${fmt(best.fastest.speedup, 2)}× at n = ${best.fastest.n}).`;
  const cost = `At each shape's best n a step costs ${fmt(Math.min(...ratios), 2)}–${fmt(Math.max(...ratios), 2)}× a one-row forward here (${r.machine.threadsUsed} threads).`;
  const missing = reached.length === r.shapes.length ? '' : ` Where the target is missed, it needs the τ of the last column at the best n, above the τ today's table gives there (the τ(n) line below).`;
  return `${lead} ${cost}${missing}`;
}

function markdown(r: PpdSizeReport): string {
  const shownN = [2, 4, 8, 16, 32].filter((n) => r.plan.grid.includes(n));
  const bundled = r.shapes.find((s) => s.shape === 'ppd-base');
  return [
    '# PPD alone against model size',
    '',
    `Command: \`${r.command}\` (${r.mode} run, ${r.date}, ${fmt(r.durationSeconds, 0)} s). Data: \`ppd-size.json\` (schema \`${r.schema}\`, see \`bench/ppd-size.ts\`).`,
    '',
    `Greedy PPD without the context lookup makes τ(n) tokens per step with the best tree set of n input rows and costs L(n) per step, against one token per L(1) for plain decoding: its speedup is τ(n)·L(1)/L(n). τ(n) comes from the accuracy table of \`${r.adapter.dir}\` (${r.adapter.promptTokens} prompt tokens) through the tree builder, the same for every row below; L(n) is measured here for random-weight models of each shape (f32; one forward of n rows after a cache of ${r.plan.contexts.join(' and ')} rows, the median over ${[...new Set(r.shapes.map((s) => s.repeats))].join(' or ')} rounds, see the table, after ${r.plan.warmupRounds} warm-up). So each row answers: at this adapter's guessing accuracy, how fast would PPD alone run on a model of this size on this machine? How well a larger model's own prompt tokens would guess is not measured (it needs the model trained here); [training-curve.md](training-curve.md) has accuracy against training length.`,
    '',
    ...machineSection(r.machine, r.load),
    '## Predicted speedup of PPD alone',
    '',
    '![predicted speedup against rows per step](ppd-size.svg)',
    '',
    `| shape | parameters | rounds | L(1) ms | ${shownN.map((n) => `L(${n})/L(1)`).join(' | ')} | best n | τ(best n) | predicted speedup | first n at ≥ ${TARGET_SPEEDUP}× | τ the target needs at the best n |`,
    `| --- | --- | --- | --- | ${shownN.map(() => '---').join(' | ')} | --- | --- | --- | --- | --- |`,
    ...r.shapes.map(
      (s) =>
        `| ${s.shape} | ${millions(s.parameters)} | ${s.repeats} | ${fmt(s.latency[0]!.meanMs, 2)} | ${shownN.map((n) => ratio(s, n)).join(' | ')} | ${s.fastest.n} | ${fmt(s.fastest.tau, 2)} | ${fmt(s.fastest.speedup, 2)}× | ${s.firstAtTarget ?? 'none'} | ${fmt(TARGET_SPEEDUP * overOneRow(s, s.fastest.latencyMs), 2)} |`,
    ),
    '',
    reachedText(r),
    '',
    `τ(n) of the adapter's trees: ${r.tau.map((t) => `${t.n}: ${fmt(t.tau, 2)}`).join(', ')}. Shapes: ${r.shapes.map((s) => `${s.shape} \`${s.configFile}\``).join(', ')}.`,
    '',
    '## Against the bundled model measured end to end',
    '',
    r.bundledMeasured && bundled
      ? `bench:ppd (${r.bundledMeasured.date}, docs/bench/ppd.json) measured greedy PPD alone on the bundled model itself at τ ${fmt(r.bundledMeasured.tau, 2)} and ${fmt(r.bundledMeasured.speedup, 2)}× plain decoding, with its calibrated trees. The prediction above for its shape is ${fmt(bundled.fastest.speedup, 2)}× at n = ${bundled.fastest.n} (τ ${fmt(bundled.fastest.tau, 2)}). ${r.bundledMeasured.tau > bundled.fastest.tau ? "The two differ both ways: while decoding, the prompt tokens guess the model's own greedy text better than the held-out table says (a higher τ), and" : 'Besides τ,'} a step costs more than its forward (tree and inputs built, guesses verified, the cache compacted in TypeScript, about a tenth of a one-row step on this model), which weighs most where a forward is shortest. On the larger shapes a forward is tens of milliseconds and that work the same, so their predictions are the closer ones.`
      : 'Nothing to compare with: the priced adapter is not the bundled one, or there is no bench:ppd report (docs/bench/ppd.json).',
    '',
  ].join('\n');
}

await runBenchmark(main);
