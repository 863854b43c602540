/**
 * `ppd calibrate`: the hardware-aware tree size (PPD.md §8) for this machine, in one command.
 * Measures L(n) (measure.ts), takes τ(n) from the adapter's accuracy table (ppd/tree-size-tau.ts), picks the n
 * with the highest τ(n)/L(n) (ppd/tree-size-choice.ts), checks the prediction with greedy generations on
 * held-out prompts, and writes the profile + trees (ppd/hardware-profile.ts) and the report (report.ts) into
 * the adapter folder, where `ppd generate --ppd` finds them. docs/CALIBRATION.md is the guide.
 */
import { InvalidArgumentError } from 'commander';
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { basename, join, relative } from 'node:path';
import { bestWithoutLookup, chooseTreeSize, decide, guessesAnything, sizesToCheck, type Choice } from '../ppd/tree-size-choice.ts';
import { sizeGrid } from '../ppd/tree-size-grid.ts';
import { generationCount, generationRuns, heldOutPrompts, latencyForwards, measuredSize, measureLatency, type Candidate, type HeldOutPrompt, type LatencyRow } from '../calibrate/measure.ts';
import { fileDigest, machineSignature, PROFILE_SCHEMA, PROFILES_DIR, profileTreesName, profileTreesWithoutLookupName, saveProfile, signatureHash, type HardwareProfile, type MachineSignature } from '../ppd/hardware-profile.ts';
import { decisionText, REPORT_SCHEMA, withoutLookupText, writeReport, type CalibrationReport } from '../calibrate/report.ts';
import { tauCurve, treeSetFor, type AdapterShape, type TauPoint } from '../ppd/tree-size-tau.ts';
import { defaultHeldOutFile } from '../data/bundled-corpora.ts';
import { promptSourcesOf } from '../data/tokenize.ts';
import { InputError } from '../errors.ts';
import { readTextFile } from '../format/text-file.ts';
import { openModelDir } from '../checkpoint/model-dir.ts';
import { loadModel, tokenizerAt, type LoadedModel } from '../checkpoint/load.ts';
import type { LlamaConfig } from '../model/config.ts';
import type { QuantizeMode } from '../format/quantize.ts';
import { PromptAdapter } from '../ppd/adapter.ts';
import { loadAdapter, promptHeadOf } from '../ppd/adapter-files.ts';
import type { AccuracyTable } from '../ppd/accuracy.ts';
import { readAccuracyTable } from '../ppd/accuracy-files.ts';
import { ACCURACY_FILE } from '../ppd/adapter-folder.ts';
import { DEFAULT_NGRAM_TOKENS, TREES_FILE, type PpdSetup } from '../ppd/setup.ts';
import { bindingOf } from '../ppd/ngram-table.ts';
import { adapterNgramFile, loadNgramTable } from '../ppd/ngram-files.ts';
import { loadTreeSet } from '../ppd/tree-files.ts';
import { Progress } from '../report/progress.ts';
import { defaultThreads } from '../runtime/ort.ts';

/** Held-out prompts are document openings of at least this many tokens. */
const PROMPT_MIN_TOKENS = 32;
/** Folder in the adapter for reports. */
const REPORTS_DIR = 'calibration';

export interface CalibrateFlags {
  model: string;
  ppd: string;
  threads?: number;
  /** Quantized weights: timed as they will run, and part of the profile's signature. */
  quantize?: QuantizeMode;
  maxN: number;
  contexts: number[];
  repeats: number;
  warmup: number;
  prompts: number;
  maxTokens: number;
  genRepeats: number;
  data?: string;
  checkSizes?: number[];
  tolerance: number;
  /** After the end-to-end check: the share by which PPD must beat plain decoding to be chosen. */
  margin: number;
  /** Context-lookup tokens per step the check also runs every size with (and alone); 0 = none. */
  lookup: number;
  /**
   * Whether the check also runs every candidate with the adapter folder's n-gram table, and the
   * table alone, when the folder has one (default true; commander's `--no-ngram` sets false).
   */
  ngram?: boolean;
  latencyModel?: string;
  report?: string;
}

/** A parser for "64,256": comma-separated integers in min..max (commander reports a bad one as one line). */
export function integerList(min: number, max: number) {
  return (text: string): number[] => {
    const parts = text.split(',').map((s) => s.trim());
    if (parts.some((p) => !/^\d+$/.test(p) || Number(p) < min || Number(p) > max)) {
      throw new InvalidArgumentError(`expected comma-separated integers in ${min}..${max}, got "${text}"`);
    }
    return parts.map(Number);
  };
}

/** A model folder's config, without loading the model. */
function configOf(dir: string): LlamaConfig {
  const files = openModelDir(dir);
  files.tensors.close();
  return files.config;
}

function commandLine(f: CalibrateFlags): string {
  const args = process.argv.slice(2);
  return args.length > 0 ? `ppd ${args.join(' ')}` : `ppd calibrate --model ${f.model} --ppd ${f.ppd}`;
}

const shown = (path: string) => {
  const rel = relative(process.cwd(), path);
  return rel.startsWith('..') ? path : rel;
};

/** Everything the run needs, read and checked before any model is loaded. */
interface Inputs {
  threads: number;
  signature: MachineSignature;
  hash: string;
  adapter: PromptAdapter;
  acc: AccuracyTable;
  shape: AdapterShape;
  accuracyFile: string;
  accuracyDigest: string;
  /** The budget of the adapter's trees.json, when it has one. */
  defaultBudget: number | undefined;
  /** Sizes checked end to end whatever is chosen: the trees.json budget and --check-sizes. */
  extraSizes: number[];
  grid: number[];
  /** The folder L(n) is timed on. */
  latencyDir: string;
  /** Held-out text for the end-to-end check; undefined when it is skipped. */
  dataFile: string | undefined;
  /** The adapter folder's n-gram table for the check to measure, as decoding would use it; undefined when none or not checked. */
  ngram: PpdSetup['ngram'];
}

function readInputs(f: CalibrateFlags): Inputs {
  const threads = f.threads ?? defaultThreads();
  const signature = machineSignature(threads, f.quantize);
  // The base model's config suffices to check the adapter; only the latency model is loaded.
  const base = configOf(f.model);
  const adapter = loadAdapter(f.ppd, base);
  const accuracyFile = join(f.ppd, ACCURACY_FILE);
  const acc = readAccuracyTable(accuracyFile);
  const shape: AdapterShape = { promptTokens: adapter.promptTokens, virtualTokens: adapter.virtualTokens, attention: adapter.config.attention, accuracySource: accuracyFile };
  if (acc.length !== shape.promptTokens) throw new InputError(`${accuracyFile}: ${acc.length} rows, but the adapter has ${shape.promptTokens} prompt tokens`);
  const treesFile = join(f.ppd, TREES_FILE);
  const defaultBudget = existsSync(treesFile) ? loadTreeSet(treesFile).budget : undefined;

  const over = f.checkSizes?.find((n) => n > f.maxN);
  if (over !== undefined) throw new InputError(`--check-sizes ${over} is above --max-n ${f.maxN}`);
  const extraSizes = [...(defaultBudget !== undefined && defaultBudget <= f.maxN ? [defaultBudget] : []), ...(f.checkSizes ?? [])];

  const latencyDir = f.latencyModel ?? f.model;
  const positions = (f.latencyModel === undefined ? base : configOf(f.latencyModel)).maxPositionEmbeddings;
  const longest = Math.max(...f.contexts) + f.maxN;
  if (longest > positions) throw new InputError(`--contexts ${Math.max(...f.contexts)} + --max-n ${f.maxN} = ${longest} rows exceed ${latencyDir}'s ${positions} positions`);

  // L(n) of another model says nothing about this one's generations: no check then.
  const dataFile = f.latencyModel === undefined && f.prompts > 0 ? (f.data ?? defaultHeldOutFile(tokenizerAt(f.model), f.model, '--data FILE', ', or skip the end-to-end check with --prompts 0')) : undefined;
  if (dataFile !== undefined && !existsSync(dataFile)) throw new InputError(`${dataFile}: no held-out text here; name one with --data FILE, or skip the check with --prompts 0`);
  const ngramFile = dataFile === undefined || f.ngram === false ? undefined : adapterNgramFile(f.ppd);
  const ngram = ngramFile === undefined ? undefined : { table: loadNgramTable(ngramFile, { binding: bindingOf(base, tokenizerAt(f.model)), modelDir: f.model }), tokens: DEFAULT_NGRAM_TOKENS, file: ngramFile };

  return {
    threads,
    signature,
    hash: signatureHash(signature),
    adapter,
    acc,
    shape,
    accuracyFile,
    accuracyDigest: fileDigest(accuracyFile),
    defaultBudget,
    extraSizes,
    grid: [...new Set([...sizeGrid(f.maxN), ...extraSizes])].sort((a, b) => a - b),
    latencyDir,
    dataFile,
    ngram,
  };
}

/** L(n) on the loaded model and τ(n) from the table, over the grid, with progress bars. */
async function measureCurves(loaded: LoadedModel, inputs: Inputs, f: CalibrateFlags): Promise<{ latency: LatencyRow[]; tau: TauPoint[] }> {
  const plan = { grid: inputs.grid, contexts: f.contexts, warmupRounds: f.warmup, repeats: f.repeats };
  const latencyBar = new Progress('L(n)', latencyForwards(plan), 'fwd');
  let forwards = 0;
  const latency = await measureLatency(loaded.model, plan, () => latencyBar.update(++forwards));
  latencyBar.stop(`L(1) = ${latency[0]!.meanMs.toFixed(2)} ms, L(${f.maxN}) = ${latency.at(-1)!.meanMs.toFixed(2)} ms`);
  const tauBar = new Progress('τ(n)', inputs.grid.length, 'sizes');
  const tau = tauCurve(inputs.acc, inputs.grid, inputs.shape, (done) => tauBar.update(done));
  tauBar.stop();
  return { latency, tau };
}

/**
 * The decoders the check runs against plain decoding: the chosen n and the sizes around it; with
 * `--lookup K`, each of those again with a K-token context lookup, and the lookup alone (n = 1);
 * with the adapter folder's n-gram table, every one of those again with the table beside it, and
 * the table alone.
 */
function checkCandidates(inputs: Inputs, sizes: readonly number[], lookup: number): Candidate[] {
  const withLookup = lookup === 0 ? [] : [...new Set([1, ...sizes])].map((n) => ({ n, lookup }));
  const withoutTable = [...sizes.map((n) => ({ n, lookup: 0 })), ...withLookup];
  const withTable = inputs.ngram === undefined ? [] : [...(sizes.includes(1) ? [] : [{ n: 1, lookup: 0 }]), ...withoutTable];
  const candidate = (ngram: PpdSetup['ngram']) => ({ n, lookup }: { n: number; lookup: number }): Candidate => ({
    n,
    lookup,
    ngram: ngram !== undefined,
    setup: { adapter: inputs.adapter, trees: treeSetFor(inputs.acc, n, inputs.shape), verification: 'rejection', lookup, ...(ngram === undefined ? {} : { ngram }) },
  });
  return [...withoutTable.map(candidate(undefined)), ...withTable.map(candidate(inputs.ngram))];
}

/** Plain vs PPD greedy generations of checkCandidates's decoders, against the prediction. */
async function checkPrediction(loaded: LoadedModel, inputs: Inputs, choice: Choice, prompts: HeldOutPrompt[], f: CalibrateFlags): Promise<NonNullable<CalibrationReport['check']>> {
  const { chosen } = choice;
  const candidates = checkCandidates(inputs, sizesToCheck(inputs.grid, chosen.n, inputs.extraSizes), f.lookup);
  const plan = { prompts, candidates, maxTokens: f.maxTokens, repeats: f.genRepeats };
  const bar = new Progress('held-out generations', generationCount(plan), 'runs');
  let done = 0;
  const runs = await generationRuns(loaded, plan, () => bar.update(++done));
  const predicted = new Map(choice.predictions.map((p) => [p.n, p]));
  const measured = candidates.map((c, i) => ({ ...measuredSize(runs, i, c), predictedTau: predicted.get(c.n)!.tau, predictedSpeedup: predicted.get(c.n)!.speedup }));
  const atChosen = measured.find((s) => s.n === chosen.n && s.lookup === 0 && !s.ngram)!;
  bar.stop(`at n = ${chosen.n}: measured speedup ${atChosen.speedup.toFixed(2)}× (predicted ${chosen.speedup.toFixed(2)}×), τ ${atChosen.tau.toFixed(2)} (predicted ${chosen.tau.toFixed(2)})`);
  return {
    dataFile: shown(inputs.dataFile!),
    ngramFile: inputs.ngram === undefined ? null : shown(inputs.ngram.file),
    prompts: prompts.map((p) => ({ document: p.document, tokens: p.tokens, text: p.text })),
    maxTokens: f.maxTokens,
    repeats: f.genRepeats,
    sizes: measured,
  };
}

/** The profile for this machine and its trees, into the adapter folder; returns the paths written. */
function installProfile(inputs: Inputs, report: CalibrationReport, f: CalibrateFlags): string[] {
  const chosen = report.predictions.find((p) => p.n === report.decision.n)!;
  const profile: HardwareProfile = {
    schema: PROFILE_SCHEMA,
    signature: inputs.signature,
    signatureHash: inputs.hash,
    created: report.date,
    adapter: { baseConfigHash: inputs.adapter.config.baseModel.configHash, accuracyDigest: inputs.accuracyDigest },
    budget: chosen.n,
    trees: profileTreesName(inputs.hash),
    expectedTokensPerStep: chosen.tau,
    latencyMs: { one: report.predictions[0]!.latencyMs, chosen: chosen.latencyMs },
    predictedSpeedup: chosen.speedup,
    measuredSpeedup: report.decision.basis === 'measurement' && guessesAnything(report.decision) ? report.decision.speedup : null,
    report: join(REPORTS_DIR, `${inputs.hash}.json`),
    ...(report.decision.lookup === null ? {} : { lookup: report.decision.lookup }),
    ...(report.decision.ngram === null ? {} : { ngram: report.decision.ngram }),
    ...(report.withoutLookup === null ? {} : { withoutLookup: { budget: report.withoutLookup.n, trees: profileTreesWithoutLookupName(inputs.hash), measuredSpeedup: report.withoutLookup.speedup } }),
  };
  const treesWithoutLookup = profile.withoutLookup && treeSetFor(inputs.acc, profile.withoutLookup.budget, inputs.shape);
  return [
    saveProfile(f.ppd, profile, treeSetFor(inputs.acc, chosen.n, inputs.shape), treesWithoutLookup),
    join(f.ppd, PROFILES_DIR, profile.trees),
    ...(profile.withoutLookup ? [join(f.ppd, PROFILES_DIR, profile.withoutLookup.trees)] : []),
  ];
}

export async function calibrateCommand(f: CalibrateFlags): Promise<void> {
  const started = performance.now();
  const date = new Date().toISOString();
  const inputs = readInputs(f);
  const loadAverageBefore = loadavg()[0]!;
  if (loadAverageBefore > 0.5) process.stderr.write(`warning: load average ${loadAverageBefore.toFixed(2)} before the run: other processes will slow the forwards and skew L(n)\n`);
  // A prompt head's product is part of every PPD forward: L(n) is timed with it.
  const loaded = await loadModel(inputs.latencyDir, { threads: inputs.threads, quantize: f.quantize, needsTokenizer: inputs.dataFile !== undefined, promptHead: promptHeadOf(f.ppd) });
  try {
    // Prompts first: a file without usable prompts should fail before minutes of timing.
    const prompts = inputs.dataFile === undefined ? [] : heldOutPrompts(loaded, promptSourcesOf(readTextFile(inputs.dataFile)), f.prompts, PROMPT_MIN_TOKENS);
    if (inputs.dataFile !== undefined && prompts.length === 0) throw new InputError(`${inputs.dataFile}: no document (or, in plain text, paragraph) goes on past a ${PROMPT_MIN_TOKENS}-token opening; name other text with --data`);
    process.stderr.write(`calibrating ${shown(f.ppd)} on ${shown(inputs.latencyDir)}: ${inputs.grid.length} step sizes 1..${f.maxN}, contexts ${f.contexts.join(', ')}, ${inputs.threads} threads${f.quantize ? `, ${f.quantize} weights` : ''}\n`);

    const { latency, tau } = await measureCurves(loaded, inputs, f);
    const choice = chooseTreeSize(inputs.grid.map((n, i) => ({ n, tau: tau[i]!.tau, latencyMs: latency[i]!.meanMs })), { tolerance: f.tolerance });
    const { chosen } = choice;
    process.stderr.write(`chosen n = ${chosen.n}: τ ${chosen.tau.toFixed(2)}, L ${chosen.latencyMs.toFixed(2)} ms, predicted speedup ${chosen.speedup.toFixed(2)}×\n`);
    const check = prompts.length === 0 ? null : await checkPrediction(loaded, inputs, choice, prompts, f);
    const decision = decide(choice, check?.sizes ?? null, f.margin);
    if (decision.basis === 'measurement') process.stderr.write(`decision: ${decisionText(decision, f.margin)}\n`);
    // Only a decision that verifies a lookup chain needs another choice for --lookup 0.
    const withoutLookup = decision.lookup ? bestWithoutLookup(check?.sizes ?? null) : null;
    if (withoutLookup) process.stderr.write(`without the context lookup (--lookup 0): ${withoutLookupText(withoutLookup)}\n`);

    // The profile only when L(n) is this model's own; the report always.
    const whatIf = f.latencyModel === undefined ? '' : `-latency-${basename(f.latencyModel)}`;
    const report: CalibrationReport = {
      schema: REPORT_SCHEMA,
      command: commandLine(f),
      date,
      durationSeconds: (performance.now() - started) / 1000,
      machine: { ...inputs.signature, signatureHash: inputs.hash, node: process.version, loadAverageBefore },
      model: shown(f.model),
      latencyModel: f.latencyModel === undefined ? null : shown(f.latencyModel),
      adapter: { dir: shown(f.ppd), promptTokens: inputs.shape.promptTokens, virtualTokens: inputs.shape.virtualTokens, attention: inputs.shape.attention, accuracyFile: shown(inputs.accuracyFile), accuracyDigest: inputs.accuracyDigest },
      latency: { contexts: [...f.contexts], warmupRounds: f.warmup, repeats: f.repeats, rows: latency },
      tau,
      predictions: choice.predictions,
      tolerance: f.tolerance,
      chosen,
      fastest: choice.fastest,
      decision,
      withoutLookup,
      margin: f.margin,
      defaultTrees: inputs.defaultBudget === undefined ? null : { file: shown(join(f.ppd, TREES_FILE)), budget: inputs.defaultBudget },
      check,
      profile: whatIf === '' ? join(PROFILES_DIR, `${inputs.hash}.json`) : null,
    };
    const written = [
      ...(whatIf === '' ? installProfile(inputs, report, f) : []),
      ...(await writeReport(report, join(f.ppd, REPORTS_DIR), `${inputs.hash}${whatIf}`)),
      ...(f.report === undefined ? [] : await writeReport(report, f.report, `calibration-${inputs.threads}t${whatIf}`)),
    ];
    for (const path of written) process.stdout.write(`wrote ${shown(path)}\n`);
  } finally {
    await loaded.model.release();
  }
}
