/**
 * N-gram table benchmark: what a static n-gram table of the model's own generations
 * (`ppd ngram build`, src/ppd/ngram-table.ts) adds to greedy PPD on held-out prompts, side by
 * side in one run. Writes docs/bench/ngram.json (schema `NgramBenchReport` below), ngram.md and
 * ngram-per-prompt.svg.
 *
 *   npm run bench:ngram -- --ngram FILE       models/ppd-base + its adapter, this table
 *   npm run bench:ngram -- --quick            smoke check: 2 prompts, 16 tokens, 1 repeat, temporary folder
 *   --model DIR --ppd DIR                     another model / adapter folder (with its trees.json)
 *   --ngram FILE                              the table (default: ADAPTER/ngram.bin)
 *   --data FILE                               held-out text the prompts open (default: the test split of the model's corpus)
 *   --prompts N --max-tokens N --repeats N    prompts (8), new tokens each (128), timed repeats (3; median)
 *   --threads N                               ONNX Runtime intra-op threads (default: all cores)
 *
 * Decoders, all greedy, each of whose ids must equal plain decoding's (a mismatch is reported
 * and the run exits 1): plain; PPD's trees alone; trees + table; trees + context lookup; trees +
 * lookup + table; the lookup alone (root-only trees); lookup + table, root-only. The trees are
 * the adapter's trees.json (not this machine's calibration, which may choose none). Runs of one
 * prompt are interleaved, the order reversed every other round; EOS is ignored so every run
 * makes the same number of tokens. Per decoder: τ (tokens per step after the prompt's forward),
 * tokens/s and the drafted chains' acceptance by source; and the table's memory beside the
 * adapter's and the weights'.
 */
import { existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_ADAPTER, DEFAULT_MODEL } from '../src/cli/demo.ts';
import { InputError } from '../src/errors.ts';
import type { GenerationResult } from '../src/generate/generate.ts';
import { startGeneration } from '../src/generate/request.ts';
import { loadModel, type LoadedModel } from '../src/checkpoint/load.ts';
import { parameterCount } from '../src/model/config.ts';
import { promptHeadOf } from '../src/ppd/adapter-files.ts';
import { addDraft, emptyDraftTally, type DraftTally } from '../src/ppd/draft.ts';
import { NGRAM_FILE } from '../src/ppd/ngram-files.ts';
import { DEFAULT_LOOKUP_TOKENS, DEFAULT_NGRAM_TOKENS, loadPpdSetup, TREES_FILE, type PpdSetup } from '../src/ppd/setup.ts';
import { rootOnlyTreeSet } from '../src/ppd/tree-builder.ts';
import { Progress } from '../src/report/progress.ts';
import { spread } from '../src/report/timing.ts';
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
  shownPath,
  warnIfBusy,
  watchLoad,
  writeReportFiles,
  type Machine,
  type PhaseLoad,
} from './harness.ts';
import { heldOutTextFor, selectPrompts, type Prompt } from './prompts.ts';

export interface NgramBenchReport {
  schema: 'ppd.bench.ngram/1';
  mode: 'full' | 'quick';
  command: string;
  date: string;
  durationSeconds: number;
  machine: Machine;
  model: { dir: string; parameters: number; weightBytes: number };
  adapter: { dir: string; trees: string; budget: number };
  /** The table: file, what `ngram info` says of its build, its bytes in memory. */
  table: { file: string; fileBytes: number; memoryBytes: number; source: Record<string, unknown>; contexts: number[]; tokensPerStep: number };
  /** Bytes PPD holds besides the model, without and with the table (prompt embeddings + table). */
  memory: { adapterBytes: number; tableBytes: number; shareOfWeightsWithout: number; shareOfWeightsWith: number };
  workload: { dataFile: string; prompts: { prompt: number; document: number; tokens: number }[]; maxTokens: number; repeats: number };
  decoders: DecoderResult[];
  /** Greedy runs whose ids differ from plain decoding's (must be none). */
  mismatches: { decoder: DecoderId; prompt: number }[];
  load: PhaseLoad;
}

type DecoderId = 'plain' | 'trees' | 'trees+table' | 'trees+lookup' | 'trees+lookup+table' | 'lookup' | 'lookup+table';

export interface DecoderResult {
  id: DecoderId;
  /** Σ (new tokens − 1) / Σ (steps − 1): tokens per decoding step, the prompt's forward left out. */
  tau: number;
  /** Σ new tokens / Σ median seconds over the prompts. */
  tokensPerSecond: number;
  /** tokensPerSecond / plain's. */
  speedup: number;
  /** Median over prompts of the per-prompt speedup over plain. */
  speedupMedian: number;
  /** Chains drafted beside the tree, by source, over all prompts (first repeat). */
  drafts: DraftTally;
  perPrompt: { prompt: number; tau: number; tokensPerSecond: number; speedup: number }[];
}

interface Decoder {
  id: DecoderId;
  ppd?: { rootOnly: boolean; lookup: boolean; table: boolean };
}

const DECODERS: readonly Decoder[] = [
  { id: 'plain' },
  { id: 'trees', ppd: { rootOnly: false, lookup: false, table: false } },
  { id: 'trees+table', ppd: { rootOnly: false, lookup: false, table: true } },
  { id: 'trees+lookup', ppd: { rootOnly: false, lookup: true, table: false } },
  { id: 'trees+lookup+table', ppd: { rootOnly: false, lookup: true, table: true } },
  { id: 'lookup', ppd: { rootOnly: true, lookup: true, table: false } },
  { id: 'lookup+table', ppd: { rootOnly: true, lookup: true, table: true } },
];

interface Plan {
  mode: 'full' | 'quick';
  threads: number;
  outDir: string;
  modelDir: string;
  adapterDir: string;
  ngramFile: string;
  /** Absent: the held-out text of the model's own corpus (heldOutTextFor). */
  dataFile?: string;
  prompts: number;
  maxTokens: number;
  repeats: number;
}

const SVG_NAME = 'ngram-per-prompt.svg';
const WARMUP_TOKENS = 32;

function planFromArgs(argv: string[]): Plan {
  const { quick, threads, flags } = parseBenchArgs(argv, ['model', 'ppd', 'ngram', 'data', 'max-tokens', 'prompts', 'repeats']);
  const modelDir = flags.model ?? DEFAULT_MODEL;
  const adapterDir = flags.ppd ?? (flags.model === undefined ? DEFAULT_ADAPTER : join(modelDir, 'ppd'));
  const ngramFile = flags.ngram ?? join(adapterDir, NGRAM_FILE);
  if (!existsSync(join(adapterDir, TREES_FILE))) throw new InputError(`${adapterDir}: no PPD adapter with ${TREES_FILE} here (name one with --ppd DIR)`);
  if (!existsSync(ngramFile)) throw new InputError(`${ngramFile}: no n-gram table here (build one with \`ppd ngram build --model ${modelDir} --data TEXT --out ${ngramFile}\`, or name one with --ngram FILE)`);
  return {
    mode: quick ? 'quick' : 'full',
    threads,
    outDir: quick ? join(tmpdir(), 'ppd-bench-ngram-quick') : join(REPO_ROOT, 'docs', 'bench'),
    modelDir,
    adapterDir,
    ngramFile,
    dataFile: flags.data,
    prompts: positiveInt('prompts', flags.prompts, quick ? 2 : 8),
    maxTokens: positiveInt('max-tokens', flags['max-tokens'], quick ? 16 : 128),
    repeats: positiveInt('repeats', flags.repeats, quick ? 1 : 3),
  };
}

function setupFor(setup: PpdSetup, d: NonNullable<Decoder['ppd']>): PpdSetup {
  return {
    ...setup,
    trees: d.rootOnly ? rootOnlyTreeSet(setup.adapter) : setup.trees,
    lookup: d.lookup ? DEFAULT_LOOKUP_TOKENS : 0,
    ngram: d.table ? setup.ngram : undefined,
  };
}

async function generate(loaded: LoadedModel, setup: PpdSetup, decoder: Decoder, prompt: Prompt, maxTokens: number, drafts?: DraftTally): Promise<GenerationResult> {
  const ppd = decoder.ppd && setupFor(setup, decoder.ppd);
  // EOS is ignored: every run makes exactly maxTokens, so the runs compare like for like.
  return startGeneration({ ...loaded, eosIds: [] }, { prompt: prompt.text, maxTokens, sampling: { temperature: 0, topP: 1, topK: 0, seed: 0 }, ppd, onDraft: drafts && ((o) => addDraft(drafts, o)) }).complete();
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const sameIds = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((id, i) => id === b[i]);

function markdown(r: NgramBenchReport): string {
  const plain = r.decoders[0]!;
  const acceptance = (t: DraftTally[keyof DraftTally]) => (t.proposed === 0 ? '–' : `${t.accepted}/${t.proposed} (${fmt((100 * t.accepted) / t.proposed, 0)} %) in ${t.steps} steps`);
  const lines = [
    '# N-gram table benchmark',
    '',
    `Command: \`${r.command}\` (${r.mode} run, ${r.date}, ${fmt(r.durationSeconds, 0)} s). Data: \`ngram.json\` (see \`bench/ngram.ts\`).`,
    '',
    r.mismatches.length === 0
      ? `**Every greedy run's ids equal plain greedy decoding's** (${r.workload.prompts.length} prompts × ${r.decoders.length - 1} PPD decoders).`
      : `**⚠ GREEDY MISMATCH in ${r.mismatches.length} runs: ${r.mismatches.map((m) => `${m.decoder} prompt ${m.prompt}`).join(', ')}** — a bug.`,
    '',
    `Model \`${r.model.dir}\` (${fmt(r.model.parameters / 1e6, 2)}M parameters), adapter \`${r.adapter.dir}\` with \`${r.adapter.trees}\` (budget ${r.adapter.budget} rows), ` +
      `table \`${r.table.file}\` (${bytes(r.table.fileBytes)}; contexts of 1..${r.table.contexts.length} tokens: ${r.table.contexts.join(' / ')}; up to ${r.table.tokensPerStep} tokens per step). ` +
      `Table built from: ${JSON.stringify(r.table.source)}.`,
    '',
    '| decoding | τ (tokens/step) | tok/s | speedup overall | speedup median | lookup chains accepted | table chains accepted |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...r.decoders.map(
      (d) => `| ${d.id} | ${fmt(d.tau, 2)} | ${fmt(d.tokensPerSecond)} | ${fmt(d.speedup, 2)}× | ${fmt(d.speedupMedian, 2)}× | ${acceptance(d.drafts.lookup)} | ${acceptance(d.drafts.ngram)} |`,
    ),
    '',
    `τ = Σ (new tokens − 1) / Σ (steps − 1) over the prompts; tok/s = Σ new tokens / Σ seconds (median of ${r.workload.repeats} interleaved repeats, end to end with the prefill); ` +
      `plain: ${fmt(plain.tokensPerSecond)} tok/s. "trees": the adapter's prompt-token trees; "lookup": the context lookup (up to ${DEFAULT_LOOKUP_TOKENS} tokens per step); ` +
      '"table": the n-gram table\'s chain, proposed where it matched a longer context than the lookup (or the lookup found nothing); "lookup" rows without "trees" use a root-only tree.',
    '',
    '## Memory',
    '',
    '| what | bytes |',
    '| --- | --- |',
    `| prompt embeddings | ${bytes(r.memory.adapterBytes)} |`,
    `| n-gram table, in memory (its arrays; the file is ${bytes(r.table.fileBytes)}) | ${bytes(r.memory.tableBytes)} |`,
    `| model weights, f32 | ${bytes(r.model.weightBytes)} |`,
    `| PPD's overhead / weights, without the table | ${fmt(100 * r.memory.shareOfWeightsWithout, 4)} % |`,
    `| PPD's overhead / weights, with the table | ${fmt(100 * r.memory.shareOfWeightsWith, 2)} % |`,
    '',
    '## Per prompt (τ / speedup over plain)',
    '',
    `![per prompt](${SVG_NAME})`,
    '',
    `| prompt | document | ${r.decoders.slice(1).map((d) => d.id).join(' | ')} |`,
    `| --- | --- | ${r.decoders.slice(1).map(() => '---').join(' | ')} |`,
    ...r.workload.prompts.map((p, i) => `| ${p.prompt} | ${p.document} | ${r.decoders.slice(1).map((d) => `${fmt(d.perPrompt[i]!.tau, 2)} / ${fmt(d.perPrompt[i]!.speedup, 2)}×`).join(' | ')} |`),
    '',
    `Prompts: the openings (32–64 tokens) of ${r.workload.prompts.length} documents of \`${r.workload.dataFile}\` spread over the split (held out from the table's build text); ${r.workload.maxTokens} new tokens each.`,
    '',
    ...machineSection(r.machine, r.load),
  ];
  if (r.load.otherCores !== null && r.load.otherCores > BUSY_MACHINE_CORES) lines.push(`**Warning:** other processes used ${otherCpu(r.load)} during the timed runs.`, '');
  return lines.join('\n');
}

async function main(argv: string[]): Promise<void> {
  const plan = planFromArgs(argv);
  const date = new Date().toISOString();
  const started = performance.now();
  const machine = describeMachine(plan.threads);
  const loaded = await loadModel(plan.modelDir, { threads: plan.threads, needsTokenizer: true, promptHead: promptHeadOf(plan.adapterDir) });
  try {
    const setup = loadPpdSetup(loaded.config, plan.adapterDir, {
      trees: join(plan.adapterDir, TREES_FILE),
      ngram: plan.ngramFile,
      ngramTokens: DEFAULT_NGRAM_TOKENS,
      tokenizer: loaded.tokenizer,
      threads: plan.threads,
      modelDir: plan.modelDir,
    });
    const table = setup.ngram!.table;
    const dataFile = plan.dataFile ?? heldOutTextFor(loaded);
    const prompts = selectPrompts(loaded, plan.prompts, dataFile);
    process.stderr.write(`n-gram benchmark (${plan.mode}): ${repoPath(plan.modelDir)}, ${repoPath(plan.ngramFile)}, ${prompts.length} prompts × ${plan.maxTokens} tokens × ${plan.repeats} repeats, ${machine.cpuModel}, ${plan.threads} threads\n`);
    await warnIfBusy();
    for (const decoder of DECODERS) await generate(loaded, setup, decoder, prompts[0]!, Math.min(WARMUP_TOKENS, plan.maxTokens));

    const endTimed = watchLoad();
    const progress = new Progress('generations', prompts.length * plan.repeats * DECODERS.length, 'runs');
    const drafts = new Map(DECODERS.map((d) => [d.id, emptyDraftTally()]));
    const runs = prompts.map(() => new Map<DecoderId, GenerationResult[]>(DECODERS.map((d) => [d.id, []])));
    for (const [i, prompt] of prompts.entries()) {
      for (let round = 0; round < plan.repeats; round++) {
        const order = (i + round) % 2 === 0 ? DECODERS : [...DECODERS].reverse();
        for (const decoder of order) {
          runs[i]!.get(decoder.id)!.push(await generate(loaded, setup, decoder, prompt, plan.maxTokens, round === 0 ? drafts.get(decoder.id) : undefined));
          progress.tick();
        }
      }
    }
    const load = endTimed();
    progress.stop();

    const median = (results: GenerationResult[]) => spread(results.map((r) => r.stats.seconds)).medianMs; // spread takes any unit
    const plainSeconds = runs.map((perPrompt) => median(perPrompt.get('plain')!));
    const mismatches: NgramBenchReport['mismatches'] = [];
    const decoders = DECODERS.map((d): DecoderResult => {
      const results = runs.map((perPrompt) => perPrompt.get(d.id)!);
      results.forEach((rs, i) => rs.some((r) => !sameIds(r.ids, runs[i]!.get('plain')![0]!.ids)) && mismatches.push({ decoder: d.id, prompt: i + 1 }));
      const perPrompt = results.map((rs, i) => {
        const s = rs[0]!.stats;
        const seconds = median(rs);
        return { prompt: i + 1, tau: s.steps > 1 ? (s.newTokens - 1) / (s.steps - 1) : 1, tokensPerSecond: s.newTokens / seconds, speedup: plainSeconds[i]! / seconds };
      });
      const tokens = sum(results.map((rs) => rs[0]!.stats.newTokens));
      const seconds = sum(results.map(median));
      return {
        id: d.id,
        tau: sum(results.map((rs) => rs[0]!.stats.newTokens - 1)) / sum(results.map((rs) => rs[0]!.stats.steps - 1)),
        tokensPerSecond: tokens / seconds,
        speedup: sum(plainSeconds) / seconds,
        speedupMedian: spread(perPrompt.map((p) => p.speedup)).medianMs,
        drafts: drafts.get(d.id)!,
        perPrompt,
      };
    });

    const weightBytes = parameterCount(loaded.config) * Float32Array.BYTES_PER_ELEMENT;
    const adapterBytes = setup.adapter.embeddings.length * Float32Array.BYTES_PER_ELEMENT;
    const report: NgramBenchReport = {
      schema: 'ppd.bench.ngram/1',
      mode: plan.mode,
      command: `npm run bench:ngram${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`,
      date,
      durationSeconds: (performance.now() - started) / 1000,
      machine,
      model: { dir: repoPath(plan.modelDir), parameters: parameterCount(loaded.config), weightBytes },
      adapter: { dir: repoPath(plan.adapterDir), trees: repoPath(join(plan.adapterDir, TREES_FILE)), budget: setup.trees.budget },
      table: {
        file: repoPath(plan.ngramFile),
        fileBytes: statSync(plan.ngramFile).size,
        memoryBytes: table.bytes,
        source: table.header.source,
        contexts: table.header.sections.map((s) => s.contexts),
        tokensPerStep: setup.ngram!.tokens,
      },
      memory: { adapterBytes, tableBytes: table.bytes, shareOfWeightsWithout: adapterBytes / weightBytes, shareOfWeightsWith: (adapterBytes + table.bytes) / weightBytes },
      workload: { dataFile: repoPath(dataFile), prompts: prompts.map((p) => ({ prompt: p.number, document: p.document, tokens: p.tokens })), maxTokens: plan.maxTokens, repeats: plan.repeats },
      decoders,
      mismatches,
      load,
    };
    const paths = await writeReportFiles(plan.outDir, 'ngram', report, markdown(report), SVG_NAME, {
      title: 'Greedy speedup over plain decoding per prompt, without and with the n-gram table',
      mark: 'bar',
      x: { title: 'prompt' },
      y: { title: 'speedup (×)' },
      series: decoders.slice(1).map((d) => ({ name: d.id, points: d.perPrompt.map((p) => ({ x: p.prompt, y: p.speedup })) })),
    });
    for (const d of decoders) console.log(`${d.id.padEnd(20)} τ ${fmt(d.tau, 2)}  ${fmt(d.tokensPerSecond)} tok/s  ${fmt(d.speedup, 2)}× plain (median ${fmt(d.speedupMedian, 2)}×)`);
    console.log(`table ${bytes(table.bytes)} in memory (${fmt(100 * report.memory.shareOfWeightsWith, 2)} % of the f32 weights with the prompt embeddings); other processes used ${otherCpu(load)}`);
    for (const path of paths) console.log(`wrote ${shownPath(path)}`);
    if (mismatches.length > 0) {
      process.stderr.write(`error: greedy output differs from plain decoding in ${mismatches.length} runs; see the report\n`);
      process.exitCode = 1;
    }
  } finally {
    await loaded.model.release();
  }
}

await runBenchmark(main);
