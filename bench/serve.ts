/**
 * Server benchmark: `ppd serve` on loopback under 1, 2, 4 and 8 concurrent streaming clients,
 * plain decoding and PPD, with batching (concurrent generations share forwards) and without (one
 * generation at a time), all in one run. Per configuration: total tokens per second, time to
 * first token and inter-token latency (p50 / p95), errors, and whether every greedy output equals
 * the same request's output when sent alone; over the run, whether memory stays bounded. Writes
 * docs/bench/serve.json (schema `ServeBenchReport` below), serve.md and serve.svg.
 *
 *   npm run bench:serve                      models/ppd-base with its adapter, 20 s per configuration
 *   npm run bench:serve -- --quick           smoke check: a tiny random model with an untrained
 *                                            adapter, 3 s per configuration, to a temporary folder
 *   --model DIR --ppd DIR                    another model / adapter folder (with its trees.json)
 *   --clients 1,2,4,8 --seconds S            client counts, seconds each configuration runs
 *   --repeats N                              runs of each configuration (default 1), the two servers
 *                                            taken in turn (off, on, on, off, ...), pooled
 *   --max-tokens N --prompts N               new tokens per request (64), distinct prompts (8)
 *   --part plain|ppd                         only one decoding mode (to split a long run in two)
 *   --threads N                              ONNX Runtime intra-op threads (default: all cores)
 *
 * How. Two servers run in this process (buildServer, as `ppd serve` does) on 127.0.0.1 over the
 * same loaded model: one batching (its default: --concurrency 8), one without (--no-batching,
 * one generation at a time, as ppd served before batching); each has a queue as long as the
 * largest client count, so a correct server never answers 429. First every (prompt, mode) pair
 * is sent alone, whole and greedy, to the server without batching: the references. Then, for
 * each mode, client count and server in turn, each client loops for the configuration's seconds:
 * a streaming greedy completion of the next prompt (`ppd: false` for plain), read event by event
 * on a thread of the clients' own (client-thread.ts: a forward holds this thread's event loop, so
 * clients here would read each chunk only after the server's next forward);
 * every answer must be 200, end with [DONE], carry no error event and hold exactly the reference
 * text. Requests started before the deadline finish; none starts after. Time to first token is
 * from sending to the first chunk with tokens; inter-token latency is each later chunk's gap
 * divided by its tokens. Resident memory is sampled every 250 ms over the whole run; it counts as
 * bounded when the second half peaks at most max(32 MiB, 10 %) above the first half's peak.
 *
 * Targets the report checks (issue 16): with batching, at 4 clients total tokens/s >= 2.5x the
 * server without batching, at 8 >= 3x; p95 time to first token at 4 clients <= 2x the figure at
 * one client; every greedy output identical; no errors. What it is not: a test (the tests are
 * test/server*.test.ts, test/batch.test.ts) and not a decoding benchmark (bench:ppd). Errors and
 * mismatches make the exit code 1, after the report is written.
 */
import { promptHeadOf } from '../src/ppd/adapter-files.ts';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { DEFAULT_ADAPTER, DEFAULT_MODEL } from '../src/cli/demo.ts';
import { InputError } from '../src/errors.ts';
import { loadModel, type LoadedModel } from '../src/checkpoint/load.ts';
import { parameterCount } from '../src/model/config.ts';
import { writeRandomModel } from '../src/checkpoint/random-init.ts';
import { allocateRows } from '../src/generate/row-budget.ts';
import type { LatencyCurve } from '../src/decode/latency.ts';
import { PREFILL_CHUNK } from '../src/decode/rows.ts';
import { PromptAdapter } from '../src/ppd/adapter.ts';
import { PpdDecoder } from '../src/ppd/decode.ts';
import { Sampler } from '../src/sampling/sampler.ts';
import { loadPpdSetup, TREES_FILE, type PpdSetup } from '../src/ppd/setup.ts';
import { buildTreeSet } from '../src/ppd/tree-builder.ts';
import { buildServer, DEFAULT_BATCH_SEQUENCES, measureServerLatency } from '../src/server/app.ts';
import { byteFallbackTokenizerConfig, byteFallbackTokenizerJson } from '../src/tokenizer/byte-tokenizer.ts';
import { quantiles, runClients, type ClientsRun, type Quantiles, type StreamOutcome } from './client.ts';
import { BUSY_MACHINE_CORES, bytes, describeMachine, fmt, machineSection, otherCpu, parseBenchArgs, positiveInt, REPO_ROOT, repoPath, runBenchmark, shownPath, watchLoad, writeReportFiles, type Machine, type PhaseLoad } from './harness.ts';
import { heldOutTextFor, selectPrompts } from './prompts.ts';

// ---------------------------------------------------------------------------------------------
// Report schema (docs/bench/serve.json). Times in seconds, rates per second, sizes in bytes.

type Mode = 'plain' | 'ppd';

export interface ServeBenchReport {
  schema: 'ppd.bench.serve/3';
  mode: 'full' | 'quick';
  command: string;
  /** ISO 8601, when the run started. */
  date: string;
  durationSeconds: number;
  machine: Machine;
  model: { dir: string; parameters: number; contextLength: number };
  adapter: { dir: string; trees: string; lookup: number; verification: string };
  workload: { clients: number[]; secondsEach: number; /** Runs of each configuration, servers in turn, pooled. */ repeats: number; maxTokens: number; prompts: number; batchSequences: number; requests: 'streamed, greedy' };
  /** L(n) the batching server measured when it started (its row budget's input), ms. */
  latency: { rows: number; ms: number }[];
  /**
   * What the row budget gives each of `sequences` PPD sequences with every guess list in hand,
   * from that L(n) and the served tree set (trees only: a fresh sequence has no lookup record).
   */
  rowBudget: { sequences: number; /** Mean over the sequences. */ rowsEach: number; expectedTokensEach: number; predictedTokensPerSecond: number }[];
  references: { mismatchesPpdVsPlain: number };
  configurations: Configuration[];
  /** Batching over no batching, per mode and client count. */
  speedups: { mode: Mode; clients: number; tokensPerSecond: number }[];
  memory: { samples: number; firstHalfPeak: number; secondHalfPeak: number; bounded: boolean };
  checks: { name: string; pass: boolean; detail: string }[];
  load: PhaseLoad;
}

export interface Configuration {
  mode: Mode;
  batching: boolean;
  clients: number;
  requests: number;
  errors: number;
  /** The first few errors, as "prompt p: what". */
  errorSamples: string[];
  /** Requests whose text differed from the same request sent alone. */
  mismatches: number;
  newTokens: number;
  tokensPerSecond: number;
  acceptedPerStep: number;
  timeToFirstToken: Quantiles;
  interTokenLatency: Quantiles;
  wallSeconds: number;
  /** Other processes' CPU while it ran (cores). */
  otherCores: number | null;
}

// ---------------------------------------------------------------------------------------------
// Plan.

interface Plan {
  mode: 'full' | 'quick';
  threads: number;
  outDir: string;
  /** Absent: a tiny random model (quick runs). */
  modelDir?: string;
  adapterDir?: string;
  clients: number[];
  seconds: number;
  /** Runs of each configuration, the servers taken in turn; their requests are pooled. */
  repeats: number;
  maxTokens: number;
  prompts: number;
  modes: Mode[];
}

function planFromArgs(argv: string[]): Plan {
  const { quick, threads, flags } = parseBenchArgs(argv, ['model', 'ppd', 'clients', 'seconds', 'repeats', 'max-tokens', 'prompts', 'part']);
  const modelDir = flags.model ?? (quick ? undefined : DEFAULT_MODEL);
  const adapterDir = flags.ppd ?? (modelDir === undefined ? undefined : flags.model === undefined ? DEFAULT_ADAPTER : join(modelDir, 'ppd'));
  if (modelDir !== undefined && !existsSync(join(modelDir, 'config.json'))) {
    throw new InputError(`${modelDir}: no model here (train the default one with \`npm run pretrain:default\`, name one with --model DIR, or smoke-test with --quick)`);
  }
  if (adapterDir !== undefined && !existsSync(join(adapterDir, TREES_FILE))) {
    throw new InputError(`${adapterDir}: no PPD adapter with ${TREES_FILE} here (make one with \`ppd train-prompts\`, or name one with --ppd DIR)`);
  }
  const clients = (flags.clients ?? '1,2,4,8').split(',').map((c) => positiveInt('clients', c.trim(), 1));
  if (flags.part !== undefined && flags.part !== 'plain' && flags.part !== 'ppd') throw new InputError(`--part must be plain or ppd, got ${JSON.stringify(flags.part)}`);
  return {
    mode: quick ? 'quick' : 'full',
    threads,
    outDir: quick ? join(tmpdir(), 'ppd-bench-serve-quick') : join(REPO_ROOT, 'docs', 'bench'),
    modelDir,
    adapterDir,
    clients,
    seconds: positiveInt('seconds', flags.seconds, quick ? 3 : 20),
    repeats: positiveInt('repeats', flags.repeats, 1),
    maxTokens: positiveInt('max-tokens', flags['max-tokens'], quick ? 16 : 64),
    prompts: positiveInt('prompts', flags.prompts, quick ? 3 : 8),
    modes: flags.part === undefined ? ['plain', 'ppd'] : [flags.part],
  };
}

// ---------------------------------------------------------------------------------------------
// The model: the named one, or a tiny random one with an untrained adapter (greedy PPD still
// equals plain decoding; it just accepts few guesses).

const TINY_SHAPE = { model_type: 'llama', vocab_size: 260, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 512, eos_token_id: 2 };
const TINY_PROMPTS = ['The server answered', 'Once upon a time', 'In the beginning', 'A quick brown fox', 'Parallel prompt decoding', 'Tokens per second', 'Hello, world', 'Streaming events'];

interface Served {
  loaded: LoadedModel;
  ppd: PpdSetup;
  prompts: string[];
  cleanup: () => Promise<void>;
}

async function openModel(plan: Plan): Promise<Served> {
  if (plan.modelDir !== undefined) {
    const loaded = await loadModel(plan.modelDir, { threads: plan.threads, needsTokenizer: true, promptHead: promptHeadOf(plan.adapterDir!) });
    const ppd = loadPpdSetup(loaded.config, plan.adapterDir!, { threads: plan.threads, modelDir: plan.modelDir });
    const prompts = selectPrompts(loaded, plan.prompts, heldOutTextFor(loaded)).map((p) => p.text);
    return { loaded, ppd, prompts, cleanup: () => loaded.model.release() };
  }
  const dir = mkdtempSync(join(tmpdir(), 'ppd-bench-serve-model-'));
  writeRandomModel(dir, TINY_SHAPE, { seed: 5, tokenizerJson: byteFallbackTokenizerJson() });
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(byteFallbackTokenizerConfig()));
  const loaded = await loadModel(dir, { threads: plan.threads, cacheDir: false, needsTokenizer: true });
  const accuracies = [0, 1, 2].map((i) => Array.from({ length: 6 }, (_, k) => 0.45 * Math.pow(0.5, k) * Math.pow(0.8, i)));
  const adapter = PromptAdapter.initialise(loaded.config, (ids) => loaded.model.embed(ids), [70, 80], { promptTokens: 3, virtualTokens: 1, attention: 'ensemble', initText: 't' });
  const ppd: PpdSetup = { adapter, trees: buildTreeSet(accuracies, { budget: 12, promptTokens: 3, virtualTokens: 1 }), verification: 'coupled', lookup: 8 };
  const prompts = Array.from({ length: plan.prompts }, (_, i) => TINY_PROMPTS[i % TINY_PROMPTS.length]! + (i >= TINY_PROMPTS.length ? ` ${i}` : ''));
  return {
    loaded,
    ppd,
    prompts,
    cleanup: async () => {
      await loaded.model.release();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 });
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}

/**
 * The row budget's choice for 1..max PPD sequences at full guess lists: rows and expected tokens
 * per sequence, and the predicted total tokens/s (Σ expected tokens / L(rows)).
 */
function rowBudgetTable(served: Served, latency: LatencyCurve, counts: readonly number[]): ServeBenchReport['rowBudget'] {
  const decoder = new PpdDecoder(served.loaded.model, { ...served.ppd, sampler: new Sampler({ temperature: 0 }) });
  const full = Array.from({ length: served.ppd.adapter.promptTokens }, () => [] as number[]);
  const options = decoder.stepOptions(0, full, PREFILL_CHUNK);
  const tokensAt = (rows: number) => options.filter((o) => o.rows <= rows).at(-1)!.expectedTokens;
  return counts.map((sequences) => {
    const budgets = allocateRows(Array.from({ length: sequences }, () => options), latency, 0, PREFILL_CHUNK);
    const rows = budgets.reduce((n, b) => n + b, 0);
    const tokens = budgets.reduce((n, b) => n + tokensAt(b), 0);
    return { sequences, rowsEach: rows / sequences, expectedTokensEach: tokens / sequences, predictedTokensPerSecond: (tokens * 1000) / latency.at(rows) };
  });
}

// ---------------------------------------------------------------------------------------------
// Clients.

interface Outcome extends StreamOutcome {
  prompt: number;
}

const request = (prompt: string, mode: Mode, maxTokens: number) => ({ prompt, max_tokens: maxTokens, temperature: 0, ppd: mode === 'ppd' });

/** One run of the clients, and the CPU other processes used meanwhile (cores; null where unknown). */
interface Measured {
  run: ClientsRun;
  otherCores: number | null;
}

/** One run of `clients` clients against `url` for the plan's seconds. */
async function runOnce(url: string, prompts: string[], plan: Plan, mode: Mode, clients: number): Promise<Measured> {
  const endLoad = watchLoad();
  const bodies = prompts.map((prompt) => request(prompt, mode, plan.maxTokens));
  const run = await runClients({ url, bodies, clients, seconds: plan.seconds });
  return { run, otherCores: endLoad().otherCores };
}

/**
 * Both servers at one client count: `plan.repeats` runs of each, taken in turn (off, on, on, off,
 * ...) so that both meet the machine's drift alike; each server's runs are pooled.
 */
async function runConfigurations(urls: { alone: string; batching: string }, prompts: string[], references: Map<string, string>, plan: Plan, mode: Mode, clients: number): Promise<Configuration[]> {
  const runs = new Map<boolean, Measured[]>([[false, []], [true, []]]);
  for (let r = 0; r < plan.repeats; r++) {
    for (const batching of r % 2 === 0 ? [false, true] : [true, false]) runs.get(batching)!.push(await runOnce(batching ? urls.batching : urls.alone, prompts, plan, mode, clients));
  }
  return [false, true].map((batching) => summary(runs.get(batching)!, references, mode, batching, clients));
}

function summary(runs: Measured[], references: Map<string, string>, mode: Mode, batching: boolean, clients: number): Configuration {
  const outcomes: Outcome[] = runs.flatMap(({ run }) => run.outcomes.map(({ body, ...o }) => ({ ...o, prompt: body })));
  const wallSeconds = runs.reduce((n, { run }) => n + run.wallSeconds, 0);
  const ok = outcomes.filter((o) => o.ok);
  const errors = outcomes.filter((o) => !o.ok);
  const newTokens = ok.reduce((n, o) => n + o.newTokens, 0);
  const steps = ok.reduce((n, o) => n + (o.acceptedPerStep > 0 ? o.newTokens / o.acceptedPerStep : 0), 0);
  return {
    mode,
    batching,
    clients,
    requests: outcomes.length,
    errors: errors.length,
    errorSamples: errors.slice(0, 3).map((o) => `prompt ${o.prompt}: ${o.error}`),
    mismatches: ok.filter((o) => o.text !== references.get(`${o.prompt}/${mode}`)).length,
    newTokens,
    tokensPerSecond: newTokens / wallSeconds,
    acceptedPerStep: steps > 0 ? newTokens / steps : 0,
    timeToFirstToken: quantiles(ok.map((o) => o.timeToFirstToken)),
    interTokenLatency: quantiles(ok.flatMap((o) => o.interTokenLatencies)),
    wallSeconds,
    otherCores: runs.some((r) => r.otherCores === null) ? null : runs.reduce((n, r) => n + r.otherCores! * r.run.wallSeconds, 0) / wallSeconds,
  };
}

// ---------------------------------------------------------------------------------------------
// Report.

const ms = (seconds: number) => fmt(seconds * 1000, 1);

function markdown(r: ServeBenchReport, chartFile: string): string {
  const configRow = (c: Configuration) =>
    `| ${c.mode === 'ppd' ? 'PPD' : 'plain'} | ${c.batching ? 'on' : 'off'} | ${c.clients} | ${c.requests} | ${fmt(c.tokensPerSecond, 1)} | ${fmt(c.acceptedPerStep, 2)} | ${ms(c.timeToFirstToken.p50)} / ${ms(c.timeToFirstToken.p95)} | ${ms(c.interTokenLatency.p50)} / ${ms(c.interTokenLatency.p95)} | ${c.errors} | ${c.requests - c.errors - c.mismatches}/${c.requests - c.errors} |`;
  return [
    '# Server benchmark',
    '',
    `\`${r.command}\` on ${r.date.slice(0, 10)} (${r.mode} run, ${fmt(r.durationSeconds, 0)} s): streaming clients (on a thread of their own) against \`ppd serve\` on loopback, ${r.workload.clients.join(', ')} at once, ` +
      `${r.workload.repeats > 1 ? `${r.workload.repeats} runs of ${r.workload.secondsEach} s per configuration (the two servers taken in turn, requests pooled)` : `${r.workload.secondsEach} s per configuration`}, ${r.workload.prompts} prompts × ${r.workload.maxTokens} new tokens, greedy; plain decoding and PPD, each with batching ` +
      `(up to ${r.workload.batchSequences} sequences share each forward) and without (one generation at a time). Model \`${r.model.dir}\` (${(r.model.parameters / 1e6).toFixed(2)} M parameters), ` +
      `adapter \`${r.adapter.dir}\` (trees \`${r.adapter.trees}\`, lookup ${r.adapter.lookup}).`,
    '',
    '## Checks',
    '',
    '| check | result | detail |',
    '| --- | --- | --- |',
    ...r.checks.map((c) => `| ${c.name} | ${c.pass ? 'pass' : '**FAIL**'} | ${c.detail} |`),
    '',
    '## Throughput: batching over one at a time',
    '',
    `![total tokens/s against clients](${chartFile})`,
    '',
    '| mode | clients | tokens/s, batching ÷ without |',
    '| --- | --- | --- |',
    ...r.speedups.map((s) => `| ${s.mode === 'ppd' ? 'PPD' : 'plain'} | ${s.clients} | ${fmt(s.tokensPerSecond, 2)}× |`),
    '',
    '## Every configuration',
    '',
    'Time to first token (TTFT): from sending to the first chunk with tokens. Inter-token latency (ITL): each later chunk\'s gap over its tokens. Identical: outputs equal to the same request sent alone (of those without error).',
    '',
    '| mode | batching | clients | requests | total tokens/s | tokens/step | TTFT p50 / p95 (ms) | ITL p50 / p95 (ms) | errors | identical |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...r.configurations.map(configRow),
    '',
    '## Row budget',
    '',
    `L(n) the batching server measured at start (its row budget's input): ${r.latency.map((p) => `${p.rows} rows ${fmt(p.ms, 2)} ms`).join(', ')}.`,
    '',
    'What the row budget (docs/BATCHING.md) gives each of B PPD sequences holding every guess list, from that L(n) and the served tree set (trees only; a fresh sequence has no lookup record):',
    '',
    '| sequences B | rows each | expected tokens each | predicted total tokens/s |',
    '| --- | --- | --- | --- |',
    ...r.rowBudget.map((b) => `| ${b.sequences} | ${fmt(b.rowsEach, 1)} | ${fmt(b.expectedTokensEach, 2)} | ${fmt(b.predictedTokensPerSecond, 0)} |`),
    '',
    `Memory (resident, whole process: servers and clients): peak ${bytes(r.memory.firstHalfPeak)} in the first half of the run and ${bytes(r.memory.secondHalfPeak)} in the second (${r.memory.samples} samples).`,
    '',
    ...(r.configurations.some((c) => c.errorSamples.length > 0)
      ? ['## First errors', '', ...r.configurations.flatMap((c) => c.errorSamples.map((e) => `- ${c.mode}, batching ${c.batching ? 'on' : 'off'}, ${c.clients} clients: ${e}`)), '']
      : []),
    ...machineSection(r.machine, r.load),
    ...(r.load.otherCores !== null && r.load.otherCores > BUSY_MACHINE_CORES
      ? [`**Warning:** other processes used ${otherCpu(r.load)} during the run; the rates understate the server. Rerun on an idle machine.`, '']
      : []),
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Main.

async function main(argv: string[]): Promise<void> {
  const plan = planFromArgs(argv);
  const date = new Date().toISOString();
  const started = performance.now();
  const machine = describeMachine(plan.threads);
  const served = await openModel(plan);
  const maxClients = Math.max(...plan.clients);
  const latency = await measureServerLatency(served.loaded.model);
  const common = { loaded: served.loaded, ppd: served.ppd, maxWaiting: maxClients, defaultMaxTokens: plan.maxTokens };
  const batchingApp = buildServer({ ...common, latency });
  const aloneApp = buildServer({ ...common, batching: false });
  try {
    const urls = { batching: await listen(batchingApp), alone: await listen(aloneApp) };
    const { prompts } = served;
    process.stderr.write(`serve benchmark (${plan.mode}): ${plan.modes.join(' and ')}, clients ${plan.clients.join('/')}, batching on/off, ${plan.repeats > 1 ? `${plan.repeats} × ` : ''}${plan.seconds} s each; ${prompts.length} prompts × ${plan.maxTokens} tokens; ${machine.cores} cores, ${plan.threads} threads\n`);

    // References: each (prompt, mode) alone, whole, without batching.
    const references = new Map<string, string>();
    let mismatchesPpdVsPlain = 0;
    for (let p = 0; p < prompts.length; p++) {
      for (const mode of ['plain', 'ppd'] as const) {
        const response = await fetch(`${urls.alone}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(request(prompts[p]!, mode, plan.maxTokens)) });
        if (response.status !== 200) throw new Error(`reference request failed: HTTP ${response.status} ${await response.text()}`);
        references.set(`${p}/${mode}`, (await response.json()).choices[0].text);
      }
      if (references.get(`${p}/ppd`) !== references.get(`${p}/plain`)) mismatchesPpdVsPlain++;
    }

    const rss: { at: number; rss: number }[] = [];
    const runStart = performance.now();
    const sampler = setInterval(() => rss.push({ at: performance.now() - runStart, rss: process.memoryUsage().rss }), 250);
    const endLoad = watchLoad();
    const configurations: Configuration[] = [];
    for (const mode of plan.modes) {
      for (const clients of plan.clients) {
        for (const c of await runConfigurations(urls, prompts, references, plan, mode, clients)) {
          configurations.push(c);
          process.stderr.write(`  ${mode} ${c.batching ? 'batching' : 'one at a time'} × ${clients}: ${fmt(c.tokensPerSecond, 1)} tokens/s, TTFT p95 ${ms(c.timeToFirstToken.p95)} ms, ITL p95 ${ms(c.interTokenLatency.p95)} ms, ${c.errors} errors, ${c.mismatches} mismatches\n`);
        }
      }
    }
    const load = endLoad();
    clearInterval(sampler);
    const half = (rss.at(-1)?.at ?? 0) / 2;
    const firstHalfPeak = Math.max(...rss.filter((s) => s.at <= half).map((s) => s.rss));
    const secondHalfPeak = Math.max(...rss.filter((s) => s.at > half).map((s) => s.rss));
    const bounded = secondHalfPeak - firstHalfPeak <= Math.max(32 * 2 ** 20, 0.1 * firstHalfPeak);

    const find = (mode: Mode, batching: boolean, clients: number) => configurations.find((c) => c.mode === mode && c.batching === batching && c.clients === clients);
    const speedups = plan.modes.flatMap((mode) => plan.clients.map((clients) => ({ mode, clients, tokensPerSecond: find(mode, true, clients)!.tokensPerSecond / find(mode, false, clients)!.tokensPerSecond })));
    const speedupCheck = (clients: number, target: number) =>
      plan.modes.map((mode) => {
        const s = speedups.find((x) => x.mode === mode && x.clients === clients);
        return { name: `${mode === 'ppd' ? 'PPD' : 'plain'}, ${clients} clients: batching ≥ ${target}× the tokens/s of one at a time`, pass: s !== undefined && s.tokensPerSecond >= target, detail: s ? `${fmt(s.tokensPerSecond, 2)}×` : 'not run' };
      });
    const ttftCheck = plan.modes.map((mode) => {
      const one = find(mode, true, 1);
      const four = find(mode, true, 4);
      const ratio = one && four ? four.timeToFirstToken.p95 / one.timeToFirstToken.p95 : NaN;
      return { name: `${mode === 'ppd' ? 'PPD' : 'plain'}, batching: p95 TTFT at 4 clients ≤ 2× at 1`, pass: ratio <= 2, detail: one && four ? `${ms(four.timeToFirstToken.p95)} ms vs ${ms(one.timeToFirstToken.p95)} ms (${fmt(ratio, 2)}×)` : 'not run' };
    });
    const errors = configurations.reduce((n, c) => n + c.errors, 0);
    const mismatches = configurations.reduce((n, c) => n + c.mismatches, 0);
    const requests = configurations.reduce((n, c) => n + c.requests, 0);
    const report: ServeBenchReport = {
      schema: 'ppd.bench.serve/3',
      mode: plan.mode,
      command: `npm run bench:serve${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`,
      date,
      durationSeconds: (performance.now() - started) / 1000,
      machine,
      model: { dir: plan.modelDir === undefined ? '(tiny random model)' : repoPath(plan.modelDir), parameters: parameterCount(served.loaded.config), contextLength: served.loaded.config.maxPositionEmbeddings },
      adapter: {
        dir: plan.adapterDir === undefined ? '(untrained)' : repoPath(plan.adapterDir),
        trees: served.ppd.treesFile === undefined ? '(built in memory)' : repoPath(served.ppd.treesFile),
        lookup: served.ppd.lookup ?? 0,
        verification: served.ppd.verification,
      },
      workload: { clients: plan.clients, secondsEach: plan.seconds, repeats: plan.repeats, maxTokens: plan.maxTokens, prompts: prompts.length, batchSequences: DEFAULT_BATCH_SEQUENCES, requests: 'streamed, greedy' },
      latency: latency.points.map((p) => ({ ...p })),
      rowBudget: rowBudgetTable(served, latency, plan.clients),
      references: { mismatchesPpdVsPlain },
      configurations,
      speedups,
      memory: { samples: rss.length, firstHalfPeak, secondHalfPeak, bounded },
      checks: [
        ...(plan.clients.includes(4) ? speedupCheck(4, 2.5) : []),
        ...(plan.clients.includes(8) ? speedupCheck(8, 3) : []),
        ...(plan.clients.includes(1) && plan.clients.includes(4) ? ttftCheck : []),
        { name: 'every greedy output equals the same request sent alone', pass: mismatches === 0, detail: `${requests - errors - mismatches} of ${requests - errors}` },
        { name: 'greedy PPD equals plain decoding on every prompt (references)', pass: mismatchesPpdVsPlain === 0, detail: `${prompts.length - mismatchesPpdVsPlain} of ${prompts.length}` },
        { name: 'no errors (every request 200, [DONE], no error event)', pass: errors === 0, detail: `${errors} of ${requests}` },
        { name: 'memory bounded (second-half peak ≤ first-half peak + max(32 MiB, 10 %))', pass: bounded, detail: `${bytes(firstHalfPeak)} → ${bytes(secondHalfPeak)}` },
      ],
      load,
    };
    const chart = {
      title: 'ppd serve: total tokens/s against concurrent clients',
      x: { title: 'concurrent streaming clients', logBase: 2 },
      y: { title: 'total tokens/s' },
      series: plan.modes.flatMap((mode) =>
        [true, false].map((batching) => ({
          name: `${mode === 'ppd' ? 'PPD' : 'plain'}, ${batching ? 'batching' : 'one at a time'}`,
          points: configurations.filter((c) => c.mode === mode && c.batching === batching).map((c) => ({ x: c.clients, y: c.tokensPerSecond })),
        })),
      ),
    };
    const paths = await writeReportFiles(plan.outDir, 'serve', report, markdown(report, 'serve.svg'), 'serve.svg', chart);
    for (const path of paths) console.log(`wrote ${shownPath(path)}`);
    const failed = report.checks.filter((c) => !c.pass);
    if (failed.length > 0) {
      process.stderr.write(`error: ${failed.map((c) => c.name).join('; ')} failed; see the report\n`);
      process.exitCode = 1;
    }
  } finally {
    await Promise.all([batchingApp.close(), aloneApp.close()]);
    await served.cleanup();
  }
}

await runBenchmark(main);
