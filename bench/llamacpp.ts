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
 * when any). Note that node-llama-cpp restarts llama.cpp's compute threads on every evaluation
 * call, which costs small models much; single-thread figures are reported too for that reason.
 * Results: docs/bench/llamacpp.{json,md,svg} (llamacpp-<folder>.* for another --model).
 */
import { promptHeadOf } from '../src/ppd/adapter-files.ts';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
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
  warnIfBusy,
  watchLoad,
  type Machine,
  type PhaseLoad,
} from './harness.ts';
import { spread } from '../src/report/timing.ts';
import { DRAFT_DEFAULTS, LlamaCppPeer, type Predictor } from './peers/llamacpp.ts';
import { CORPUS_FILE, selectPrompts, type Prompt } from './prompts.ts';

// ---------------------------------------------------------------------------------------------
// Report schema (docs/bench/llamacpp.json).

export type WeightType = 'f32' | 'f16' | 'q8_0' | 'q4_0';
const WEIGHT_TYPES: readonly WeightType[] = ['f32', 'f16', 'q8_0', 'q4_0'];

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

export interface ConfigurationResult {
  weightType: WeightType;
  threads: number;
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
  schema: 'ppd.bench.llamacpp/2';
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
}

const DEFAULT_MODEL = join(REPO_ROOT, 'models', 'ppd-base');
const DEFAULT_DRAFT = join(REPO_ROOT, 'models', 'ppd-draft');
const GGUF_CACHE = () => join(defaultCacheDir(), '..', 'gguf');
const WARMUP_TOKENS = 16;

function list<T>(flag: string, raw: string, parse: (part: string) => T | undefined): T[] {
  const parts = raw.split(',').map((p) => p.trim());
  const values = parts.map(parse);
  const bad = parts.find((_, i) => values[i] === undefined);
  if (bad !== undefined || parts.length === 0) throw new InputError(`--${flag}: cannot use ${JSON.stringify(bad ?? raw)}`);
  return [...new Set(values as T[])];
}

const SHAPES_DIR = join(REPO_ROOT, 'bench', 'shapes');
const PPD_CLI = join(REPO_ROOT, 'src', 'cli', 'main.ts');

/**
 * The random-weight model of bench/shapes/`shape`.json: written once under runs/ by `ppd init
 * --random` (F16 on disk, seed 0), with an untrained adapter folder beside it (three prompt
 * tokens initialised from the embeddings of "Next 2 word Next 3 word Next 4 word", trees for
 * DEFAULT_TREE_BUDGET rows from the prior accuracy guess).
 */
function shapeModel(shape: string): string {
  const config = join(SHAPES_DIR, `${shape}.json`);
  if (!existsSync(config)) {
    const known = readdirSync(SHAPES_DIR).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5));
    throw new InputError(`--shape: no ${shape}.json in bench/shapes (there: ${known.join(', ')})`);
  }
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
  const { quick, threads, flags } = parseBenchArgs(argv, ['model', 'shape', 'ppd', 'draft', 'types', 'thread-counts', 'prompts', 'max-tokens', 'repeats']);
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

async function runConfiguration(plan: Plan, type: WeightType, threads: number, prompts: Prompt[], decoders: readonly Decoder[], progress: Progress): Promise<ConfigurationResult> {
  const gguf = ggufOf(plan.modelDir, type);
  const draftGguf = plan.draftDir === undefined ? null : ggufOf(plan.draftDir, type);
  const loaded = await loadModel(gguf.file, { threads, needsTokenizer: true, promptHead: plan.adapterDir === undefined ? undefined : promptHeadOf(plan.adapterDir) });
  const peer = await LlamaCppPeer.open(gguf.file, { threads, contextSize: 512, draftPath: draftGguf?.file });
  try {
    const guessing = plan.adapterDir === undefined ? undefined : loadGuessingPpdSetup(loaded.config, plan.adapterDir, { threads, lookup: 0, onNotice: () => {} });
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
    return {
      weightType: type,
      threads,
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

// ---------------------------------------------------------------------------------------------
// Targets and report.

const TARGETS = { plain: 0.8, ppd: 1.5 };

function targets(configs: ConfigurationResult[]): LlamaCppBenchReport['targets'] {
  const out: LlamaCppBenchReport['targets'] = [];
  for (const c of configs) {
    const get = (id: DecoderId) => c.results.find((r) => r.decoder === id);
    const where = `${c.weightType}, ${c.threads} thread${c.threads === 1 ? '' : 's'}`;
    const plain = get('ppd')!;
    out.push({ name: `ppd plain over llama.cpp plain (${where})`, target: `≥ ${TARGETS.plain}×`, measured: `${fmt(plain.overLlamaCpp, 2)}×`, met: plain.overLlamaCpp >= TARGETS.plain });
    const ppd = get('ppd + PPD');
    if (ppd === undefined) continue;
    out.push({ name: `ppd PPD over llama.cpp plain (${where})`, target: `≥ ${TARGETS.ppd}×`, measured: `${fmt(ppd.overLlamaCpp, 2)}×`, met: ppd.overLlamaCpp >= TARGETS.ppd });
    const draft = get('llama.cpp + draft');
    if (draft !== undefined) {
      out.push({ name: `ppd PPD over llama.cpp + draft model (${where})`, target: '> 1×', measured: `${fmt(ppd.tokensPerSecond / draft.tokensPerSecond, 2)}×`, met: ppd.tokensPerSecond > draft.tokensPerSecond });
    }
    // The same two for what `generate --ppd` does here (trees and context lookup, as calibrated).
    const product = get('ppd --ppd');
    if (product === undefined) continue;
    out.push({ name: `ppd --ppd over llama.cpp plain (${where})`, target: `≥ ${TARGETS.ppd}×`, measured: `${fmt(product.overLlamaCpp, 2)}×`, met: product.overLlamaCpp >= TARGETS.ppd });
    for (const peer of [draft, get('llama.cpp + lookup')]) {
      if (peer === undefined) continue;
      out.push({
        name: `ppd --ppd over ${peer.decoder} (${where})`,
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
  for (const c of r.configurations) {
    lines.push(
      `## ${c.weightType}, ${c.threads} thread${c.threads === 1 ? '' : 's'}`,
      '',
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
    );
  }
  lines.push('## Targets (issue #8; the `ppd --ppd` rows apply the same bars to what `generate --ppd` does here)', '', '| | target | measured | met |', '| --- | --- | --- | --- |', ...r.targets.map((t) => `| ${t.name} | ${t.target} | ${t.measured} | ${t.met ? 'yes' : '**no**'} |`), '');
  lines.push(...machineSection(r.machine, r.configurations[0]!.load));
  return lines.join('\n');
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

// ---------------------------------------------------------------------------------------------
// Main.

async function main(argv: string[]): Promise<void> {
  const plan = planFromArgs(argv);
  const started = performance.now();
  const date = new Date().toISOString();
  const machine = describeMachine(plan.threadCounts[0]!);
  // A random shape runs what the issue asks of it: ppd plain and `generate --ppd` against llama.cpp plain.
  const shapeDecoders: readonly DecoderId[] = ['llama.cpp', 'ppd', 'ppd --ppd'];
  const decoders = ALL_DECODERS.filter(
    (d) => (d.predictor !== 'draft' || plan.draftDir !== undefined) && (!d.ppd || plan.adapterDir !== undefined) && (plan.shape === undefined || shapeDecoders.includes(d.id)),
  );

  // Prompts and the adapter's trees from a plain load of the HF folder (tokenizer and config only matter).
  const reference = await loadModel(plan.modelDir, { needsTokenizer: true, threads: 1 });
  const prompts = selectPrompts(reference, plan.prompts);
  const parameters = parameterCount(reference.config);
  await reference.model.release();

  process.stderr.write(
    `llama.cpp benchmark (${plan.mode}): ${repoPath(plan.modelDir)}, types ${plan.types.join(', ')}, threads ${plan.threadCounts.join(', ')}, ` +
      `${prompts.length} prompts × ${plan.maxTokens} tokens × ${plan.repeats}, decoders: ${decoders.map((d) => d.id).join(', ')}\n`,
  );
  await warnIfBusy();
  const progress = new Progress('generations', plan.types.length * plan.threadCounts.length * prompts.length * plan.repeats * decoders.length, 'runs');
  const configurations: ConfigurationResult[] = [];
  for (const type of plan.types) {
    for (const threads of plan.threadCounts) configurations.push(await runConfiguration(plan, type, threads, prompts, decoders, progress));
  }
  progress.stop();

  const report: LlamaCppBenchReport = {
    schema: 'ppd.bench.llamacpp/2',
    name: plan.name,
    mode: plan.mode,
    command: `npm run bench:llamacpp${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`,
    date,
    durationSeconds: (performance.now() - started) / 1000,
    machine,
    peer: { package: 'node-llama-cpp', version: '3.21.1', draft: DRAFT_DEFAULTS },
    model: { dir: repoPath(plan.modelDir), parameters, draftDir: plan.draftDir === undefined ? null : repoPath(plan.draftDir), ...(plan.shape === undefined ? {} : { shape: plan.shape }) },
    adapter: plan.adapterDir === undefined ? null : { dir: repoPath(plan.adapterDir) },
    workload: { corpusFile: repoPath(CORPUS_FILE), prompts: prompts.map((p) => ({ prompt: p.number, document: p.document, tokens: p.tokens })), maxTokens: plan.maxTokens, repeats: plan.repeats },
    configurations,
    targets: targets(configurations),
  };
  for (const path of await writeReport(report, plan.outDir)) process.stdout.write(`wrote ${shownPath(path)}\n`);
  for (const c of configurations) {
    process.stdout.write(`${c.weightType}, ${c.threads}t: ${c.results.map((x) => `${x.decoder} ${fmt(x.tokensPerSecond, 1)} tok/s (${fmt(x.overLlamaCpp, 2)}×, ${x.agreeing}/${prompts.length} agree)`).join('; ')}\n`);
  }
}

await runBenchmark(main);
