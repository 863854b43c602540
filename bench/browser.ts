/**
 * Browser benchmark: ppd running in a web page (onnxruntime-web, WebAssembly, 1 and 2 threads,
 * in headless Debian Chromium) against Node's engine (onnxruntime-node, CPU, the same thread
 * counts) on the same model, adapter, prompts and decoders, in one run. Writes
 * docs/bench/browser.json (the data; schema `BrowserBenchReport` below), docs/bench/browser.md
 * and docs/bench/browser.svg (tokens/s per configuration, Node beside the page).
 *
 *   npm run bench:browser                   full run: models/ppd-base with its adapter models/ppd-base/ppd
 *   npm run bench:browser -- --quick        smoke check: 2 prompts, 16 new tokens, 1 repeat; written
 *                                           to a temporary folder so the published report stays
 *   --model DIR --ppd DIR                   another model / adapter folder (with its trees.json)
 *   --max-tokens N --prompts N --repeats N  new tokens per generation (64), prompts (12), timed
 *                                           repeats (3; the median counts)
 *
 * What it measures. The page is served by ppd's own server (`/browser/`, with COOP/COEP, so
 * WebAssembly may use threads); the server only hands out files, the page computes. Two pages
 * stay open, one per thread count, each with its model loaded in its worker. Prompts are the
 * openings of held-out documents (bench/prompts.ts, as bench:ppd). Every prompt is generated
 * greedily by three decoders per thread count — plain, PPD with the default context lookup (8)
 * and each side's own trees (Node: what `generate --ppd` picks, this machine's calibration
 * profile for the thread count, else trees.json; the page: trees it sizes from its own forward
 * latencies, ppd/quick-calibration.ts) and the context lookup alone (a root-only tree set) —
 * each in Node and in the page, taken in turn (the order reversed every other round)
 * after three warm-up generations each (the page's WebAssembly gets optimised as it runs), so
 * that both sides share the machine's noise. Tokens/s is `Generation`'s own figure on both
 * sides (end to end, prefill included; in the page it is measured inside the worker by the same
 * code), and every generation runs to the token limit past EOS (the page's eos=0), so both
 * sides time generations of the same length. The page must reproduce Node's greedy ids and
 * PPD must reproduce plain: any mismatch is reported and the run exits with code 1.
 *
 * First token: a fresh browser profile opens the page with its defaults (provider auto, which is
 * WebAssembly here, threads = cores) and generates as soon as the model is ready; opening → ready
 * (download, graph compilation or the cached graph, ONNX Runtime start) plus request → first
 * token. Then a second visit, with the compiled graph and the files in the browser's caches.
 *
 * The targets (page plain >= 50 % of Node's tokens/s at the same thread count; PPD's speedup in
 * the page within 15 % of Node's; first token within 5 s with cached graphs) are reported, never
 * asserted. Chromium's CPU counts as the benchmark's own in the load figures.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { promptHeadOf } from '../src/ppd/adapter-files.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { DEFAULT_ADAPTER, DEFAULT_MODEL } from '../src/cli/demo.ts';
import { InputError } from '../src/errors.ts';
import { newCache, prefill } from '../src/decode/autoregressive.ts';
import { startGeneration } from '../src/generate/request.ts';
import { loadModel, type LoadedModel } from '../src/checkpoint/load.ts';
import { parameterCount } from '../src/model/config.ts';
import { lookupAlone } from '../src/ppd/adapter-folder.ts';
import { DEFAULT_LOOKUP_TOKENS, loadPpdSetup, TREES_FILE, type PpdSetup } from '../src/ppd/setup.ts';
import { widestTreeRows } from '../src/ppd/tree.ts';
import type { TreesInfo } from '../src/browser/protocol.ts';
import { Progress } from '../src/report/progress.ts';
import { buildServer } from '../src/server/app.ts';
import {
  BUSY_MACHINE_CORES,
  childProcesses,
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
  shownPath,
  timed,
  watchLoad,
  warnIfBusy,
  writeReportFiles,
  type Machine,
  type PhaseLoad,
} from './harness.ts';
import { heldOutTextFor, selectPrompts, type Prompt } from './prompts.ts';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const THREADS = [1, 2] as const;
const WARMUP_ROUNDS = 3;
/** Rows of the forwards timed against T, and how often each is timed. */
const ROWS = [1, 2, 4, 8, 16, 32];
const ROW_REPEATS = 30;

// ---------------------------------------------------------------------------------------------
// Report schema (docs/bench/browser.json). Times in seconds, rates per second.

export interface BrowserBenchReport {
  schema: 'ppd.bench.browser/2';
  mode: 'full' | 'quick';
  command: string;
  /** ISO 8601, when the run started. */
  date: string;
  durationSeconds: number;
  machine: Machine;
  browser: { name: string; version: string; ortWeb: string; provider: 'wasm' };
  model: { dir: string; parameters: number };
  /**
   * PPD's trees on each side, per thread count: Node's are what `generate --ppd` picks (this
   * machine's calibration profile for the thread count, else trees.json); the page's are sized
   * in the page from its own forward latencies (ppd/quick-calibration.ts).
   */
  adapter: { dir: string; lookup: number; trees: { threads: number; node: string; page: string }[] };
  workload: { corpusFile: string; prompts: { prompt: number; document: number; tokens: number }[]; maxTokens: number; repeats: number };
  /** Page ids against Node's (plain and PPD), and PPD against plain, on every prompt and thread count. */
  identity: { runs: number; identical: number; mismatches: string[] };
  /** One row per thread count and decoder. */
  throughput: ThroughputRow[];
  /** Per thread count and PPD decoder: its speedup over plain on each side and their ratio, each the median over prompts of that prompt's own ratio. */
  speedups: { threads: number; decoder: Decoder; node: number; page: number; pageOverNode: number }[];
  firstToken: FirstTokenRun[];
  /** One forward over T new rows (no cache) against T: where PPD's many-row steps cost more in the page. */
  rows: RowsLatency[];
  targets: { name: string; target: string; measured: string; met: boolean }[];
  /** CPU other processes used during the timed generations (Chromium counted as the benchmark's). */
  load: PhaseLoad;
  /** Each prompt's figures. */
  perPrompt: { prompt: number; threads: number; decoder: Decoder; node: RunFigures; page: RunFigures }[];
}

/** plain; PPD with each side's own trees and the context lookup; the context lookup alone. */
export type Decoder = 'plain' | 'ppd' | 'lookup';
const DECODERS: readonly Decoder[] = ['plain', 'ppd', 'lookup'];
const DECODER_NAMES: Record<Decoder, string> = { plain: 'plain', ppd: 'PPD (own trees + lookup)', lookup: 'lookup alone' };

export interface RunFigures {
  newTokens: number;
  steps: number;
  /** Median over the repeats. */
  tokensPerSecond: number;
  tokensPerSecondPerRepeat: number[];
}

export interface ThroughputRow {
  threads: number;
  decoder: Decoder;
  /** Medians over the prompts of each prompt's median tokens/s. */
  nodeTokensPerSecond: number;
  pageTokensPerSecond: number;
  pageOverNode: number;
  /** Mean tokens per forward (the prompt's forward included), the same on both sides. */
  tokensPerStep: number;
}

export interface RowsLatency {
  threads: number;
  rows: number;
  /** Median of ROW_REPEATS forwards, milliseconds. */
  nodeMs: number;
  pageMs: number;
}

export interface FirstTokenRun {
  visit: 'first' | 'second';
  /** Whether the page compiled the graph or found it in Cache Storage. */
  graph: string;
  runtime: string;
  /** Opening the page → model ready (page clock). */
  readySeconds: number;
  /** Generate pressed → first token on the page. */
  firstTokenSeconds: number;
  totalSeconds: number;
}

// ---------------------------------------------------------------------------------------------
// The page, driven through its controls.

interface PageRun {
  ids: number[];
  steps: number;
  tokensPerSecond: number;
  firstTokenSeconds: number | null;
  /** A PPD run's trees, as the worker reports them. */
  trees?: TreesInfo;
}

async function openPage(browser: Browser, url: string): Promise<Page> {
  const page = await browser.newPage();
  page.on('pageerror', (error) => process.stderr.write(`page error: ${error.message}\n`));
  await page.goto(url);
  await page.locator('#status[data-state="ready"], #status[data-state="error"]').waitFor({ timeout: 300_000 });
  if ((await page.locator('#status').getAttribute('data-state')) !== 'ready') {
    throw new Error(`the page did not load the model: ${await page.locator('#log').textContent()}`);
  }
  return page;
}

async function generateOnPage(page: Page, prompt: string, decoder: Decoder, maxTokens: number): Promise<PageRun> {
  if ((await page.isChecked('#ppd')) !== (decoder !== 'plain')) await page.click('#ppd');
  if ((await page.isChecked('#prompt-tokens')) !== (decoder !== 'lookup')) await page.click('#prompt-tokens');
  await page.fill('#max-tokens', String(maxTokens));
  await page.click('#clear');
  await page.fill('#input', prompt);
  await page.click('#send');
  const reply = page.locator('.message.assistant[data-state="done"]').first();
  await reply.waitFor({ timeout: 300_000 });
  const stats = JSON.parse((await reply.getAttribute('data-stats'))!);
  const trees = await reply.getAttribute('data-trees');
  return {
    ids: JSON.parse((await reply.getAttribute('data-ids'))!),
    steps: stats.steps,
    tokensPerSecond: stats.tokensPerSecond,
    firstTokenSeconds: stats.firstTokenSeconds,
    ...(trees ? { trees: JSON.parse(trees) as TreesInfo } : {}),
  };
}

/**
 * Latency of one forward over T rows after no cache (a prefill of T tokens), by T: Node's engine
 * through `prefill`, the page's through its parity hook (the worker runs the same prefill).
 */
async function rowLatencies(loaded: LoadedModel, page: Page, threads: number): Promise<RowsLatency[]> {
  const ids = (n: number) => Array.from({ length: n }, (_, i) => (i * 7919 + 13) % loaded.config.vocabSize);
  const nodeMs = async (T: number) => {
    const times: number[] = [];
    for (let r = 0; r < ROW_REPEATS; r++) times.push(await timed(() => prefill(loaded.model, ids(T), newCache(loaded.model))));
    return median(times);
  };
  // A string, not a function: the bench runs through tsx, whose helpers the page does not have.
  const pageMs = (T: number): Promise<number> =>
    page.evaluate(`(async () => {
      const ids = ${JSON.stringify(ids(T))};
      const times = [];
      for (let r = 0; r < ${ROW_REPEATS}; r++) { const t = performance.now(); await globalThis.ppdLogits(ids); times.push(performance.now() - t); }
      times.sort((a, b) => a - b);
      return times.length % 2 ? times[times.length >> 1] : (times[times.length / 2 - 1] + times[times.length / 2]) / 2;
    })()`);
  await nodeMs(16);
  await pageMs(16);
  const out: RowsLatency[] = [];
  for (const rows of ROWS) out.push({ threads, rows, nodeMs: await nodeMs(rows), pageMs: await pageMs(rows) });
  return out;
}

// ---------------------------------------------------------------------------------------------

async function main(argv: string[]): Promise<void> {
  const args = parseBenchArgs(argv, ['model', 'ppd', 'max-tokens', 'prompts', 'repeats']);
  const { quick, flags } = args;
  const modelDir = flags.model ?? DEFAULT_MODEL;
  const adapterDir = flags.ppd ?? (flags.model ? join(modelDir, 'ppd') : DEFAULT_ADAPTER);
  const maxTokens = positiveInt('max-tokens', flags['max-tokens'], quick ? 16 : 64);
  const promptCount = positiveInt('prompts', flags.prompts, quick ? 2 : 12);
  const repeats = positiveInt('repeats', flags.repeats, quick ? 1 : 3);
  if (!existsSync(CHROMIUM)) throw new InputError(`${CHROMIUM} is missing; run scripts/install-browser.sh`);
  if (!existsSync(join(adapterDir, TREES_FILE))) throw new InputError(`${adapterDir}: no ${TREES_FILE} (give --ppd an adapter folder)`);
  const outDir = quick ? mkdtempSync(join(tmpdir(), 'ppd-bench-browser-')) : join(REPO_ROOT, 'docs', 'bench');
  await warnIfBusy();
  const started = new Date();
  const runStart = performance.now();

  // Node: one model per thread count; the page: one tab per thread count.
  const node = new Map<number, LoadedModel>();
  for (const threads of THREADS) node.set(threads, await loadModel(modelDir, { threads, needsTokenizer: true, promptHead: promptHeadOf(adapterDir) }));
  const first = node.get(1)!;
  // Node's PPD is what `generate --ppd` picks at each thread count (no n-gram table: the page has none).
  const nodePpd = new Map<number, PpdSetup>(THREADS.map((threads) => [threads, loadPpdSetup(first.config, adapterDir, { threads, lookup: DEFAULT_LOOKUP_TOKENS, ngram: 'off', onNotice: () => {} })]));
  const nodeSetup = (decoder: Decoder, threads: number) =>
    decoder === 'plain' ? undefined : decoder === 'ppd' ? nodePpd.get(threads)! : lookupAlone(nodePpd.get(threads)!, DEFAULT_LOOKUP_TOKENS);
  const ppd = loadPpdSetup(first.config, adapterDir, { trees: join(adapterDir, TREES_FILE), lookup: DEFAULT_LOOKUP_TOKENS, ngram: 'off' });
  const app = buildServer({ loaded: first, ppd, adapterDir });
  const url = `${await app.listen({ host: '127.0.0.1', port: 0 })}/browser/`;
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });

  try {
    // First token: a fresh profile, the page's defaults, then a second visit.
    const firstToken: FirstTokenRun[] = [];
    const promptFile = heldOutTextFor(first);
    const prompts = selectPrompts(first, promptCount, promptFile);
    const visits = await browser.newContext(); // a fresh profile: empty caches
    for (const visit of ['first', 'second'] as const) {
      const page = await visits.newPage();
      await page.goto(`${url}?eos=0`);
      await page.locator('#status[data-state="ready"], #status[data-state="error"]').waitFor({ timeout: 300_000 });
      const runtime = page.locator('#runtime');
      const readySeconds = Number(await runtime.getAttribute('data-ready-seconds'));
      const run = await generateOnPage(page, prompts[0]!.text, 'ppd', 8);
      firstToken.push({
        visit,
        graph: (await runtime.getAttribute('data-graph')) ?? 'unknown',
        runtime: ((await runtime.textContent()) ?? '').split(' · ')[0]!,
        readySeconds,
        firstTokenSeconds: run.firstTokenSeconds ?? NaN,
        totalSeconds: readySeconds + (run.firstTokenSeconds ?? NaN),
      });
      await page.close();
    }
    await visits.close();

    const pages = new Map<number, Page>();
    for (const threads of THREADS) pages.set(threads, await openPage(browser, `${url}?provider=wasm&threads=${threads}&eos=0`));
    const ortWeb = ((await pages.get(1)!.locator('#runtime').textContent()) ?? '').match(/onnxruntime-web ([\d.]+)/)?.[1] ?? 'unknown';

    // Warm-up, WARMUP_ROUNDS generations per decoder on each side: Chromium first runs
    // WebAssembly through its baseline compiler and swaps in optimised code as functions get hot
    // (the first 64-token generation ran at well under half the speed of the third here).
    for (const threads of THREADS) {
      for (const decoder of range(WARMUP_ROUNDS).flatMap(() => DECODERS)) {
        await generateOnPage(pages.get(threads)!, prompts[0]!.text, decoder, maxTokens);
        await startGeneration(withoutEos(node.get(threads)!), { prompt: prompts[0]!.text, maxTokens, ppd: nodeSetup(decoder, threads) }).complete();
      }
    }

    const pageTrees = new Map<number, string>();
    const perPrompt: BrowserBenchReport['perPrompt'] = [];
    const mismatches: string[] = [];
    let identityRuns = 0;
    const progress = new Progress('bench:browser', prompts.length * THREADS.length, 'prompt×threads');
    const endTimed = watchLoad(childProcesses);
    for (const prompt of prompts) {
      for (const threads of THREADS) {
        const runs = new Map<string, { ids: number[]; steps: number; tps: number[] }>();
        const record = (key: string, ids: number[], steps: number, tps: number) => {
          const seen = runs.get(key);
          if (seen) seen.tps.push(tps);
          else runs.set(key, { ids, steps, tps: [tps] });
        };
        const order = DECODERS.flatMap((decoder) => [['node', decoder] as const, ['page', decoder] as const]);
        for (let round = 0; round < repeats; round++) {
          for (const [side, decoder] of round % 2 === 0 ? order : [...order].reverse()) {
            if (side === 'node') {
              const result = await startGeneration(withoutEos(node.get(threads)!), { prompt: prompt.text, maxTokens, ppd: nodeSetup(decoder, threads) }).complete();
              record(`node ${decoder}`, result.ids, result.stats.steps, result.stats.tokensPerSecond);
            } else {
              const result = await generateOnPage(pages.get(threads)!, prompt.text, decoder, maxTokens);
              if (result.trees) pageTrees.set(threads, pageTreesText(result.trees));
              record(`page ${decoder}`, result.ids, result.steps, result.tokensPerSecond);
            }
          }
        }
        const reference = runs.get('node plain')!.ids;
        for (const key of ['page plain', 'node ppd', 'page ppd', 'node lookup', 'page lookup']) {
          identityRuns++;
          if (JSON.stringify(runs.get(key)!.ids) !== JSON.stringify(reference)) mismatches.push(`prompt ${prompt.number}, ${threads} thread(s): ${key} differs from Node plain`);
        }
        for (const decoder of DECODERS) {
          const figures = (side: 'node' | 'page'): RunFigures => {
            const r = runs.get(`${side} ${decoder}`)!;
            return { newTokens: r.ids.length, steps: r.steps, tokensPerSecond: median(r.tps), tokensPerSecondPerRepeat: r.tps };
          };
          perPrompt.push({ prompt: prompt.number, threads, decoder, node: figures('node'), page: figures('page') });
        }
        progress.tick();
      }
    }
    const load = endTimed();
    progress.stop();
    const rows: RowsLatency[] = [];
    for (const threads of THREADS) rows.push(...(await rowLatencies(node.get(threads)!, pages.get(threads)!, threads)));

    const throughput: ThroughputRow[] = [];
    for (const threads of THREADS) {
      for (const decoder of DECODERS) {
        const rows = perPrompt.filter((r) => r.threads === threads && r.decoder === decoder);
        const nodeTps = median(rows.map((r) => r.node.tokensPerSecond));
        const pageTps = median(rows.map((r) => r.page.tokensPerSecond));
        const tokens = rows.reduce((n, r) => n + r.node.newTokens, 0);
        const steps = rows.reduce((n, r) => n + r.node.steps, 0);
        throughput.push({ threads, decoder, nodeTokensPerSecond: nodeTps, pageTokensPerSecond: pageTps, pageOverNode: pageTps / nodeTps, tokensPerStep: tokens / steps });
      }
    }
    const row = (threads: number, decoder: Decoder) => throughput.find((r) => r.threads === threads && r.decoder === decoder)!;
    // Each prompt's own ratios: its runs were taken within the same few seconds, in alternating
    // order, so a drift of the machine's speed (the same configuration ran 14 % apart between
    // prompts here) cancels in them; the medians over prompts of the ratios, not the ratios of the
    // medians, are what the targets compare.
    const speedups = THREADS.flatMap((threads) =>
      (['ppd', 'lookup'] as const).map((decoder) => {
        const paired = prompts.map((p) => {
          const of = (d: Decoder) => perPrompt.find((r) => r.prompt === p.number && r.threads === threads && r.decoder === d)!;
          const [plain, own] = [of('plain'), of(decoder)];
          const node = own.node.tokensPerSecond / plain.node.tokensPerSecond;
          const page = own.page.tokensPerSecond / plain.page.tokensPerSecond;
          return { node, page, pageOverNode: page / node };
        });
        return { threads, decoder, node: median(paired.map((x) => x.node)), page: median(paired.map((x) => x.page)), pageOverNode: median(paired.map((x) => x.pageOverNode)) };
      }),
    );
    const warm = firstToken.find((f) => f.visit === 'second')!;
    const targets = [
      ...THREADS.map((threads) => ({
        name: `page plain vs Node plain, ${threads} thread${threads === 1 ? '' : 's'}`,
        target: '>= 50 %',
        measured: `${fmt(row(threads, 'plain').pageOverNode * 100, 0)} %`,
        met: row(threads, 'plain').pageOverNode >= 0.5,
      })),
      ...speedups.map((s) => ({
        name: `${DECODER_NAMES[s.decoder]}: speedup in the page vs in Node, ${s.threads} thread${s.threads === 1 ? '' : 's'}`,
        target: 'within 15 %',
        measured: `${fmt(s.page, 2)}× vs ${fmt(s.node, 2)}× (${s.pageOverNode >= 1 ? '+' : ''}${fmt((s.pageOverNode - 1) * 100, 0)} %)`,
        met: Math.abs(s.pageOverNode - 1) <= 0.15,
      })),
      { name: 'first token after opening the page (second visit, cached graph)', target: '<= 5 s', measured: `${fmt(warm.totalSeconds, 2)} s`, met: warm.totalSeconds <= 5 },
    ];

    const report: BrowserBenchReport = {
      schema: 'ppd.bench.browser/2',
      mode: quick ? 'quick' : 'full',
      command: `npm run bench:browser${argv.length ? ` -- ${argv.join(' ')}` : ''}`,
      date: started.toISOString(),
      durationSeconds: (performance.now() - runStart) / 1000,
      machine: describeMachine(2),
      browser: { name: 'Chromium (headless, Debian)', version: browser.version(), ortWeb, provider: 'wasm' },
      model: { dir: repoPath(modelDir), parameters: parameterCount(first.config) },
      adapter: {
        dir: repoPath(adapterDir),
        lookup: DEFAULT_LOOKUP_TOKENS,
        trees: THREADS.map((threads) => ({ threads, node: nodeTreesText(nodePpd.get(threads)!), page: pageTrees.get(threads) ?? 'not reported' })),
      },
      workload: {
        corpusFile: repoPath(promptFile),
        prompts: prompts.map((p: Prompt) => ({ prompt: p.number, document: p.document, tokens: p.tokens })),
        maxTokens,
        repeats,
      },
      identity: { runs: identityRuns, identical: identityRuns - mismatches.length, mismatches },
      throughput,
      speedups,
      firstToken,
      rows,
      targets,
      load,
      perPrompt,
    };
    const paths = await writeReportFiles(outDir, 'browser', report, markdown(report), 'browser.svg', {
      title: `ppd in the page (onnxruntime-web ${ortWeb}, WebAssembly) vs Node (onnxruntime-node), tokens/s`,
      mark: 'bar',
      x: { title: throughput.map((r, i) => `${i + 1} = ${DECODER_NAMES[r.decoder]}, ${r.threads}t`).join('; ') },
      y: { title: 'tokens/s (median over prompts)' },
      series: ['node', 'page'].map((side) => ({
        name: side === 'node' ? 'Node (onnxruntime-node, CPU)' : 'page (onnxruntime-web, WebAssembly)',
        points: throughput.map((r, i) => ({ x: i + 1, y: side === 'node' ? r.nodeTokensPerSecond : r.pageTokensPerSecond })),
      })),
    });
    process.stdout.write(markdown(report).split('\n## Machine')[0]!);
    process.stdout.write(`wrote ${paths.map(shownPath).join(', ')}\n`);
    if (load.otherCores !== null && load.otherCores > BUSY_MACHINE_CORES) process.stderr.write(`warning: other processes used ${otherCpu(load)} during the run\n`);
    if (mismatches.length > 0) {
      process.stderr.write(`error: ${mismatches.length} of ${identityRuns} runs differ from Node's greedy ids:\n${mismatches.join('\n')}\n`);
      process.exitCode = 1;
    }
  } finally {
    await browser.close();
    await app.close();
    for (const loaded of node.values()) await loaded.model.release();
  }
}

/** Node's PPD trees in a few words: their file and widest tree. */
function nodeTreesText(setup: PpdSetup): string {
  const rows = widestTreeRows(setup.trees);
  return `${setup.treesFile === undefined ? 'built trees' : `\`${repoPath(setup.treesFile)}\``} (${rows === 1 ? 'root only: the context lookup alone' : `up to ${rows} rows`})`;
}

/** The page's PPD trees in a few words (the worker's TreesInfo). */
function pageTreesText(trees: TreesInfo): string {
  const fastest = trees.fastest ? `, best predicted ${fmt(trees.fastest.speedup, 2)}× at ${trees.fastest.n} rows` : '';
  const what = trees.rows === 1 ? 'root only: the context lookup alone' : `up to ${trees.rows} rows`;
  return `${trees.source === 'page' ? 'sized in the page' : 'the adapter file'} (${what}${fastest})`;
}

/** Generations that run to max tokens past EOS, as the page's eos=0 does: every run is as long. */
const withoutEos = (loaded: LoadedModel): LoadedModel => ({ ...loaded, eosIds: [] });

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function markdown(r: BrowserBenchReport): string {
  const lines = [
    '# ppd in the browser against Node',
    '',
    `\`${r.command}\`, ${r.date}, ${fmt(r.durationSeconds, 0)} s. ${r.browser.name} ${r.browser.version}, onnxruntime-web ${r.browser.ortWeb} (WebAssembly) against onnxruntime-node ${r.machine.onnxruntime} (CPU), on ${r.machine.cpuModel}.`,
    `Model \`${r.model.dir}\` (${fmt(r.model.parameters / 1e6, 2)}M parameters); PPD = adapter \`${r.adapter.dir}\` with context lookup ${r.adapter.lookup} and each side's own trees: ${r.adapter.trees.map((t) => `${t.threads} thread${t.threads === 1 ? '' : 's'}: Node ${t.node}, page ${t.page}`).join('; ')}.`,
    `${r.workload.prompts.length} held-out prompts × ${r.workload.maxTokens} new tokens, greedy, median of ${r.workload.repeats} timed runs each; each figure below is the median over the prompts.`,
    '',
    r.identity.mismatches.length === 0
      ? `**Output:** the page's greedy ids equal Node's, and PPD equals plain, in all ${r.identity.runs} comparisons.`
      : `**Output: ${r.identity.mismatches.length} of ${r.identity.runs} comparisons differ** — ${r.identity.mismatches.join('; ')}.`,
    '',
    '## Targets',
    '',
    '| target | goal | measured | met |',
    '| --- | --- | --- | --- |',
    ...r.targets.map((t) => `| ${t.name} | ${t.target} | ${t.measured} | ${t.met ? 'yes' : '**no**'} |`),
    '',
    '## Tokens/s',
    '',
    '| threads | decoder | Node | page | page / Node | tokens per step |',
    '| --- | --- | --- | --- | --- | --- |',
    ...r.throughput.map((t) => `| ${t.threads} | ${DECODER_NAMES[t.decoder]} | ${fmt(t.nodeTokensPerSecond)} | ${fmt(t.pageTokensPerSecond)} | ${fmt(t.pageOverNode, 2)}× | ${fmt(t.tokensPerStep, 2)} |`),
    '',
    'Speedups: the median over prompts of each prompt\'s own ratio (its runs alternate within a few seconds, so the machine\'s drift cancels), not the ratio of the medians above.',
    '',
    '| threads | decoder | speedup over plain in Node | in the page | page / Node |',
    '| --- | --- | --- | --- | --- |',
    ...r.speedups.map((s) => `| ${s.threads} | ${DECODER_NAMES[s.decoder]} | ${fmt(s.node, 2)}× | ${fmt(s.page, 2)}× | ${fmt(s.pageOverNode, 2)} |`),
    '',
    '![tokens/s](browser.svg)',
    '',
    '## Forward latency against rows',
    '',
    'One forward over T new rows (a prefill of T tokens, no cache), median of ' + ROW_REPEATS + ' after warm-up: a PPD step verifies several rows at once, so its cost relative to a one-token step decides its speedup.',
    '',
    '| threads | T | Node ms | page ms | Node L(T)/L(1) | page L(T)/L(1) |',
    '| --- | --- | --- | --- | --- | --- |',
    ...r.rows.map((x) => {
      const one = r.rows.find((y) => y.threads === x.threads && y.rows === 1)!;
      return `| ${x.threads} | ${x.rows} | ${fmt(x.nodeMs, 2)} | ${fmt(x.pageMs, 2)} | ${fmt(x.nodeMs / one.nodeMs, 2)} | ${fmt(x.pageMs / one.pageMs, 2)} |`;
    }),
    '',
    '## First token after opening the page',
    '',
    'A fresh browser profile opens `/browser/` with its defaults and generates (PPD) as soon as the model is ready; then a second visit.',
    '',
    '| visit | runtime | graph | opening → ready | request → first token | total |',
    '| --- | --- | --- | --- | --- | --- |',
    ...r.firstToken.map((f) => `| ${f.visit} | ${f.runtime} | ${f.graph} | ${fmt(f.readySeconds, 2)} s | ${fmt(f.firstTokenSeconds, 3)} s | ${fmt(f.totalSeconds, 2)} s |`),
    '',
    ...machineSection(r.machine, r.load),
    `Chromium's processes count as the benchmark's own CPU; "other processes" is everything else during the timed generations (${fmt(r.load.wallSeconds, 0)} s).`,
    '',
  ];
  return lines.join('\n');
}

await runBenchmark(main);
