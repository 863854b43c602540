/**
 * PPD benchmark: how much faster Parallel Prompt Decoding generates than plain decoding on this
 * machine, with the trained adapter, on held-out text. One run measures everything and writes
 * docs/bench/ppd.json (the data; schema: `PpdBenchReport` below), docs/bench/ppd.md (the same for
 * people) and docs/bench/ppd-per-prompt.svg (greedy speedup and τ per prompt).
 *
 *   npm run bench:ppd                       full run: models/ppd-base with its adapter models/ppd-base/ppd
 *   npm run bench:ppd -- --quick            smoke check: 2 prompts, 16 new tokens, 1 repeat; written
 *                                           to a temporary folder so the published report stays
 *   --model DIR --ppd ADAPTER               another model folder / adapter folder (default DIR/ppd)
 *   --prompts FILE                          prompts from this text (a split file's documents, or
 *                                           plain text's paragraphs: README.md, "Text files");
 *                                           default: the test split of the corpus made for the
 *                                           model's tokenizer (src/data/bundled-corpora.ts); a
 *                                           model with another tokenizer must name its own
 *   --out DIR                               where the report goes (default docs/bench; --quick: a
 *                                           temporary folder)
 *   --max-tokens N --count N --repeats N    new tokens per generation (96), prompts (16; `--prompts
 *                                           N` says the same), timed repeats of each generation (2;
 *                                           the median time counts)
 *   --threads N                             ONNX Runtime intra-op threads (default: all cores)
 *
 * What it measures. Prompts are the openings of held-out documents (the model's corpus's test split by default),
 * evenly spaced over the split (its documents come grouped by source, so the first few are all
 * Bible chapters), each cut at a sentence (else word) end to 32–64 tokens, skipping on to the next
 * document where one ends before that (a whole document invites EOS). Every prompt is generated
 * by eight decoders: greedy plain, PPD, PPD + context lookup and context lookup alone; sampling
 * at temperature 0.8, top-p 0.95 with a fixed seed per prompt, plain, PPD with rejection
 * verification (distribution-preserving) without and with context lookup, and PPD with typical
 * acceptance. The runs of one prompt are interleaved (the decoders in turn, the order
 * reversed every other round) so that both sides share the machine's noise, after one
 * warm-up generation per decoder. Times are end to end (prefill included), as `Generation` reports
 * them; EOS ends a generation as it would for a user, so new-token counts are reported too.
 *
 * An adapter folder's static n-gram table (ngram.bin) is left out of every decoder here:
 * bench:ngram measures what it adds.
 *
 * Greedy PPD must reproduce plain greedy decoding token for token: a mismatch is reported at the
 * top of the report and on stderr, and the run exits with code 1 (after writing the report).
 * The targets (τ >= 2.5, greedy speedup >= 2×, memory overhead <= 0.01 %) are reported, never
 * asserted.
 *
 * Shape legend (docs/ARCHITECTURE.md): N = prompt tokens, Vt = virtual tokens per prompt token, C = hidden size,
 * R = input rows of one tree step, M = tree nodes (root + candidates).
 */
import { promptHeadOf } from '../src/ppd/adapter-files.ts';
import { distinctNgramShare } from '../src/eval/repetition.ts';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_ADAPTER, DEFAULT_MODEL } from '../src/cli/demo.ts';
import { InputError } from '../src/errors.ts';
import type { FinishReason, GenerationResult } from '../src/generate/generate.ts';
import { startGeneration } from '../src/generate/request.ts';
import { loadModel, tokenizerAt, type LoadedModel } from '../src/checkpoint/load.ts';
import { parameterCount } from '../src/model/config.ts';
import { DEFAULT_LOOKUP_TOKENS, loadGuessingPpdSetup, TREES_FILE, type PpdSetup } from '../src/ppd/setup.ts';
import { lookupAlone } from '../src/ppd/adapter-folder.ts';
import { compileTree } from '../src/ppd/tree-buffers.ts';
import { treeRows } from '../src/ppd/tree.ts';
import { Progress } from '../src/report/progress.ts';
import type { SamplingOptions } from '../src/sampling/sampler.ts';
import {
  BUSY_MACHINE_CORES,
  bytes,
  describeMachine,
  fmt,
  machineSection,
  otherCpu,
  parseBenchArgs,
  positiveInt,
  REPO_ROOT,
  repoPath,
  runBenchmark,
  writeReportFiles,
  shownPath,
  watchLoad,
  warnIfBusy,
  type Machine,
  type PhaseLoad,
} from './harness.ts';
import { spread } from '../src/report/timing.ts';
import { selectPrompts, type Prompt } from './prompts.ts';
import { MODEL_TARGETS, TARGET_NAMES } from './ppd-targets.ts';
import { BUNDLED_CORPORA, defaultHeldOutFile, heldOutFile } from '../src/data/bundled-corpora.ts';

// ---------------------------------------------------------------------------------------------
// Report schema (docs/bench/ppd.json). Times in seconds, rates per second, sizes in bytes,
// shares as fractions (0.0001 = 0.01 %).

export interface PpdBenchReport {
  schema: 'ppd.bench.ppd/2';
  mode: 'full' | 'quick';
  command: string;
  /** ISO 8601, when the run started. */
  date: string;
  durationSeconds: number;
  machine: Machine;
  model: { dir: string; parameters: number; weightBytes: number; hiddenSize: number; layers: number; vocabSize: number };
  adapter: {
    dir: string;
    promptTokens: number; // N
    virtualTokens: number; // Vt
    attention: string;
    /**
     * The trees of the prompt tokens alone (the decoders without the lookup): this machine's
     * calibrated choice for `--lookup 0`; plainChosen: the calibration picked plain decoding
     * there, so trees.json stands in.
     */
    trees: TreesRecord;
    /** The trees the "+ context lookup" decoders verify beside the chain: the machine's own choice, trees.json where that is the root alone. */
    treesWithLookup: TreesRecord;
  };
  workload: Workload;
  /** Every greedy PPD run (each prompt, each greedy comparison) against plain greedy: the ids must be identical. */
  greedyIdentity: { runs: number; identical: number; mismatches: Mismatch[] };
  comparisons: Comparison[];
  memory: MemoryOverhead;
  training: TrainingRecord;
  targets: TargetResult[];
  /** CPU that other processes used during the timed generations (warm-up and loading excluded). */
  load: PhaseLoad;
}

export interface Workload {
  corpusFile: string;
  /** The prompts: `document` indexes the split file's documents; tokens include BOS. */
  prompts: { prompt: number; document: number; tokens: number; text: string }[];
  promptTokens: { min: number; max: number; mean: number };
  maxTokens: number;
  /** Timed generations of each prompt by each decoder; the median time counts. */
  repeats: number;
  warmupTokens: number;
  sampling: { temperature: number; topP: number; topK: number; seedOfPrompt: string };
}

export type DecoderId =
  | 'greedy-plain'
  | 'greedy-ppd'
  | 'greedy-ppd-lookup'
  | 'greedy-lookup'
  | 'sampled-plain'
  | 'sampled-ppd-rejection'
  | 'sampled-ppd-rejection-lookup'
  | 'sampled-ppd-typical';

/** One decoder on one prompt. Token counts are the same in every repeat (checked: `reproducible`). */
export interface RunResult {
  newTokens: number;
  /** Forwards that produced tokens, the prompt's included. */
  steps: number;
  /** newTokens / steps: tokens per forward, the prompt's included (as `Generation` reports it). */
  tau: number;
  /**
   * τ as the paper counts it: tokens per decoding step after the prompt's forward, (newTokens − 1)
   * / (steps − 1); 1 for plain decoding. The targets and the tables use this one.
   */
  tauPerStep: number;
  finishReason: FinishReason;
  /** Median over the repeats, end to end (prefill included). */
  seconds: number;
  secondsPerRepeat: number[];
  /** newTokens / seconds. */
  tokensPerSecond: number;
  /** Every repeat produced the same ids (decoding is deterministic for a fixed seed). */
  reproducible: boolean;
  /** Share of the new tokens' 4-grams that are distinct (1 = no repetition; a loop scores low). */
  distinctFourGrams: number;
}

export interface PromptComparison {
  /** 1-based, as in the chart. */
  prompt: number;
  document: number;
  promptTokens: number;
  plain: RunResult;
  ppd: RunResult;
  /** ppd.tokensPerSecond / plain.tokensPerSecond. */
  speedup: number;
  /** PPD produced exactly plain decoding's ids (required for greedy; by chance when sampling). */
  identical: boolean;
}

export type ComparisonName =
  | 'greedy'
  | 'greedy, PPD + context lookup'
  | 'greedy, context lookup alone'
  | 'sampling, rejection verification'
  | 'sampling, rejection verification + context lookup'
  | 'sampling, typical acceptance';

export interface Comparison {
  name: ComparisonName;
  plain: DecoderId;
  ppd: DecoderId;
  sampling: Pick<SamplingOptions, 'temperature' | 'topP' | 'topK'>;
  /** Whether PPD preserves plain decoding's output distribution (greedy: its exact output). */
  preservesDistribution: boolean;
  prompts: PromptComparison[];
  aggregate: Aggregate;
}

export interface Aggregate {
  speedupMedian: number;
  speedupMean: number;
  speedupMin: number;
  speedupMax: number;
  /** Σ new tokens / Σ seconds over the prompts. */
  plainTokensPerSecond: number;
  ppdTokensPerSecond: number;
  /** ppdTokensPerSecond / plainTokensPerSecond. */
  overallSpeedup: number;
  /** Mean of the prompts' τ per decoding step (PPD). */
  tauMean: number;
  /** Σ (new tokens − 1) / Σ (forwards − 1) over the prompts (PPD). */
  tauOverall: number;
  identicalOutputs: number;
  /** Median over the prompts of plain decoding's distinct 4-gram share (the text's quality, not PPD's). */
  plainDistinctFourGramsMedian: number;
}

export interface Mismatch {
  /** Which greedy comparison (its PPD decoder against plain greedy). */
  decoding: ComparisonName;
  prompt: number;
  document: number;
  /** First position where the ids differ (the shorter length when one is a prefix of the other). */
  position: number;
  plainId: number | null;
  ppdId: number | null;
  plainTokens: number;
  ppdTokens: number;
}

export interface TreeBufferSize {
  guessDepth: number;
  rows: number; // R
  nodes: number; // M
  /** [R, R] u8. */
  maskBytes: number;
  /** Positions, node rows, row sources, retrieval paths, prompt rows, guess slots, as int32. */
  indexBytes: number;
}

export interface MemoryOverhead {
  /** N·Vt·C f32, plus the prompt head's N·(C² + C) f32 when the adapter has one. */
  adapterBytes: number;
  trees: TreeBufferSize[];
  treeBufferBytes: number;
  /** adapterBytes + treeBufferBytes. */
  overheadBytes: number;
  /** parameters × 4 (f32). */
  weightBytes: number;
  /** overheadBytes / weightBytes. */
  share: number;
}

export interface TrainingRecord {
  trainableParameters: number;
  shareOfBase: number;
  /** From the adapter's training record; null when it has none (an untrained adapter). */
  trainSeconds: number | null;
  wallSeconds: number | null;
  steps: number | null;
}

export interface TargetResult {
  name: string;
  value: number;
  comparison: '>=' | '<=';
  threshold: number;
  unit: 'x' | 'tokens/step' | 'share';
  pass: boolean;
}

// ---------------------------------------------------------------------------------------------
// What is measured, and how often.

interface Plan {
  mode: 'full' | 'quick';
  threads: number;
  outDir: string;
  modelDir: string;
  adapterDir: string;
  /** The text the prompts are cut from. */
  promptFile: string;
  prompts: number;
  maxTokens: number;
  repeats: number;
}

const WARMUP_TOKENS = 32;
const SAMPLING = { temperature: 0.8, topP: 0.95, topK: 0 };
const GREEDY = { temperature: 0, topP: 1, topK: 0 };
/** Prompt p (1-based) samples with seed SEED_BASE + p, in every decoder and repeat. */
const SEED_BASE = 1000;
const TARGETS = { tau: 2.5, speedup: 2, memoryShare: 0.0001 };
const SVG_NAME = 'ppd-per-prompt.svg';

function planFromArgs(argv: string[]): Plan {
  // --quick and --threads are read and checked by the harness; the rest are this benchmark's.
  const { quick, threads, flags: values } = parseBenchArgs(argv, ['model', 'ppd', 'max-tokens', 'prompts', 'count', 'repeats', 'out']);
  const modelDir = values.model ?? DEFAULT_MODEL;
  const adapterDir = values.ppd ?? (values.model === undefined ? DEFAULT_ADAPTER : join(modelDir, 'ppd'));
  if (!existsSync(join(modelDir, 'config.json'))) {
    throw new InputError(`${modelDir}: no model here (train the default one with \`npm run pretrain:default\`, or name one with --model DIR)`);
  }
  if (!existsSync(join(adapterDir, TREES_FILE))) {
    throw new InputError(`${adapterDir}: no PPD adapter with ${TREES_FILE} here (make one with \`ppd train-prompts\`, or name one with --ppd DIR)`);
  }
  // --prompts N is how many prompts, as in the other benchmarks; anything else names a file.
  const promptsIsCount = values.prompts !== undefined && /^\d+$/.test(values.prompts);
  if (promptsIsCount && values.count !== undefined) throw new InputError(`--prompts ${values.prompts} and --count ${values.count} both give the number of prompts; give it once`);
  const promptFile = promptsIsCount ? undefined : values.prompts;
  if (promptFile !== undefined && !existsSync(promptFile)) throw new InputError(`--prompts ${promptFile}: no such file (a text file of prompts, or a number of prompts)`);
  return {
    mode: quick ? 'quick' : 'full',
    threads,
    outDir: values.out ?? (quick ? join(tmpdir(), 'ppd-bench-ppd-quick') : join(REPO_ROOT, 'docs', 'bench')),
    modelDir,
    adapterDir,
    promptFile: promptFile ?? defaultHeldOutFile(tokenizerAt(modelDir), modelDir, '--prompts FILE'),
    prompts: positiveInt(promptsIsCount ? 'prompts' : 'count', promptsIsCount ? values.prompts : values.count, quick ? 2 : 16),
    maxTokens: positiveInt('max-tokens', values['max-tokens'], quick ? 16 : 96),
    repeats: positiveInt('repeats', values.repeats, quick ? 1 : 2),
  };
}

// ---------------------------------------------------------------------------------------------
// Decoding runs.

/**
 * Where a PPD decoder's guesses come from: the prompt tokens' trees alone (the method as the
 * paper has it, which the targets are about), those trees plus a context-lookup chain
 * (src/ppd/lookup.ts, DEFAULT_LOOKUP_TOKENS per step, what `generate --ppd` adds by default), or
 * the lookup chain alone (a root-only tree set: no prompt-token rows).
 */
type Guesses = 'prompt' | 'prompt+lookup' | 'lookup';

interface Decoder {
  id: DecoderId;
  sampled: boolean;
  /** PPD with this verification ('greedy' when not sampling); absent for plain decoding. */
  ppd?: 'greedy' | 'rejection' | 'typical';
  guesses?: Guesses;
}

const DECODERS: readonly Decoder[] = [
  { id: 'greedy-plain', sampled: false },
  { id: 'greedy-ppd', sampled: false, ppd: 'greedy', guesses: 'prompt' },
  { id: 'greedy-ppd-lookup', sampled: false, ppd: 'greedy', guesses: 'prompt+lookup' },
  { id: 'greedy-lookup', sampled: false, ppd: 'greedy', guesses: 'lookup' },
  { id: 'sampled-plain', sampled: true },
  { id: 'sampled-ppd-rejection', sampled: true, ppd: 'rejection', guesses: 'prompt' },
  { id: 'sampled-ppd-rejection-lookup', sampled: true, ppd: 'rejection', guesses: 'prompt+lookup' },
  { id: 'sampled-ppd-typical', sampled: true, ppd: 'typical', guesses: 'prompt' },
];

const COMPARISONS: readonly Pick<Comparison, 'name' | 'plain' | 'ppd' | 'preservesDistribution'>[] = [
  { name: 'greedy', plain: 'greedy-plain', ppd: 'greedy-ppd', preservesDistribution: true },
  { name: 'greedy, PPD + context lookup', plain: 'greedy-plain', ppd: 'greedy-ppd-lookup', preservesDistribution: true },
  { name: 'greedy, context lookup alone', plain: 'greedy-plain', ppd: 'greedy-lookup', preservesDistribution: true },
  { name: 'sampling, rejection verification', plain: 'sampled-plain', ppd: 'sampled-ppd-rejection', preservesDistribution: true },
  { name: 'sampling, rejection verification + context lookup', plain: 'sampled-plain', ppd: 'sampled-ppd-rejection-lookup', preservesDistribution: true },
  { name: 'sampling, typical acceptance', plain: 'sampled-plain', ppd: 'sampled-ppd-typical', preservesDistribution: false },
];
const GREEDY_COMPARISONS: readonly ComparisonName[] = ['greedy', 'greedy, PPD + context lookup', 'greedy, context lookup alone'];

/** The machine's setups: for the prompt tokens alone (`--lookup 0`), and with the context lookup. */
interface Setups {
  alone: PpdSetup;
  withLookup: PpdSetup;
}

/** The setup a decoder runs with: the calibrated trees and/or a lookup chain. */
function setupFor(setups: Setups, guesses: Guesses): PpdSetup {
  if (guesses === 'prompt') return { ...setups.alone, lookup: 0 };
  if (guesses === 'prompt+lookup') return { ...setups.withLookup, lookup: DEFAULT_LOOKUP_TOKENS };
  return lookupAlone(setups.withLookup, DEFAULT_LOOKUP_TOKENS);
}

async function generate(loaded: LoadedModel, setups: Setups, decoder: Decoder, prompt: Prompt, maxTokens: number): Promise<GenerationResult> {
  const sampling = decoder.sampled ? { ...SAMPLING, seed: SEED_BASE + prompt.number } : { ...GREEDY, seed: 0 };
  const ppd = decoder.ppd === undefined ? undefined : { ...setupFor(setups, decoder.guesses!), verification: decoder.ppd === 'typical' ? ('typical' as const) : ('rejection' as const) };
  // EOS is ignored: every run produces exactly maxTokens, so the runs measure speed comparably.
  return startGeneration({ ...loaded, eosIds: [] }, { prompt: prompt.text, maxTokens, sampling, ppd }).complete();
}

const sameIds = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((id, i) => id === b[i]);

/** All runs of one prompt, interleaved round by round; per decoder its results in repeat order. */
async function runPrompt(loaded: LoadedModel, setups: Setups, prompt: Prompt, plan: Plan, progress: Progress): Promise<Map<DecoderId, GenerationResult[]>> {
  const results = new Map<DecoderId, GenerationResult[]>(DECODERS.map((d) => [d.id, []]));
  for (let round = 0; round < plan.repeats; round++) {
    // Reversing every other round: neither side of a pair always runs right after the other.
    const order = (prompt.number + round) % 2 === 1 ? DECODERS : [...DECODERS].reverse();
    for (const decoder of order) {
      results.get(decoder.id)!.push(await generate(loaded, setups, decoder, prompt, plan.maxTokens));
      progress.tick();
    }
  }
  return results;
}

function runResult(results: GenerationResult[]): RunResult {
  const first = results[0]!;
  const secondsPerRepeat = results.map((r) => r.stats.seconds);
  const seconds = spread(secondsPerRepeat).medianMs; // spread() takes any unit
  return {
    newTokens: first.stats.newTokens,
    steps: first.stats.steps,
    tau: first.stats.tau,
    tauPerStep: first.stats.steps > 1 ? (first.stats.newTokens - 1) / (first.stats.steps - 1) : first.stats.tau,
    finishReason: first.stats.finishReason,
    seconds,
    secondsPerRepeat,
    tokensPerSecond: seconds > 0 ? first.stats.newTokens / seconds : 0,
    reproducible: results.every((r) => sameIds(r.ids, first.ids)),
    distinctFourGrams: distinctNgramShare(first.ids, 4),
  };
}

// ---------------------------------------------------------------------------------------------
// Aggregates, memory, training record, targets.

const mean = (xs: number[]) => xs.reduce((sum, x) => sum + x, 0) / xs.length;
const sum = (xs: number[]) => xs.reduce((total, x) => total + x, 0);

function aggregate(prompts: PromptComparison[]): Aggregate {
  const speedups = prompts.map((p) => p.speedup);
  const rate = (runs: RunResult[]) => sum(runs.map((r) => r.newTokens)) / sum(runs.map((r) => r.seconds));
  const plainTokensPerSecond = rate(prompts.map((p) => p.plain));
  const ppdTokensPerSecond = rate(prompts.map((p) => p.ppd));
  return {
    speedupMedian: spread(speedups).medianMs,
    speedupMean: mean(speedups),
    speedupMin: Math.min(...speedups),
    speedupMax: Math.max(...speedups),
    plainTokensPerSecond,
    ppdTokensPerSecond,
    overallSpeedup: ppdTokensPerSecond / plainTokensPerSecond,
    tauMean: mean(prompts.map((p) => p.ppd.tauPerStep)),
    tauOverall: sum(prompts.map((p) => p.ppd.newTokens - 1)) / sum(prompts.map((p) => p.ppd.steps - 1)),
    identicalOutputs: prompts.filter((p) => p.identical).length,
    plainDistinctFourGramsMedian: spread(prompts.map((p) => p.plain.distinctFourGrams)).medianMs,
  };
}

function firstMismatch(decoding: ComparisonName, prompt: Prompt, plain: readonly number[], ppd: readonly number[]): Mismatch {
  let position = 0;
  while (position < Math.min(plain.length, ppd.length) && plain[position] === ppd[position]) position++;
  return { decoding, prompt: prompt.number, document: prompt.document, position, plainId: plain[position] ?? null, ppdId: ppd[position] ?? null, plainTokens: plain.length, ppdTokens: ppd.length };
}

/** A tree set the benchmark decoded with, as the report records it. */
interface TreesRecord {
  file: string;
  /** This machine's calibration chose no prompt-token rows here, so trees.json stands in. */
  plainChosen: boolean;
  budget: number;
  topK: number;
  expectedTokensPerStep: number;
  rowsPerTree: number[];
}

/** The record of a setup's trees (loadGuessingPpdSetup's answer). */
function treesRecord({ setup, plainChosen }: { setup: PpdSetup; plainChosen: boolean }, adapterDir: string): TreesRecord {
  return {
    file: repoPath(setup.treesFile ?? join(adapterDir, TREES_FILE)),
    plainChosen,
    budget: setup.trees.budget,
    topK: setup.trees.topK,
    expectedTokensPerStep: setup.trees.expectedTokensPerStep,
    rowsPerTree: setup.trees.trees.map((tree) => treeRows(tree, setup.adapter.virtualTokens)),
  };
}

/** A tree set for the report; `chosenInstead` says what the calibration had chosen where trees.json stands in. */
function treesText(t: TreesRecord, chosenInstead: string): string {
  const standIn = t.plainChosen ? ` (this machine's calibration chose ${chosenInstead}, so these default trees stand in)` : '';
  return `\`${t.file}\`: budget ${t.budget} rows, top-${t.topK}, rows per tree (d = 0..N) ${t.rowsPerTree.join(', ')}, expected ${fmt(t.expectedTokensPerStep, 2)} tokens/step${standIn}`;
}

/** What PPD keeps in memory besides the model: the prompt embeddings and each tree's step buffers. */
function memoryOverhead(loaded: LoadedModel, setup: PpdSetup): MemoryOverhead {
  const { promptTokens, virtualTokens, attention } = setup.adapter.config;
  const int32 = 4;
  const trees = setup.trees.trees.map((tree): TreeBufferSize => {
    const b = compileTree(tree, { promptTokens, virtualTokens, attention });
    const indexEntries =
      b.rows + // positionOffset [R]
      b.nodeRows.length + // [M]
      4 * b.source.length + // kind, node and two more fields per row
      sum(b.retrievePaths.map((path) => path.length)) +
      sum(b.promptRows.map((perNode) => sum(perNode.map((virtualRows) => virtualRows.length)))) +
      3 * b.guesses.length; // row, depth, rank
    return { guessDepth: tree.guessDepth, rows: b.rows, nodes: b.nodeRows.length, maskBytes: b.mask.byteLength, indexBytes: indexEntries * int32 };
  });
  const adapterBytes = setup.adapter.trainableParameters * Float32Array.BYTES_PER_ELEMENT;
  const treeBufferBytes = sum(trees.map((t) => t.maskBytes + t.indexBytes));
  const weightBytes = parameterCount(loaded.config) * Float32Array.BYTES_PER_ELEMENT;
  return { adapterBytes, trees, treeBufferBytes, overheadBytes: adapterBytes + treeBufferBytes, weightBytes, share: (adapterBytes + treeBufferBytes) / weightBytes };
}

function trainingRecord(loaded: LoadedModel, setup: PpdSetup): TrainingRecord {
  const { parameters, share } = setup.adapter.parameterShare(loaded.config);
  const record = setup.adapter.config.training ?? {};
  const numberOrNull = (field: string) => (typeof record[field] === 'number' ? (record[field] as number) : null);
  return { trainableParameters: parameters, shareOfBase: share, trainSeconds: numberOrNull('trainSeconds'), wallSeconds: numberOrNull('wallSeconds'), steps: numberOrNull('steps') };
}

function comparisonNamed(comparisons: readonly Comparison[], name: ComparisonName): Comparison {
  return comparisons.find((c) => c.name === name)!;
}

/** The issue's targets for PPD as the paper has it (prompt tokens alone), and the same two with the context lookup added. */
function targets(greedy: Aggregate, withLookup: Aggregate, memory: MemoryOverhead): TargetResult[] {
  const target = (name: string, value: number, comparison: '>=' | '<=', threshold: number, unit: TargetResult['unit']): TargetResult => ({
    name,
    value,
    comparison,
    threshold,
    unit,
    pass: comparison === '>=' ? value >= threshold : value <= threshold,
  });
  return [
    target('τ, greedy PPD (tokens per step, mean over prompts)', greedy.tauMean, '>=', TARGETS.tau, 'tokens/step'),
    target('speedup, greedy (median over prompts)', greedy.speedupMedian, '>=', TARGETS.speedup, 'x'),
    target('τ, greedy PPD + context lookup (not PPD alone)', withLookup.tauMean, '>=', TARGETS.tau, 'tokens/step'),
    target(TARGET_NAMES.speedupWithLookup, withLookup.speedupMedian, '>=', TARGETS.speedup, 'x'),
    target('memory overhead, share of the f32 weights', memory.share, '<=', TARGETS.memoryShare, 'share'),
    target(TARGET_NAMES.tauAlone, greedy.tauMean, '>=', MODEL_TARGETS.tauAlone, 'tokens/step'),
    target(TARGET_NAMES.speedupAlone, greedy.speedupMedian, '>=', MODEL_TARGETS.speedupAlone, 'x'),
    target(TARGET_NAMES.distinctFourGrams, greedy.plainDistinctFourGramsMedian, '>=', MODEL_TARGETS.distinctFourGrams, 'share'),
  ];
}

// ---------------------------------------------------------------------------------------------
// Report: Markdown, JSON and the chart.

const percent = (share: number) => `${(share * 100).toPrecision(2)} %`;
const shown = (value: number, unit: TargetResult['unit']) => (unit === 'share' ? percent(value) : unit === 'x' ? `${fmt(value, 2)}×` : fmt(value, 2));

function identityLine(r: PpdBenchReport): string {
  const g = r.greedyIdentity;
  if (g.mismatches.length === 0) return `**Greedy PPD output is identical to plain greedy decoding in all ${g.runs} greedy runs** (every prompt, with and without context lookup; token ids compared).`;
  const where = g.mismatches.map((m) => `${m.decoding}, prompt ${m.prompt} at token ${m.position} (plain ${m.plainId ?? 'end'}, PPD ${m.ppdId ?? 'end'})`).join('; ');
  return `**⚠ GREEDY MISMATCH: PPD output differs from plain greedy decoding in ${g.mismatches.length} of ${g.runs} greedy runs** — ${where}. This is a bug: greedy PPD must reproduce plain decoding exactly.`;
}

function markdown(r: PpdBenchReport): string {
  const named = (name: ComparisonName) => comparisonNamed(r.comparisons, name);
  const [greedy, withLookup, lookupAlone] = GREEDY_COMPARISONS.map(named) as [Comparison, Comparison, Comparison];
  const [rejection, rejectionLookup, typical] = [named('sampling, rejection verification'), named('sampling, rejection verification + context lookup'), named('sampling, typical acceptance')];
  const w = r.workload;
  const m = r.memory;
  const t = r.training;
  const unreproducible = r.comparisons.flatMap((c) => c.prompts.filter((p) => !p.plain.reproducible || !p.ppd.reproducible).map((p) => `${c.name} prompt ${p.prompt}`));
  const aggregateRow = (c: Comparison) =>
    `| ${c.name} | ${fmt(c.aggregate.plainTokensPerSecond)} | ${fmt(c.aggregate.ppdTokensPerSecond)} | ${fmt(c.aggregate.speedupMedian, 2)}× | ${fmt(c.aggregate.speedupMean, 2)}× ` +
    `[${fmt(c.aggregate.speedupMin, 2)}–${fmt(c.aggregate.speedupMax, 2)}] | ${fmt(c.aggregate.overallSpeedup, 2)}× | ${fmt(c.aggregate.tauMean, 2)} | ${c.aggregate.identicalOutputs}/${c.prompts.length} |`;
  const lines = [
    '# PPD benchmark',
    '',
    `Command: \`${r.command}\` (${r.mode} run, ${r.date}, ${fmt(r.durationSeconds, 0)} s). Data: \`ppd.json\` (schema \`${r.schema}\`, see \`bench/ppd.ts\`).`,
    '',
    identityLine(r),
    '',
    '## Targets',
    '',
    '| target | value | threshold | result |',
    '| --- | --- | --- | --- |',
    ...r.targets.map((x) => `| ${x.name} | ${shown(x.value, x.unit)} | ${x.comparison} ${shown(x.threshold, x.unit)} | ${x.pass ? 'pass' : '**fail**'} |`),
    '',
    '## Speed, all prompts',
    '',
    'Tokens/s overall = Σ new tokens / Σ seconds. Speedup per prompt = PPD tokens/s / plain tokens/s; its median, mean [min–max] over prompts. ' +
      'τ = tokens per decoding step, the prompt\'s forward and its one token left out (as the paper counts it), mean over prompts. Identical: prompts where PPD produced exactly the plain ids ' +
      '(required for greedy; with sampling the two draw differently, so they differ by design).',
    '',
    '| decoding | plain tok/s | PPD tok/s | speedup median | speedup mean [min–max] | overall speedup | τ | identical |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...r.comparisons.map(aggregateRow),
    '',
    `Rejection verification keeps the model's sampling distribution exactly; typical acceptance (ε = 0.09, δ = 0.3 as in the PPD reference) accepts more but does not. ` +
      'The rows without the lookup decode with the trees this machine\'s calibration chose for the prompt tokens alone (what `generate --ppd --lookup 0` takes); ' +
      `"+ context lookup": the trees it chose beside the lookup (see Model and adapter) plus a chain of up to ${DEFAULT_LOOKUP_TOKENS} guesses per step copied from where the last tokens occurred before in the prompt or output ` +
      '(`src/ppd/lookup.ts`; what `generate --ppd` adds by default); "context lookup alone": that chain with a root-only tree (no prompt-token rows). ' +
      'The targets are about PPD as the paper has it, the first row.',
    '',
    '## Greedy, per prompt',
    '',
    `![greedy speedup and τ per prompt](${SVG_NAME})`,
    '',
    '| prompt | document | prompt tokens | new tokens plain / PPD | plain tok/s | PPD tok/s | speedup | τ | + lookup: speedup | τ | lookup alone: speedup | τ | identical (3 runs) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...greedy.prompts.map((p, i) => {
      const [l, a] = [withLookup.prompts[i]!, lookupAlone.prompts[i]!];
      return (
        `| ${p.prompt} | ${p.document} | ${p.promptTokens} | ${p.plain.newTokens} / ${p.ppd.newTokens} | ${fmt(p.plain.tokensPerSecond)} | ${fmt(p.ppd.tokensPerSecond)} | ` +
        `${fmt(p.speedup, 2)}× | ${fmt(p.ppd.tauPerStep, 2)} | ${fmt(l.speedup, 2)}× | ${fmt(l.ppd.tauPerStep, 2)} | ${fmt(a.speedup, 2)}× | ${fmt(a.ppd.tauPerStep, 2)} | ` +
        `${[p, l, a].every((x) => x.identical) ? 'yes' : '**NO**'} |`
      );
    }),
    '',
    `## Sampling (temperature ${w.sampling.temperature}, top-p ${w.sampling.topP}), per prompt`,
    '',
    '| prompt | plain tok/s | rejection tok/s | speedup | τ | + lookup tok/s | speedup | τ | typical tok/s | speedup | τ |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rejection.prompts.map((p, i) => {
      const [rl, ty] = [rejectionLookup.prompts[i]!, typical.prompts[i]!];
      return (
        `| ${p.prompt} | ${fmt(p.plain.tokensPerSecond)} | ${fmt(p.ppd.tokensPerSecond)} | ${fmt(p.speedup, 2)}× | ${fmt(p.ppd.tauPerStep, 2)} | ` +
        `${fmt(rl.ppd.tokensPerSecond)} | ${fmt(rl.speedup, 2)}× | ${fmt(rl.ppd.tauPerStep, 2)} | ${fmt(ty.ppd.tokensPerSecond)} | ${fmt(ty.speedup, 2)}× | ${fmt(ty.ppd.tauPerStep, 2)} |`
      );
    }),
    '',
    '## Model and adapter',
    '',
    '| | |',
    '| --- | --- |',
    `| model | \`${r.model.dir}\`: ${fmt(r.model.parameters / 1e6, 2)}M parameters (C = ${r.model.hiddenSize}, ${r.model.layers} layers, vocabulary ${r.model.vocabSize}), f32 |`,
    `| adapter | \`${r.adapter.dir}\`: N = ${r.adapter.promptTokens} prompt tokens × Vt = ${r.adapter.virtualTokens}, ${r.adapter.attention} attention |`,
    `| trees, prompt tokens alone | ${treesText(r.adapter.trees, 'prompt tokens alone')} |`,
    `| trees, + context lookup | ${treesText(r.adapter.treesWithLookup, 'a lookup chain alone')} |`,
    '',
    '## Memory overhead',
    '',
    `PPD keeps the prompt embeddings (N·Vt·C f32) and, per tree of the dynamic set, its compiled step buffers: the [R, R] u8 mask and the index arrays ` +
      `(positions, node rows, row sources, retrieval paths, prompt rows, guess slots), counted as int32. The per-step [R, P+R] mask and the step's keys/values are transient and not counted.`,
    '',
    '| what | bytes |',
    '| --- | --- |',
    `| prompt embeddings (and prompt head) | ${bytes(m.adapterBytes)} |`,
    ...m.trees.map((tb) => `| tree d = ${tb.guessDepth} (R = ${tb.rows}, M = ${tb.nodes}): mask + index | ${bytes(tb.maskBytes)} + ${bytes(tb.indexBytes)} |`),
    `| **total** | **${bytes(m.overheadBytes)}** (${m.overheadBytes} B) |`,
    `| model weights, f32 | ${bytes(m.weightBytes)} |`,
    `| **overhead / weights** | **${percent(m.share)}** |`,
    '',
    '## Training',
    '',
    `${t.trainableParameters} trainable parameters, ${percent(t.shareOfBase)} of the base model. ` +
      (t.wallSeconds === null
        ? 'The adapter has no training record.'
        : `Training (from the adapter's record): ${t.steps ?? '?'} steps, ${fmt(t.trainSeconds ?? 0, 0)} s of optimisation, ${fmt(t.wallSeconds, 0)} s wall time in all (teacher set included).`),
    '',
    '## How it was measured',
    '',
    `${w.prompts.length} prompts: the openings of documents ${w.prompts.map((p) => p.document).join(', ')} of \`${w.corpusFile}\`${BUNDLED_CORPORA.some((c) => repoPath(heldOutFile(c)) === w.corpusFile) ? ' (held out from training)' : ''}, evenly spaced over the file, ` +
      `each cut at a sentence or word end to ${w.promptTokens.min}–${w.promptTokens.max} tokens (mean ${fmt(w.promptTokens.mean)}). ` +
      `Up to ${w.maxTokens} new tokens each; EOS ends a generation early. Sampling seeds: ${w.sampling.seedOfPrompt}. ` +
      `One warm-up generation (${w.warmupTokens} tokens) per decoder, then per prompt ${w.repeats} round${w.repeats === 1 ? '' : 's'} of the ${DECODERS.length} decoders, interleaved ` +
      `(${DECODERS.map((d) => d.id).join(', ')}; reversed every other round); a run's time is the median of its rounds, end to end with the prefill.` +
      (unreproducible.length > 0 ? ` **Repeats produced different ids for ${unreproducible.join(', ')}**: decoding should be deterministic.` : ' Every repeat reproduced its ids.'),
    '',
    ...machineSection(r.machine, r.load),
  ];
  if (r.load.otherCores !== null && r.load.otherCores > BUSY_MACHINE_CORES) {
    lines.push(`**Warning:** other processes used ${otherCpu(r.load)} during the timed runs; the figures understate ppd. Rerun on an idle machine.`, '');
  }
  return lines.join('\n');
}

function writeReport(report: PpdBenchReport, outDir: string): Promise<string[]> {
  const [greedy, withLookup, lookupAlone] = GREEDY_COMPARISONS.map((name) => comparisonNamed(report.comparisons, name)) as [Comparison, Comparison, Comparison];
  return writeReportFiles(outDir, 'ppd', report, markdown(report), SVG_NAME, {
    title: `Greedy PPD, with and without context lookup, per prompt (${report.machine.threadsUsed} threads)`,
    mark: 'bar',
    x: { title: 'prompt' },
    y: { title: 'speedup (×) / τ (tokens per step)' },
    series: [
      // Short names: the legend cuts long ones.
      { name: 'PPD, speedup ×', points: greedy.prompts.map((p) => ({ x: p.prompt, y: p.speedup })) },
      { name: 'PPD, τ', points: greedy.prompts.map((p) => ({ x: p.prompt, y: p.ppd.tauPerStep })) },
      { name: 'PPD+lookup, ×', points: withLookup.prompts.map((p) => ({ x: p.prompt, y: p.speedup })) },
      { name: 'lookup alone, ×', points: lookupAlone.prompts.map((p) => ({ x: p.prompt, y: p.speedup })) },
    ],
    yRules: [
      { y: TARGETS.speedup, label: `speedup target ${TARGETS.speedup}×` },
      { y: TARGETS.tau, label: `τ target ${TARGETS.tau}` },
    ],
  });
}

// ---------------------------------------------------------------------------------------------
// Main.

async function main(argv: string[]): Promise<void> {
  const plan = planFromArgs(argv);
  const date = new Date().toISOString();
  const started = performance.now();
  const machine = describeMachine(plan.threads);
  const loaded = await loadModel(plan.modelDir, { threads: plan.threads, needsTokenizer: true, promptHead: promptHeadOf(plan.adapterDir) });
  try {
    // The machine's calibrated trees, without and with the lookup; trees.json where the calibration chose no prompt-token rows.
    const alone = loadGuessingPpdSetup(loaded.config, plan.adapterDir, { threads: plan.threads, ngram: 'off', lookup: 0 });
    const withLookup = loadGuessingPpdSetup(loaded.config, plan.adapterDir, { threads: plan.threads, ngram: 'off', onNotice: () => {} });
    const setups: Setups = { alone: alone.setup, withLookup: withLookup.setup };
    const setup = alone.setup;
    const prompts = selectPrompts(loaded, plan.prompts, plan.promptFile);
    process.stderr.write(
      `PPD benchmark (${plan.mode}): ${repoPath(plan.modelDir)} + ${repoPath(plan.adapterDir)}, ${prompts.length} prompts × ${plan.maxTokens} tokens × ${plan.repeats} repeat${plan.repeats === 1 ? '' : 's'}, ` +
        `${machine.cpuModel}, ${machine.cores} cores, ${plan.threads} threads, ORT ${machine.onnxruntime}\n`,
    );
    await warnIfBusy();

    const warmup = new Progress('warm-up', DECODERS.length, 'runs');
    for (const decoder of DECODERS) {
      await generate(loaded, setups, decoder, prompts[0]!, Math.min(WARMUP_TOKENS, plan.maxTokens));
      warmup.tick();
    }
    warmup.stop();

    const endTimed = watchLoad();
    const progress = new Progress('generations', prompts.length * plan.repeats * DECODERS.length, 'runs');
    const perPrompt: Map<DecoderId, GenerationResult[]>[] = [];
    for (const prompt of prompts) perPrompt.push(await runPrompt(loaded, setups, prompt, plan, progress));
    const load = endTimed();

    const comparisons: Comparison[] = COMPARISONS.map((c) => {
      const rows = prompts.map((prompt, i): PromptComparison => {
        const plain = perPrompt[i]!.get(c.plain)!;
        const ppd = perPrompt[i]!.get(c.ppd)!;
        const plainRun = runResult(plain);
        const ppdRun = runResult(ppd);
        return {
          prompt: prompt.number,
          document: prompt.document,
          promptTokens: plain[0]!.stats.promptTokens,
          plain: plainRun,
          ppd: ppdRun,
          speedup: ppdRun.tokensPerSecond / plainRun.tokensPerSecond,
          identical: sameIds(plain[0]!.ids, ppd[0]!.ids),
        };
      });
      const sampling = c.name === 'greedy' ? GREEDY : SAMPLING;
      return { ...c, sampling, prompts: rows, aggregate: aggregate(rows) };
    });
    const greedy = comparisonNamed(comparisons, 'greedy');
    const greedyRuns = comparisons.filter((c) => GREEDY_COMPARISONS.includes(c.name));
    const mismatches = greedyRuns.flatMap((c) =>
      c.prompts
        .filter((p) => !p.identical)
        .map((p) => firstMismatch(c.name, prompts[p.prompt - 1]!, perPrompt[p.prompt - 1]!.get(c.plain)![0]!.ids, perPrompt[p.prompt - 1]!.get(c.ppd)![0]!.ids)),
    );
    progress.stop(`greedy speedup ${fmt(greedy.aggregate.speedupMedian, 2)}× (median), τ ${fmt(greedy.aggregate.tauMean, 2)}`);

    const memory = memoryOverhead(loaded, setup);
    const promptTokens = greedy.prompts.map((p) => p.promptTokens);
    const { promptTokens: N, virtualTokens: Vt } = setup.adapter.config;
    const report: PpdBenchReport = {
      schema: 'ppd.bench.ppd/2',
      mode: plan.mode,
      command: `npm run bench:ppd${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`,
      date,
      durationSeconds: (performance.now() - started) / 1000,
      machine,
      model: {
        dir: repoPath(plan.modelDir),
        parameters: parameterCount(loaded.config),
        weightBytes: memory.weightBytes,
        hiddenSize: loaded.config.hiddenSize,
        layers: loaded.config.numLayers,
        vocabSize: loaded.config.vocabSize,
      },
      adapter: {
        dir: repoPath(plan.adapterDir),
        promptTokens: N,
        virtualTokens: Vt,
        attention: setup.adapter.config.attention,
        trees: treesRecord(alone, plan.adapterDir),
        treesWithLookup: treesRecord(withLookup, plan.adapterDir),
      },
      workload: {
        corpusFile: repoPath(plan.promptFile),
        prompts: prompts.map((p) => ({ prompt: p.number, document: p.document, tokens: p.tokens, text: p.text })),
        promptTokens: { min: Math.min(...promptTokens), max: Math.max(...promptTokens), mean: mean(promptTokens) },
        maxTokens: plan.maxTokens,
        repeats: plan.repeats,
        warmupTokens: Math.min(WARMUP_TOKENS, plan.maxTokens),
        sampling: { ...SAMPLING, seedOfPrompt: `${SEED_BASE} + prompt number, the same for every decoder and repeat` },
      },
      greedyIdentity: { runs: greedyRuns.length * prompts.length, identical: sum(greedyRuns.map((c) => c.aggregate.identicalOutputs)), mismatches },
      comparisons,
      memory,
      training: trainingRecord(loaded, setup),
      targets: targets(greedy.aggregate, comparisonNamed(comparisons, 'greedy, PPD + context lookup').aggregate, memory),
      load,
    };
    const paths = await writeReport(report, plan.outDir);

    for (const c of comparisons) {
      console.log(
        `${c.name}: ${fmt(c.aggregate.plainTokensPerSecond)} -> ${fmt(c.aggregate.ppdTokensPerSecond)} tokens/s, speedup ${fmt(c.aggregate.speedupMedian, 2)}× median ` +
          `(${fmt(c.aggregate.speedupMean, 2)}× mean), τ ${fmt(c.aggregate.tauMean, 2)}`,
      );
    }
    console.log(`memory overhead ${percent(memory.share)} of the weights; targets: ${report.targets.map((x) => `${x.name} ${x.pass ? 'pass' : 'FAIL'}`).join('; ')}`);
    for (const path of paths) console.log(`wrote ${shownPath(path)}`);
    if (mismatches.length > 0) {
      process.stderr.write(`error: greedy PPD output differs from plain greedy decoding on ${mismatches.length} of ${prompts.length} prompts (prompts ${mismatches.map((x) => x.prompt).join(', ')}); see the report\n`);
      process.exitCode = 1;
    }
  } finally {
    await loaded.model.release();
  }
}

await runBenchmark(main);
