/**
 * `npm run bench:llamacpp`: ppd against llama.cpp (node-llama-cpp 3.21.1) on the same GGUF file,
 * the same prompt ids and the same machine, in one run.
 *
 * The model (default: the bundled models/ppd-base) is converted once per weight type with
 * `ppd convert --to gguf` into a cache folder; both engines then load that file. Decoders, all
 * greedy, each producing exactly --max-tokens new ids per prompt (EOS ignored on both sides, so
 * every run does the same work):
 *
 *   llama.cpp           plain decoding
 *   llama.cpp + draft   its DraftSequenceTokenPredictor with the draft model's GGUF (default
 *                       models/ppd-draft), node-llama-cpp's default settings
 *   llama.cpp + lookup  its InputLookupTokenPredictor (prompt lookup), default settings
 *   ppd                 plain decoding
 *   ppd + PPD           Parallel Prompt Decoding's prompt tokens alone, with the adapter's trees
 *                       for this machine (its calibrated profile, else trees.json; where the
 *                       profile chose no prompt-token rows, trees.json; see src/ppd/setup.ts)
 *   ppd --ppd           what `generate --ppd` decodes with here: the calibrated profile's trees
 *                       and context lookup (src/ppd/lookup.ts), else trees.json and lookup 8
 *
 * `--shape NAME` runs a random-weight model of a real checkpoint's shape (bench/shapes/NAME.json:
 * Llama-3.2-1B, Qwen2.5-0.5B), written once under runs/ by `ppd init --random` as a user would,
 * with an untrained adapter (prompt tokens initialised from token embeddings, trees from the tree
 * builder's prior guess): its `ppd --ppd` row is what `generate --ppd` does for a new adapter,
 * the context lookup being the only guesser that can be right on random weights.
 *
 * Per weight type and thread count: tokens/s (Σ tokens / Σ median seconds over the prompts),
 * ratios to llama.cpp plain, and greedy agreement with ppd's plain ids (the first divergence
 * when any). Beside the decoders, both engines' single forwards, taking turns round by round:
 * prefill (PREFILL_ROWS prompt rows from an empty cache) and L(T), T rows over a past of
 * PAST_ROWS rows, for T = 1..32 (llama.cpp: one llama_decode of the batch, erased after); and
 * each engine's resident memory after loading the file and running a warm-up, each in a process
 * of its own (bench/memory-probe.ts: RSS growth, anonymous and file-backed parts). Note that node-llama-cpp restarts llama.cpp's compute threads on every evaluation
 * call, which costs small models much; single-thread figures are reported too for that reason.
 * Results: docs/bench/llamacpp.{json,md,svg} (llamacpp-<folder>.* for another --model). With
 * --add, the run's configurations (--types x --thread-counts) join those already in that report,
 * replacing any of the same type and thread count, so a large model can be measured one
 * configuration per run (ratios are only taken within a configuration). --prepare does the
 * untimed work alone (the random model, its GGUF files, their compiled graphs) and exits, so that
 * it can run outside an exclusive CPU lock.
 */
import { promptHeadOf } from '../src/ppd/adapter-files.ts';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { InputError } from '../src/errors.ts';
import { promptIds, startGeneration } from '../src/generate/request.ts';
import { loadModel, type LoadedModel } from '../src/checkpoint/load.ts';
import { tokenizerOf } from '../src/checkpoint/loaded-model.ts';
import { openModelDir } from '../src/checkpoint/model-dir.ts';
import { EMBED_TOKENS } from '../src/model/weights.ts';
import { PromptAdapter } from '../src/ppd/adapter.ts';
import { saveAdapter } from '../src/ppd/adapter-files.ts';
import { saveTreeSet } from '../src/ppd/tree-files.ts';
import { buildTreeSet, priorAccuracyTable } from '../src/ppd/tree-builder.ts';
import { parameterCount } from '../src/model/config.ts';
import { DEFAULT_TREE_BUDGET, loadGuessingPpdSetup, loadPpdSetup, TREES_FILE, type PpdSetup } from '../src/ppd/setup.ts';
import { Progress } from '../src/report/progress.ts';
import { defaultCacheDir } from '../src/runtime/compile.ts';
import {
  BUSY_MACHINE_CORES,
  bytes,
  describeMachine,
  fmt,
  machineSection,
  otherCpu,
  parseBenchArgs,
  positiveInt,
  range,
  REPO_ROOT,
  repoPath,
  runBenchmark,
  shapeConfigFile,
  tokenIds,
  writeReportFiles,
  shownPath,
  warnIfBusy,
  watchLoad,
  type Machine,
  type PhaseLoad,
  type Resident,
} from './harness.ts';
import { spread, timeInRounds, type Spread } from '../src/report/timing.ts';
import { DRAFT_DEFAULTS, LlamaCppPeer, type Predictor } from './peers/llamacpp.ts';
import { FILE_TYPES, type FileType } from '../src/checkpoint/gguf-mixes.ts';
import { KVCache } from '../src/model/kv-cache.ts';
import { causalMask, type LlamaModel } from '../src/model/llama-model.ts';
import { heldOutTextFor, selectPrompts, type Prompt } from './prompts.ts';

// ---------------------------------------------------------------------------------------------
// Report schema (docs/bench/llamacpp.json).

/** `ppd convert --type`'s names (llama-quantize's: q8_0, q4_k_m, ...). */
export type WeightType = Lowercase<FileType>;
const WEIGHT_TYPES = FILE_TYPES.map((t) => t.toLowerCase() as WeightType);

export type DecoderId = 'llama.cpp' | 'llama.cpp + draft' | 'llama.cpp + lookup' | 'ppd' | 'ppd + PPD' | 'ppd --ppd';

interface Decoder {
  id: DecoderId;
  engine: 'llama.cpp' | 'ppd';
  predictor?: Predictor;
  /** ppd's PPD setup: the prompt tokens alone ('guessing'), or as `generate --ppd` runs ('product'). */
  ppd?: 'guessing' | 'product';
}

const ALL_DECODERS: readonly Decoder[] = [
  { id: 'llama.cpp', engine: 'llama.cpp', predictor: 'none' },
  { id: 'llama.cpp + draft', engine: 'llama.cpp', predictor: 'draft' },
  { id: 'llama.cpp + lookup', engine: 'llama.cpp', predictor: 'lookup' },
  { id: 'ppd', engine: 'ppd' },
  { id: 'ppd + PPD', engine: 'ppd', ppd: 'guessing' },
  { id: 'ppd --ppd', engine: 'ppd', ppd: 'product' },
];

export interface DecoderResult {
  decoder: DecoderId;
  tokensPerSecond: number;
  /** Over llama.cpp plain decoding's tokens/s in the same configuration. */
  overLlamaCpp: number;
  /** Prompts whose ids equal ppd plain decoding's. */
  agreeing: number;
  /** The first prompt that diverged from ppd plain decoding, where. */
  firstDivergence: { prompt: number; position: number; ours: number; theirs: number } | null;
  /** llama.cpp predictors: predicted tokens validated / refuted; PPD: mean accepted tokens per step. */
  validated?: number;
  refuted?: number;
  tau?: number;
}

/** One engine's single forwards: prefill from an empty cache, and L(T) over a fixed past. */
export interface ForwardTimes {
  prefill: Spread;
  prefillTokensPerSecond: number;
  /** By T, the first T = 1; ratioToT1 = median L(T) / median L(1). */
  latency: { T: number; latency: Spread; ratioToT1: number }[];
}

export interface ConfigurationResult {
  weightType: WeightType;
  threads: number;
  /** The run that measured this configuration (with --add, configurations come from several runs). */
  run: { command: string; date: string };
  /** RSS growth while each engine loaded the file and ran a warm-up, each in a fresh process (memory-probe.ts). */
  memory: { ppd: Resident; llamaCpp: Resident };
  /** Both engines' forwards, taking turns (see the file header). */
  forwards: { prefillRows: number; pastRows: number; repeats: number; ppd: ForwardTimes; llamaCpp: ForwardTimes; load: PhaseLoad };
  gguf: { file: string; bytes: number };
  draftGguf: { file: string; bytes: number } | null;
  /** The trees 'ppd + PPD' decoded with; plainChosen: this machine's calibration picked no prompt-token rows, so trees.json stands in. */
  ppdTrees: { file: string; budget: number; plainChosen: boolean } | null;
  /** What 'ppd --ppd' decoded with: the trees and context-lookup tokens per step. */
  product: { file: string; budget: number; lookup: number } | null;
  results: DecoderResult[];
  load: PhaseLoad;
}

export interface LlamaCppBenchReport {
  schema: 'ppd.bench.llamacpp/3';
  /** The reports' file name: llamacpp for the bundled model, llamacpp-<folder> for another. */
  name: string;
  mode: 'full' | 'quick';
  command: string;
  date: string;
  durationSeconds: number;
  machine: Machine;
  peer: { package: 'node-llama-cpp'; version: string; draft: typeof DRAFT_DEFAULTS };
  model: { dir: string; parameters: number; draftDir: string | null; shape?: string };
  adapter: { dir: string } | null;
  workload: { corpusFile: string; prompts: { prompt: number; document: number; tokens: number }[]; maxTokens: number; repeats: number };
  configurations: ConfigurationResult[];
  targets: { name: string; target: string; measured: string; met: boolean }[];
}

// ---------------------------------------------------------------------------------------------
// Plan.

interface Plan {
  name: string;
  /** bench/shapes/<shape>.json when the model is a random one of a real shape. */
  shape: string | undefined;
  mode: 'full' | 'quick';
  outDir: string;
  modelDir: string;
  adapterDir: string | undefined;
  draftDir: string | undefined;
  types: WeightType[];
  threadCounts: number[];
  prompts: number;
  maxTokens: number;
  repeats: number;
  /** Timed rounds of the single forwards (prefill, L(T)). */
  forwardRepeats: number;
  /** --add: keep the report's configurations of other types and thread counts (one configuration per run). */
  add: boolean;
  /** --prepare: write the files the run needs and compile their graphs, measure nothing. */
  prepare: boolean;
}

const DEFAULT_MODEL = join(REPO_ROOT, 'models', 'ppd-base');
const DEFAULT_DRAFT = join(REPO_ROOT, 'models', 'ppd-draft');
const GGUF_CACHE = () => join(defaultCacheDir(), '..', 'gguf');
const WARMUP_TOKENS = 16;
/** Single forwards: prompt rows of the prefill, past rows and row counts of the L(T) sweep, timed rounds. */
const PREFILL_ROWS = 128;
const PAST_ROWS = 64;
const LATENCY_ROWS = [1, 2, 4, 8, 16, 32];

function list<T>(flag: string, raw: string, parse: (part: string) => T | undefined): T[] {
  const parts = raw.split(',').map((p) => p.trim());
  const values = parts.map(parse);
  const bad = parts.find((_, i) => values[i] === undefined);
  if (bad !== undefined || parts.length === 0) throw new InputError(`--${flag}: cannot use ${JSON.stringify(bad ?? raw)}`);
  return [...new Set(values as T[])];
}

const PPD_CLI = join(REPO_ROOT, 'src', 'cli', 'main.ts');

/**
 * The random-weight model of bench/shapes/`shape`.json: written once under runs/ by `ppd init
 * --random` (F16 on disk, seed 0), with an untrained adapter folder beside it (three prompt
 * tokens initialised from the embeddings of "Next 2 word Next 3 word Next 4 word", trees for
 * DEFAULT_TREE_BUDGET rows from the prior accuracy guess).
 */
function shapeModel(shape: string): string {
  const config = shapeConfigFile(shape, '--shape');
  const dir = join(REPO_ROOT, 'runs', `${shape}-random`);
  if (!existsSync(join(dir, 'model.safetensors'))) {
    execFileSync(process.execPath, ['--import', 'tsx', PPD_CLI, 'init', '--random', '--config', config, '--out', dir, '--dtype', 'f16', '--seed', '0'], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  const adapterDir = join(dir, 'ppd');
  if (!existsSync(join(adapterDir, TREES_FILE))) {
    const files = openModelDir(dir);
    try {
      const tokenizer = tokenizerOf(files)!;
      const initText = 'Next 2 word Next 3 word Next 4 word';
      const adapter = PromptAdapter.initialise(files.config, files.tensors.readF32(EMBED_TOKENS), tokenizer.encode(initText, { addBos: false }), { promptTokens: 3, virtualTokens: 1, attention: 'ensemble', initText });
      saveAdapter(adapter, adapterDir);
      saveTreeSet(join(adapterDir, TREES_FILE), buildTreeSet(priorAccuracyTable(3), { budget: DEFAULT_TREE_BUDGET, promptTokens: 3, accuracySource: 'prior guess (untrained adapter)' }));
    } finally {
      files.tensors.close();
    }
  }
  return dir;
}

function planFromArgs(argv: string[]): Plan {
  const { quick, threads, flags, switches } = parseBenchArgs(argv, ['model', 'shape', 'ppd', 'draft', 'types', 'thread-counts', 'prompts', 'max-tokens', 'repeats'], ['add', 'prepare']);
  if (flags.model !== undefined && flags.shape !== undefined) throw new InputError('--model and --shape: name one model');
  const modelDir = flags.shape !== undefined ? shapeModel(flags.shape) : (flags.model ?? DEFAULT_MODEL);
  if (!existsSync(join(modelDir, 'config.json'))) throw new InputError(`${modelDir}: no Hugging Face model folder here (name one with --model DIR)`);
  const adapterCandidate = flags.ppd ?? join(modelDir, 'ppd');
  if (flags.ppd !== undefined && !existsSync(join(flags.ppd, TREES_FILE))) throw new InputError(`${flags.ppd}: no PPD adapter with ${TREES_FILE} here`);
  const draftCandidate = flags.draft ?? (flags.model === undefined && flags.shape === undefined ? DEFAULT_DRAFT : undefined);
  if (flags.draft !== undefined && !existsSync(join(flags.draft, 'config.json'))) throw new InputError(`${flags.draft}: no draft model folder here`);
  return {
    name: flags.model === undefined && flags.shape === undefined ? 'llamacpp' : `llamacpp-${basename(modelDir)}`,
    shape: flags.shape,
    mode: quick ? 'quick' : 'full',
    outDir: quick ? join(tmpdir(), 'ppd-bench-llamacpp-quick') : join(REPO_ROOT, 'docs', 'bench'),
    modelDir,
    adapterDir: existsSync(join(adapterCandidate, TREES_FILE)) ? adapterCandidate : undefined,
    draftDir: draftCandidate !== undefined && existsSync(join(draftCandidate, 'config.json')) ? draftCandidate : undefined,
    types: flags.types === undefined ? (quick ? ['f32'] : ['f32', 'q8_0']) : list('types', flags.types, (t) => WEIGHT_TYPES.find((w) => w === t)),
    threadCounts:
      flags['thread-counts'] === undefined
        ? quick ? [threads] : [...new Set([threads, 1])]
        : list('thread-counts', flags['thread-counts'], (t) => (/^\d+$/.test(t) && Number(t) >= 1 ? Number(t) : undefined)),
    prompts: positiveInt('prompts', flags.prompts, quick ? 2 : 12),
    maxTokens: positiveInt('max-tokens', flags['max-tokens'], quick ? 16 : 64),
    repeats: positiveInt('repeats', flags.repeats, quick ? 1 : 2),
    forwardRepeats: quick ? 2 : 7,
    add: switches.add === true,
    prepare: switches.prepare === true,
  };
}

// ---------------------------------------------------------------------------------------------
// GGUF files, made by ppd's own converter (the CLI, as a user would run it).

/** `dir` as a GGUF file of `type`, converted once and kept in the cache while the folder is unchanged. */
function ggufOf(dir: string, type: WeightType): { file: string; bytes: number } {
  const weights = join(dir, 'model.safetensors');
  const stamp = existsSync(weights) ? Math.floor(statSync(weights).mtimeMs) : 0;
  const file = join(GGUF_CACHE(), `${basename(dir)}-${stamp}-${type}.gguf`);
  if (!existsSync(file)) {
    mkdirSync(GGUF_CACHE(), { recursive: true });
    execFileSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src', 'cli', 'main.ts'), 'convert', '--model', dir, '--to', 'gguf', '--type', type, '--out', file], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  return { file, bytes: statSync(file).size };
}

// ---------------------------------------------------------------------------------------------
// Runs.

interface Run {
  ids: number[];
  seconds: number;
  validated?: number;
  refuted?: number;
  steps?: number;
}

async function runPpd(loaded: LoadedModel, setup: PpdSetup | undefined, prompt: Prompt, maxTokens: number): Promise<Run> {
  // EOS ignored, as on llama.cpp's side: every run produces exactly maxTokens ids.
  const result = await startGeneration({ ...loaded, eosIds: [] }, { prompt: prompt.text, maxTokens, sampling: { temperature: 0 }, ppd: setup }).complete();
  return { ids: result.ids, seconds: result.stats.seconds, steps: result.stats.steps };
}

async function runDecoder(
  d: Decoder,
  ctx: { loaded: LoadedModel; setups: { guessing?: PpdSetup; product?: PpdSetup }; peer: LlamaCppPeer; ids: Map<number, number[]> },
  prompt: Prompt,
  maxTokens: number,
): Promise<Run> {
  if (d.engine === 'ppd') return runPpd(ctx.loaded, d.ppd === undefined ? undefined : ctx.setups[d.ppd], prompt, maxTokens);
  return ctx.peer.generate(ctx.ids.get(prompt.number)!, maxTokens, [], d.predictor);
}

function firstDivergence(prompt: number, ours: readonly number[], theirs: readonly number[]): DecoderResult['firstDivergence'] {
  const n = Math.max(ours.length, theirs.length);
  for (let i = 0; i < n; i++) if (ours[i] !== theirs[i]) return { prompt, position: i, ours: ours[i] ?? -1, theirs: theirs[i] ?? -1 };
  return null;
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/**
 * An engine's memory after loading `file` and a warm-up, each in a fresh process (memory-probe.ts):
 * this process has loaded models before, whose freed memory a later load would reuse unseen.
 */
function probeMemory(engine: 'ppd' | 'llama.cpp', file: string, threads: number, plan: Plan): Resident {
  const head = engine === 'ppd' ? loadOptions(plan, threads).promptHead : undefined;
  const args = ['--import', 'tsx', join(REPO_ROOT, 'bench', 'memory-probe.ts'), engine, file, String(threads), ...(head === undefined ? [] : [String(head)])];
  return JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })) as Resident;
}

/** How every load of the run opens the model: the same graph each time (one compilation, cached), with the adapter's prompt head. */
const loadOptions = (plan: Plan, threads: number) => ({ threads, needsTokenizer: true, promptHead: plan.adapterDir === undefined ? undefined : promptHeadOf(plan.adapterDir) });

async function runConfiguration(
  plan: Plan,
  run: ConfigurationResult['run'],
  type: WeightType,
  threads: number,
  prompts: Prompt[],
  decoders: readonly Decoder[],
  progress: Progress,
): Promise<ConfigurationResult> {
  const gguf = ggufOf(plan.modelDir, type);
  const draftGguf = plan.draftDir === undefined ? null : ggufOf(plan.draftDir, type);
  const memory = { ppd: probeMemory('ppd', gguf.file, threads, plan), llamaCpp: probeMemory('llama.cpp', gguf.file, threads, plan) };
  const loaded = await loadModel(gguf.file, loadOptions(plan, threads));
  const peer = await LlamaCppPeer.open(gguf.file, { threads, contextSize: 512, draftPath: draftGguf?.file });
  try {
    const guessing = plan.adapterDir === undefined ? undefined : loadGuessingPpdSetup(loaded.config, plan.adapterDir, { threads, lookup: 0, ngram: 'off', onNotice: () => {} });
    const product = plan.adapterDir === undefined ? undefined : loadPpdSetup(loaded.config, plan.adapterDir, { threads, onNotice: () => {} });
    const ctx = { loaded, setups: { guessing: guessing?.setup, product }, peer, ids: new Map(prompts.map((p) => [p.number, promptIds(loaded, p.text)])) };
    for (const d of decoders) await runDecoder(d, ctx, prompts[0]!, WARMUP_TOKENS);

    const runs = new Map<DecoderId, Run[][]>(decoders.map((d) => [d.id, prompts.map(() => [])]));
    const endTimed = watchLoad();
    for (const [p, prompt] of prompts.entries()) {
      for (let round = 0; round < plan.repeats; round++) {
        // Alternate the order: no decoder always runs right after the same other one.
        const order = (p + round) % 2 === 0 ? decoders : [...decoders].reverse();
        for (const d of order) {
          runs.get(d.id)![p]!.push(await runDecoder(d, ctx, prompt, plan.maxTokens));
          progress.tick();
        }
      }
    }
    const load = endTimed();

    const reference = runs.get('ppd')!.map((perPrompt) => perPrompt[0]!.ids);
    const rate = (id: DecoderId) => {
      const perPrompt = runs.get(id)!;
      return sum(perPrompt.map((r) => r[0]!.ids.length)) / sum(perPrompt.map((r) => spread(r.map((x) => x.seconds)).medianMs));
    };
    const llamaRate = rate('llama.cpp');
    const results = decoders.map((d): DecoderResult => {
      const perPrompt = runs.get(d.id)!;
      const divergences = perPrompt.map((r, i) => firstDivergence(prompts[i]!.number, reference[i]!, r[0]!.ids));
      const first = perPrompt.map((r) => r[0]!);
      return {
        decoder: d.id,
        tokensPerSecond: rate(d.id),
        overLlamaCpp: rate(d.id) / llamaRate,
        agreeing: divergences.filter((x) => x === null).length,
        firstDivergence: divergences.find((x) => x !== null) ?? null,
        ...(d.predictor !== undefined && d.predictor !== 'none' ? { validated: sum(first.map((r) => r.validated ?? 0)), refuted: sum(first.map((r) => r.refuted ?? 0)) } : {}),
        ...(d.ppd ? { tau: sum(first.map((r) => r.ids.length - 1)) / sum(first.map((r) => (r.steps ?? 1) - 1)) } : {}),
      };
    });
    const forwards = await timeForwards(loaded.model, peer, plan.forwardRepeats, progress);
    return {
      weightType: type,
      threads,
      run,
      memory,
      forwards,
      gguf: { file: repoPath(gguf.file), bytes: gguf.bytes },
      draftGguf: draftGguf && { file: repoPath(draftGguf.file), bytes: draftGguf.bytes },
      ppdTrees: guessing === undefined ? null : { file: repoPath(guessing.setup.treesFile ?? ''), budget: guessing.setup.trees.budget, plainChosen: guessing.plainChosen },
      product: product === undefined ? null : { file: repoPath(product.treesFile ?? ''), budget: product.trees.budget, lookup: product.lookup ?? 0 },
      results,
      load,
    };
  } finally {
    await peer.close();
    await loaded.model.release();
  }
}

/**
 * Prefill and L(T) of both engines, taking turns round by round (report/timing.ts): ppd's
 * forward returns every row's logits (what verifying a tree needs), llama.cpp's batch only its
 * last row's (what node-llama-cpp asks for), so L(T) at large T slightly favours llama.cpp.
 */
async function timeForwards(model: LlamaModel, peer: LlamaCppPeer, repeats: number, progress: Progress): Promise<ConfigurationResult['forwards']> {
  const V = model.config.vocabSize;
  const past = tokenIds(PAST_ROWS, V, 1);
  const cache = new KVCache(model.config.numLayers, model.config.numKvHeads, model.config.headDim, PAST_ROWS);
  const pastOut = await model.forward({ embeds: model.embed(past), positions: range(PAST_ROWS), mask: causalMask(PAST_ROWS, 0), cache });
  cache.append(pastOut.keys, pastOut.values);
  const empty = new KVCache(model.config.numLayers, model.config.numKvHeads, model.config.headDim, 1);
  const prompt = tokenIds(PREFILL_ROWS, V, 3);
  const batches = LATENCY_ROWS.map((T) => tokenIds(T, V, 2));
  const endPhase = watchLoad();
  const rounds = { warmupRounds: 1, repeats, groupOrder: (round: number) => (round % 2 === 0 ? [0, 1] : [1, 0]), onCall: () => progress.tick() };
  // node-llama-cpp's context holds one sequence: prefill (from an empty one) first, then L(T).
  const fresh = await peer.batchTimer([]);
  let prefill: number[][][];
  try {
    prefill = await timeInRounds([[() => model.forward({ embeds: model.embed(prompt), positions: range(PREFILL_ROWS), mask: causalMask(PREFILL_ROWS, 0), cache: empty })], [() => fresh.run(prompt)]], rounds);
  } finally {
    fresh.close();
  }
  const overPast = await peer.batchTimer(past);
  let latency: number[][][];
  try {
    const ppdCalls = batches.map((batch) => () => model.forward({ embeds: model.embed(batch), positions: range(batch.length, PAST_ROWS), mask: causalMask(batch.length, PAST_ROWS), cache }));
    latency = await timeInRounds([ppdCalls, batches.map((batch) => () => overPast.run(batch))], rounds);
  } finally {
    overPast.close();
  }
  const times = (engine: number): ForwardTimes => {
    const whole = spread(prefill[engine]![0]!);
    const l1 = spread(latency[engine]![0]!).medianMs;
    return {
      prefill: whole,
      prefillTokensPerSecond: (1000 * PREFILL_ROWS) / whole.medianMs,
      latency: LATENCY_ROWS.map((T, i) => ({ T, latency: spread(latency[engine]![i]!), ratioToT1: spread(latency[engine]![i]!).medianMs / l1 })),
    };
  };
  return { prefillRows: PREFILL_ROWS, pastRows: PAST_ROWS, repeats, ppd: times(0), llamaCpp: times(1), load: endPhase() };
}

// ---------------------------------------------------------------------------------------------
// Targets and report.

const TARGETS = { plain: 0.8, ppd: 1.5 };
/**
 * Issue #14's, for the quantized and float files at 2 threads: decode at least llama.cpp's speed,
 * L(16)/L(1) at most 2.0 quantized (1.4 f32), memory after load at most 1.3x the file.
 */
const QUANT_TARGETS = { decode: 1, l16Quantized: 2, l16Float: 1.4, memoryOverFile: 1.3 };

/** ppd's L(16) / L(1) in a configuration. */
const l16OverL1 = (t: ForwardTimes) => t.latency.find((r) => r.T === 16)?.ratioToT1 ?? NaN;

function targets(configs: ConfigurationResult[]): LlamaCppBenchReport['targets'] {
  const out: LlamaCppBenchReport['targets'] = [];
  for (const c of configs.filter((x) => x.threads === 2)) {
    const where = `${c.weightType}, 2 threads`;
    const plain = c.results.find((r) => r.decoder === 'ppd')!;
    const float = c.weightType === 'f32' || c.weightType === 'f16' || c.weightType === 'bf16';
    const l16 = l16OverL1(c.forwards.ppd);
    const bound = float ? QUANT_TARGETS.l16Float : QUANT_TARGETS.l16Quantized;
    const memory = c.memory.ppd.rssBytes / c.gguf.bytes;
    out.push(
      { name: `#14: ppd decode over llama.cpp (${where})`, target: `≥ ${QUANT_TARGETS.decode}×`, measured: `${fmt(plain.overLlamaCpp, 2)}×`, met: plain.overLlamaCpp >= QUANT_TARGETS.decode },
      { name: `#14: ppd L(16)/L(1) (${where}; llama.cpp ${fmt(l16OverL1(c.forwards.llamaCpp), 2)})`, target: `≤ ${bound}`, measured: fmt(l16, 2), met: l16 <= bound },
      { name: `#14: ppd memory after load over the GGUF size (${where})`, target: `≤ ${QUANT_TARGETS.memoryOverFile}×`, measured: `${fmt(memory, 2)}×`, met: memory <= QUANT_TARGETS.memoryOverFile },
    );
  }
  for (const c of configs) {
    const get = (id: DecoderId) => c.results.find((r) => r.decoder === id);
    const where = `${c.weightType}, ${c.threads} thread${c.threads === 1 ? '' : 's'}`;
    const plain = get('ppd')!;
    out.push({ name: `#8: ppd plain over llama.cpp plain (${where})`, target: `≥ ${TARGETS.plain}×`, measured: `${fmt(plain.overLlamaCpp, 2)}×`, met: plain.overLlamaCpp >= TARGETS.plain });
    const ppd = get('ppd + PPD');
    if (ppd === undefined) continue;
    out.push({ name: `#8: ppd PPD over llama.cpp plain (${where})`, target: `≥ ${TARGETS.ppd}×`, measured: `${fmt(ppd.overLlamaCpp, 2)}×`, met: ppd.overLlamaCpp >= TARGETS.ppd });
    const draft = get('llama.cpp + draft');
    if (draft !== undefined) {
      out.push({ name: `#8: ppd PPD over llama.cpp + draft model (${where})`, target: '> 1×', measured: `${fmt(ppd.tokensPerSecond / draft.tokensPerSecond, 2)}×`, met: ppd.tokensPerSecond > draft.tokensPerSecond });
    }
    // The same two for what `generate --ppd` does here (trees and context lookup, as calibrated).
    const product = get('ppd --ppd');
    if (product === undefined) continue;
    out.push({ name: `#8: ppd --ppd over llama.cpp plain (${where})`, target: `≥ ${TARGETS.ppd}×`, measured: `${fmt(product.overLlamaCpp, 2)}×`, met: product.overLlamaCpp >= TARGETS.ppd });
    for (const peer of [draft, get('llama.cpp + lookup')]) {
      if (peer === undefined) continue;
      out.push({
        name: `#8: ppd --ppd over ${peer.decoder} (${where})`,
        target: '> 1×',
        measured: `${fmt(product.tokensPerSecond / peer.tokensPerSecond, 2)}×`,
        met: product.tokensPerSecond > peer.tokensPerSecond,
      });
    }
  }
  return out;
}

const PLAIN_CHOSEN_NOTE = " — this machine's calibration chose no prompt-token rows for this thread count; the default trees show the prompt tokens at work";

function markdown(r: LlamaCppBenchReport): string {
  const lines = [
    '# ppd against llama.cpp',
    '',
    `Command: \`${r.command}\` (${r.date}, ${fmt(r.durationSeconds, 0)} s). Data: \`${r.name}.json\` beside this page.`,
    '',
    `Model \`${r.model.dir}\` (${(r.model.parameters / 1e6).toFixed(2)}M parameters), converted to GGUF by \`ppd convert\`; both engines load the same file and decode the same prompt ids greedily, ` +
      `${r.workload.prompts.length} held-out prompts (\`${r.workload.corpusFile}\`, ${Math.min(...r.workload.prompts.map((p) => p.tokens))}–${Math.max(...r.workload.prompts.map((p) => p.tokens))} tokens) × exactly ${r.workload.maxTokens} new tokens (EOS ignored), ` +
      `median of ${r.workload.repeats} timed run${r.workload.repeats === 1 ? '' : 's'} after a warm-up; tokens/s = Σ tokens / Σ seconds, end to end (prompt included). ` +
      `Peer: ${r.peer.package} ${r.peer.version} (prebuilt CPU binary); its draft predictor uses \`${r.model.draftDir ?? 'no draft'}\` with maxTokens ${r.peer.draft.maxTokens}, minConfidence ${r.peer.draft.minConfidence} (its defaults). ` +
      (r.adapter === null ? 'No PPD adapter: PPD not run.' : `PPD: adapter \`${r.adapter.dir}\`, with this machine's calibrated trees for each thread count (see each section).`) +
      (r.model.shape === undefined
        ? ''
        : ` Random weights of the shape \`bench/shapes/${r.model.shape}.json\` (\`ppd init --random\`); the adapter is untrained (prompt tokens initialised from token embeddings, trees from the prior accuracy guess), so of \`ppd --ppd\`'s guesses only the context lookup's can be right, on the random model's repetitive greedy text.`),
    '',
    `![tokens/s per decoder](${r.name}.svg)`,
    '',
  ];
  const severalRuns = new Set(r.configurations.map((c) => c.run.date)).size > 1;
  for (const c of r.configurations) {
    lines.push(
      `## ${c.weightType}, ${c.threads} thread${c.threads === 1 ? '' : 's'}`,
      '',
      ...(severalRuns ? [`Measured by \`${c.run.command}\` (${c.run.date}).`, ''] : []),
      `GGUF ${(c.gguf.bytes / 2 ** 20).toFixed(1)} MiB${c.draftGguf ? `, draft ${(c.draftGguf.bytes / 2 ** 20).toFixed(1)} MiB` : ''}. ` +
        (c.ppdTrees === null ? '' : `PPD trees: \`${c.ppdTrees.file}\` (budget ${c.ppdTrees.budget})${c.ppdTrees.plainChosen ? PLAIN_CHOSEN_NOTE : ''}. `) +
        (c.product === null ? '' : `\`ppd --ppd\`: \`${c.product.file}\` (budget ${c.product.budget}) with context lookup ${c.product.lookup}. `) +
        `Other processes used ${otherCpu(c.load)} during the timed runs${c.load.otherCores !== null && c.load.otherCores > BUSY_MACHINE_CORES ? ' (**busy: figures suspect**)' : ''}.`,
      '',
      '| decoder | tokens/s | × llama.cpp | same ids as ppd plain | first divergence | predictions validated / refuted, or τ |',
      '| --- | --- | --- | --- | --- | --- |',
      ...c.results.map((x) => {
        const div = x.firstDivergence === null ? '—' : `prompt ${x.firstDivergence.prompt}, token ${x.firstDivergence.position} (ppd ${x.firstDivergence.ours}, this ${x.firstDivergence.theirs})`;
        const extra = x.tau !== undefined ? `τ ${fmt(x.tau, 2)}` : x.validated !== undefined ? `${x.validated} / ${x.refuted}` : '';
        return `| ${x.decoder} | ${fmt(x.tokensPerSecond, 1)} | ${fmt(x.overLlamaCpp, 2)}× | ${x.agreeing}/${r.workload.prompts.length} | ${div} | ${extra} |`;
      }),
      '',
      ...forwardsTable(c),
    );
  }
  lines.push('## Targets (issues #8 and #14; the #8 `ppd --ppd` rows apply the same bars to what `generate --ppd` does here)', '', '| | target | measured | met |', '| --- | --- | --- | --- |', ...r.targets.map((t) => `| ${t.name} | ${t.target} | ${t.measured} | ${t.met ? 'yes' : '**no**'} |`), '');
  lines.push(...machineSection(r.machine, r.configurations[0]!.load));
  return lines.join('\n');
}

/** Memory per engine, and single forwards: prefill tokens/s, L(T) and L(T)/L(1). */
function forwardsTable(c: ConfigurationResult): string[] {
  const f = c.forwards;
  const memory = (m: Resident) => `${bytes(m.rssBytes)} (${fmt(m.rssBytes / c.gguf.bytes, 2)}×)${m.anonBytes === null ? '' : `; ${bytes(m.anonBytes)} anonymous, ${bytes(m.fileBytes ?? 0)} file-backed`}`;
  const cells = (t: ForwardTimes) => t.latency.map((x) => `${fmt(x.latency.medianMs, 1)} (${fmt(x.ratioToT1, 2)})`).join(' | ');
  return [
    `Single forwards, both engines taking turns (${f.repeats} timed rounds, medians; other processes used ${otherCpu(f.load)}): prefill = ${f.prefillRows} prompt rows from an empty cache; ` +
      `L(T) = T rows over a past of ${f.pastRows}, ms (L(T)/L(1)). Memory = RSS growth while the engine loaded the file and ran a 16-row prompt and 16 steps, each engine in a fresh process (× the GGUF file).`,
    '',
    `| engine | memory after load | prefill tok/s | ${LATENCY_ROWS.map((T) => `L(${T})`).join(' | ')} |`,
    `| --- | --- | --- | ${LATENCY_ROWS.map(() => '---').join(' | ')} |`,
    `| ppd | ${memory(c.memory.ppd)} | ${fmt(f.ppd.prefillTokensPerSecond, 1)} | ${cells(f.ppd)} |`,
    `| llama.cpp | ${memory(c.memory.llamaCpp)} | ${fmt(f.llamaCpp.prefillTokensPerSecond, 1)} | ${cells(f.llamaCpp)} |`,
    '',
  ];
}

function writeReport(r: LlamaCppBenchReport, outDir: string): Promise<string[]> {
  const decoders = r.configurations[0]!.results.map((x) => x.decoder);
  return writeReportFiles(outDir, r.name, r, markdown(r), `${r.name}.svg`, {
    title: `tokens/s per decoder (${decoders.map((d, i) => `${i + 1} ${d}`).join(', ')})`,
    mark: 'bar',
    x: { title: 'decoder' },
    y: { title: 'tokens/s' },
    series: r.configurations.map((c) => ({
      name: `${c.weightType}, ${c.threads}t`,
      points: c.results.map((x) => ({ x: decoders.indexOf(x.decoder) + 1, y: x.tokensPerSecond })),
    })),
  });
}

/**
 * --add: the configurations of the report at `file`, which must have measured the same model on
 * the same workload (ratios are only ever taken within one configuration, so runs can be split).
 */
function earlierConfigurations(file: string, model: LlamaCppBenchReport['model'], workload: LlamaCppBenchReport['workload']): ConfigurationResult[] {
  if (!existsSync(file)) return [];
  const earlier = JSON.parse(readFileSync(file, 'utf8')) as Partial<LlamaCppBenchReport>;
  const what = (r: Partial<LlamaCppBenchReport>) => JSON.stringify([r.schema, r.model, r.workload]);
  if (what(earlier) !== what({ schema: 'ppd.bench.llamacpp/3', model, workload })) {
    throw new InputError(`--add: ${shownPath(file)} was measured with another schema, model or workload (prompts, --max-tokens, --repeats); run without --add to start it over`);
  }
  return earlier.configurations ?? [];
}

// ---------------------------------------------------------------------------------------------
// Main.

/** --prepare: each type's GGUF file, loaded once so that its graph is compiled into the cache. */
async function prepare(plan: Plan): Promise<void> {
  for (const type of plan.types) {
    const gguf = ggufOf(plan.modelDir, type);
    if (plan.draftDir !== undefined) ggufOf(plan.draftDir, type);
    const loaded = await loadModel(gguf.file, loadOptions(plan, 1));
    await loaded.model.release();
    process.stdout.write(`prepared ${shownPath(gguf.file)} (${bytes(gguf.bytes)})\n`);
  }
}

async function main(argv: string[]): Promise<void> {
  const plan = planFromArgs(argv);
  if (plan.prepare) return prepare(plan);
  const started = performance.now();
  const date = new Date().toISOString();
  const machine = describeMachine(plan.threadCounts[0]!);
  // A random shape runs what the issue asks of it: ppd plain and `generate --ppd` against llama.cpp plain.
  const shapeDecoders: readonly DecoderId[] = ['llama.cpp', 'ppd', 'ppd --ppd'];
  const decoders = ALL_DECODERS.filter(
    (d) => (d.predictor !== 'draft' || plan.draftDir !== undefined) && (!d.ppd || plan.adapterDir !== undefined) && (plan.shape === undefined || shapeDecoders.includes(d.id)),
  );

  // Prompts from a load of the first GGUF file (its tokenizer and config are the folder's; the
  // first configuration reuses its compiled graph).
  const reference = await loadModel(ggufOf(plan.modelDir, plan.types[0]!).file, loadOptions(plan, 1));
  const promptFile = heldOutTextFor(reference);
  const prompts = selectPrompts(reference, plan.prompts, promptFile);
  const parameters = parameterCount(reference.config);
  await reference.model.release();

  process.stderr.write(
    `llama.cpp benchmark (${plan.mode}): ${repoPath(plan.modelDir)}, types ${plan.types.join(', ')}, threads ${plan.threadCounts.join(', ')}, ` +
      `${prompts.length} prompts × ${plan.maxTokens} tokens × ${plan.repeats}, decoders: ${decoders.map((d) => d.id).join(', ')}\n`,
  );
  await warnIfBusy();
  // Per configuration: the decoders' generations, then both engines' single forwards (timeForwards).
  const forwardCalls = 2 * (1 + plan.forwardRepeats) * (1 + LATENCY_ROWS.length);
  const progress = new Progress('generations and forwards', plan.types.length * plan.threadCounts.length * (prompts.length * plan.repeats * decoders.length + forwardCalls), 'runs');
  const command = `npm run bench:llamacpp${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`;
  const workload: LlamaCppBenchReport['workload'] = {
    corpusFile: repoPath(promptFile),
    prompts: prompts.map((p) => ({ prompt: p.number, document: p.document, tokens: p.tokens })),
    maxTokens: plan.maxTokens,
    repeats: plan.repeats,
  };
  const model: LlamaCppBenchReport['model'] = { dir: repoPath(plan.modelDir), parameters, draftDir: plan.draftDir === undefined ? null : repoPath(plan.draftDir), ...(plan.shape === undefined ? {} : { shape: plan.shape }) };
  const earlier = plan.add ? earlierConfigurations(join(plan.outDir, `${plan.name}.json`), model, workload) : [];
  const measured: ConfigurationResult[] = [];
  for (const type of plan.types) {
    for (const threads of plan.threadCounts) measured.push(await runConfiguration(plan, { command, date }, type, threads, prompts, decoders, progress));
  }
  progress.stop();
  // With --add, this run's configurations replace the report's of the same type and thread count.
  const replaced = (c: ConfigurationResult) => measured.some((m) => m.weightType === c.weightType && m.threads === c.threads);
  const configurations = [...earlier.filter((c) => !replaced(c)), ...measured];

  const report: LlamaCppBenchReport = {
    schema: 'ppd.bench.llamacpp/3',
    name: plan.name,
    mode: plan.mode,
    command,
    date,
    durationSeconds: (performance.now() - started) / 1000,
    machine,
    peer: { package: 'node-llama-cpp', version: '3.21.1', draft: DRAFT_DEFAULTS },
    model,
    adapter: plan.adapterDir === undefined ? null : { dir: repoPath(plan.adapterDir) },
    workload,
    configurations,
    targets: targets(configurations),
  };
  for (const path of await writeReport(report, plan.outDir)) process.stdout.write(`wrote ${shownPath(path)}\n`);
  for (const c of measured) {
    process.stdout.write(`${c.weightType}, ${c.threads}t: ${c.results.map((x) => `${x.decoder} ${fmt(x.tokensPerSecond, 1)} tok/s (${fmt(x.overLlamaCpp, 2)}×, ${x.agreeing}/${prompts.length} agree)`).join('; ')}\n`);
    process.stdout.write(
      `  memory ppd ${bytes(c.memory.ppd.rssBytes)}, llama.cpp ${bytes(c.memory.llamaCpp.rssBytes)} (GGUF ${bytes(c.gguf.bytes)}); ` +
        `prefill ${fmt(c.forwards.ppd.prefillTokensPerSecond, 1)} vs ${fmt(c.forwards.llamaCpp.prefillTokensPerSecond, 1)} tok/s; ` +
        `L(16)/L(1) ${fmt(l16OverL1(c.forwards.ppd), 2)} vs ${fmt(l16OverL1(c.forwards.llamaCpp), 2)}\n`,
    );
  }
}

await runBenchmark(main);
