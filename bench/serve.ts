/**
 * Server benchmark: `ppd serve` under N concurrent streaming clients on loopback for a bounded
 * time. It checks what a user of the server relies on — zero errors, greedy outputs equal to
 * those of the same request sent alone, memory that stays bounded — and measures throughput,
 * time to first token and latency per decoding mode. Writes docs/bench/serve.json (the data;
 * schema: `ServeBenchReport` below) and docs/bench/serve.md (the same for people).
 *
 *   npm run bench:serve                      full run: models/ppd-base with its adapter, 4 clients, 60 s
 *   npm run bench:serve -- --quick           smoke check: a tiny random model with an untrained
 *                                            adapter, 2 clients, 4 s; written to a temporary folder
 *   --model DIR --ppd DIR                    another model / adapter folder (with its trees.json)
 *   --clients N --seconds S                  concurrent clients (4), time new requests start in (60)
 *   --max-tokens N --prompts N               new tokens per request (64), distinct prompts (8)
 *   --concurrency N                          the server's generation slots (1, as `ppd serve`)
 *   --threads N                              ONNX Runtime intra-op threads (default: all cores)
 *
 * How. The server runs in this process (buildServer, as `ppd serve` does) on 127.0.0.1 with a
 * queue as long as the number of clients, so a correct server never answers 429. First every
 * (prompt, mode) pair is sent alone as a whole greedy request: the references. Then each client
 * loops until the time is up: a streaming greedy completion with the next prompt,
 * alternating PPD and plain (`ppd: false`), read event by event; every answer must be 200, end
 * with `[DONE]`, carry no error event and hold exactly the reference text. Requests started
 * before the deadline finish; none starts after. Resident memory and the server's queue are
 * sampled every 250 ms; memory counts as bounded when the second half of the run peaks at most
 * max(32 MiB, 10 %) above the first half's peak.
 *
 * What it is not: a test (the tests are test/server*.test.ts) and not a model benchmark (bench:ppd
 * measures decoding itself). Errors and mismatches make the exit code 1, after the report is written.
 */
import { promptHeadOf } from '../src/ppd/adapter-files.ts';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_ADAPTER, DEFAULT_MODEL } from '../src/cli/demo.ts';
import { InputError } from '../src/errors.ts';
import { writeFileAtomic, writeJsonAtomic } from '../src/format/atomic.ts';
import { loadModel, type LoadedModel } from '../src/checkpoint/load.ts';
import { parameterCount } from '../src/model/config.ts';
import { writeRandomModel } from '../src/checkpoint/random-init.ts';
import { PromptAdapter } from '../src/ppd/adapter.ts';
import { loadPpdSetup, TREES_FILE, type PpdSetup } from '../src/ppd/setup.ts';
import { buildTreeSet } from '../src/ppd/tree-builder.ts';
import { buildServer } from '../src/server/app.ts';
import { byteFallbackTokenizerConfig, byteFallbackTokenizerJson } from '../src/tokenizer/byte-tokenizer.ts';
import { BUSY_MACHINE_CORES, bytes, describeMachine, fmt, machineSection, otherCpu, parseBenchArgs, positiveInt, REPO_ROOT, repoPath, runBenchmark, shownPath, watchLoad, type Machine, type PhaseLoad } from './harness.ts';
import { quantiles, streamCompletion, type Quantiles, type StreamOutcome } from './client.ts';
import { selectPrompts } from './prompts.ts';

// ---------------------------------------------------------------------------------------------
// Report schema (docs/bench/serve.json). Times in seconds, rates per second, sizes in bytes.

export interface ServeBenchReport {
  schema: 'ppd.bench.serve/1';
  mode: 'full' | 'quick';
  command: string;
  /** ISO 8601, when the run started. */
  date: string;
  durationSeconds: number;
  machine: Machine;
  model: { dir: string; parameters: number; contextLength: number };
  adapter: { dir: string; trees: string };
  workload: { clients: number; seconds: number; maxTokens: number; prompts: number; concurrency: number; modes: 'alternating ppd / plain, greedy, streamed' };
  results: {
    requests: number;
    errors: number;
    /** The first few errors, as "client c, request r: what". */
    errorSamples: string[];
    /** Requests whose text differed from the same request sent alone. */
    mismatches: number;
    /** References whose PPD and plain texts differ (greedy PPD must equal plain decoding). */
    referenceMismatches: number;
    newTokens: number;
    /** All new tokens over the load phase's wall time. */
    tokensPerSecond: number;
    byMode: Record<'ppd' | 'plain', ModeResult>;
  };
  memory: { samples: number; rssBefore: number; firstHalfPeak: number; secondHalfPeak: number; rssAfter: number; bounded: boolean };
  queue: { maxWaiting: number; maxActive: number };
  checks: { name: string; pass: boolean }[];
  load: PhaseLoad;
}

export interface ModeResult {
  requests: number;
  newTokens: number;
  /** Mean tokens accepted per decoding step, from the streams' final `decoding` objects. */
  acceptedPerStep: number;
  timeToFirstToken: Quantiles;
  latency: Quantiles;
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
  clients: number;
  seconds: number;
  maxTokens: number;
  prompts: number;
  concurrency: number;
}

function planFromArgs(argv: string[]): Plan {
  // --quick and --threads are read and checked by the harness; the rest are this benchmark's.
  const { quick, threads, flags: values } = parseBenchArgs(argv, ['model', 'ppd', 'clients', 'seconds', 'max-tokens', 'prompts', 'concurrency']);
  const modelDir = values.model ?? (quick ? undefined : DEFAULT_MODEL);
  const adapterDir = values.ppd ?? (modelDir === undefined ? undefined : values.model === undefined ? DEFAULT_ADAPTER : join(modelDir, 'ppd'));
  if (modelDir !== undefined && !existsSync(join(modelDir, 'config.json'))) {
    throw new InputError(`${modelDir}: no model here (train the default one with \`npm run pretrain:default\`, name one with --model DIR, or smoke-test with --quick)`);
  }
  if (adapterDir !== undefined && !existsSync(join(adapterDir, TREES_FILE))) {
    throw new InputError(`${adapterDir}: no PPD adapter with ${TREES_FILE} here (make one with \`ppd train-prompts\`, or name one with --ppd DIR)`);
  }
  return {
    mode: quick ? 'quick' : 'full',
    threads,
    outDir: quick ? join(tmpdir(), 'ppd-bench-serve-quick') : join(REPO_ROOT, 'docs', 'bench'),
    modelDir,
    adapterDir,
    clients: positiveInt('clients', values.clients, quick ? 2 : 4),
    seconds: positiveInt('seconds', values.seconds, quick ? 4 : 60),
    maxTokens: positiveInt('max-tokens', values['max-tokens'], quick ? 16 : 64),
    prompts: positiveInt('prompts', values.prompts, quick ? 3 : 8),
    concurrency: positiveInt('concurrency', values.concurrency, 1),
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
    const prompts = selectPrompts(loaded, plan.prompts).map((p) => p.text);
    return { loaded, ppd, prompts, cleanup: () => loaded.model.release() };
  }
  const dir = mkdtempSync(join(tmpdir(), 'ppd-bench-serve-model-'));
  writeRandomModel(dir, TINY_SHAPE, { seed: 5, tokenizerJson: byteFallbackTokenizerJson() });
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(byteFallbackTokenizerConfig()));
  const loaded = await loadModel(dir, { threads: plan.threads, cacheDir: false, needsTokenizer: true });
  const accuracies = [0, 1, 2].map((i) => Array.from({ length: 6 }, (_, k) => 0.45 * Math.pow(0.5, k) * Math.pow(0.8, i)));
  const adapter = PromptAdapter.initialise(loaded.config, (ids) => loaded.model.embed(ids), [70, 80], { promptTokens: 3, virtualTokens: 1, attention: 'ensemble', initText: 't' });
  const ppd: PpdSetup = { adapter, trees: buildTreeSet(accuracies, { budget: 12, promptTokens: 3, virtualTokens: 1 }), verification: 'rejection' };
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

// ---------------------------------------------------------------------------------------------
// Clients.

type Mode = 'ppd' | 'plain';

interface Outcome extends StreamOutcome {
  mode: Mode;
  prompt: number;
}

const request = (prompt: string, mode: Mode, maxTokens: number) => ({ prompt, max_tokens: maxTokens, temperature: 0, ppd: mode === 'ppd' });

/** One streamed completion. Never throws: failures are outcomes. */
async function streamOne(url: string, prompts: string[], prompt: number, mode: Mode, maxTokens: number): Promise<Outcome> {
  return { ...(await streamCompletion(url, request(prompts[prompt]!, mode, maxTokens))), mode, prompt };
}

async function client(id: number, url: string, prompts: string[], plan: Plan, deadline: number): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  for (let n = 0; performance.now() < deadline; n++) {
    const mode: Mode = (id + n) % 2 === 0 ? 'ppd' : 'plain';
    outcomes.push(await streamOne(url, prompts, (id * 3 + n) % prompts.length, mode, plan.maxTokens));
  }
  return outcomes;
}

// ---------------------------------------------------------------------------------------------
// Figures.

function modeResult(outcomes: Outcome[]): ModeResult {
  const ok = outcomes.filter((o) => o.ok);
  const tokens = ok.reduce((n, o) => n + o.newTokens, 0);
  // Steps per request = tokens / accepted-per-step; the mean over all steps weights by them.
  const steps = ok.reduce((n, o) => n + (o.acceptedPerStep > 0 ? o.newTokens / o.acceptedPerStep : 0), 0);
  return {
    requests: outcomes.length,
    newTokens: tokens,
    acceptedPerStep: steps > 0 ? tokens / steps : 0,
    timeToFirstToken: quantiles(ok.map((o) => o.timeToFirstToken)),
    latency: quantiles(ok.map((o) => o.latency)),
  };
}

interface Sample {
  at: number;
  rss: number;
  waiting: number;
  active: number;
}

function markdown(r: ServeBenchReport): string {
  const q = (x: Quantiles) => `${fmt(x.p50, 2)} / ${fmt(x.p95, 2)} / ${fmt(x.max, 2)}`;
  const modeRow = (name: string, m: ModeResult) => `| ${name} | ${m.requests} | ${m.newTokens} | ${fmt(m.acceptedPerStep, 2)} | ${q(m.timeToFirstToken)} | ${q(m.latency)} |`;
  return [
    '# Server benchmark',
    '',
    `\`${r.command}\` on ${r.date.slice(0, 10)} (${r.mode} run, ${fmt(r.durationSeconds, 0)} s): ${r.workload.clients} concurrent streaming clients for ${r.workload.seconds} s against ` +
      `\`ppd serve\` on loopback (${r.workload.concurrency} generation slot${r.workload.concurrency === 1 ? '' : 's'}), ${r.workload.prompts} prompts, ${r.workload.maxTokens} new tokens each, greedy, PPD and plain alternating. ` +
      `Model \`${r.model.dir}\` (${(r.model.parameters / 1e6).toFixed(2)} M parameters), adapter \`${r.adapter.dir}\`.`,
    '',
    '## Checks',
    '',
    '| check | result |',
    '| --- | --- |',
    ...r.checks.map((c) => `| ${c.name} | ${c.pass ? 'pass' : '**FAIL**'} |`),
    '',
    '## Results',
    '',
    `${r.results.requests} requests, ${r.results.errors} errors, ${r.results.mismatches} outputs that differ from the request sent alone; ` +
      `${r.results.newTokens} new tokens, ${fmt(r.results.tokensPerSecond, 1)} tokens/s over the whole load phase.`,
    '',
    '| mode | requests | new tokens | accepted tokens/step | time to first token p50 / p95 / max (s) | latency p50 / p95 / max (s) |',
    '| --- | --- | --- | --- | --- | --- |',
    modeRow('PPD', r.results.byMode.ppd),
    modeRow('plain', r.results.byMode.plain),
    '',
    `Queue: at most ${r.queue.maxWaiting} waiting and ${r.queue.maxActive} generating at once (sampled every 250 ms).`,
    '',
    `Memory (resident, whole process: server and clients): ${bytes(r.memory.rssBefore)} before the load, peak ${bytes(r.memory.firstHalfPeak)} in the first half and ${bytes(r.memory.secondHalfPeak)} in the second, ${bytes(r.memory.rssAfter)} after (${r.memory.samples} samples).`,
    '',
    ...(r.results.errorSamples.length > 0 ? ['## First errors', '', ...r.results.errorSamples.map((e) => `- ${e}`), ''] : []),
    ...machineSection(r.machine, r.load),
    ...(r.load.otherCores !== null && r.load.otherCores > BUSY_MACHINE_CORES
      ? [`**Warning:** other processes used ${otherCpu(r.load)} during the load phase; the rates understate the server. Rerun on an idle machine.`, '']
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
  const app = buildServer({ loaded: served.loaded, ppd: served.ppd, concurrency: plan.concurrency, maxWaiting: plan.clients, defaultMaxTokens: plan.maxTokens });
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    const { prompts } = served;
    process.stderr.write(`serve benchmark (${plan.mode}): ${plan.clients} clients × ${plan.seconds} s, ${prompts.length} prompts × ${plan.maxTokens} tokens, ${machine.cores} cores, ${plan.threads} threads\n`);

    // References: each (prompt, mode) alone, whole.
    const references = new Map<string, string>();
    let referenceMismatches = 0;
    for (let p = 0; p < prompts.length; p++) {
      for (const mode of ['ppd', 'plain'] as const) {
        const response = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(request(prompts[p]!, mode, plan.maxTokens)) });
        if (response.status !== 200) throw new Error(`reference request failed: HTTP ${response.status} ${await response.text()}`);
        references.set(`${p}/${mode}`, (await response.json()).choices[0].text);
      }
      if (references.get(`${p}/ppd`) !== references.get(`${p}/plain`)) referenceMismatches++;
    }

    // Load.
    const samples: Sample[] = [];
    const loadStart = performance.now();
    const sample = async () => {
      const health = await (await fetch(`${url}/health`)).json();
      samples.push({ at: (performance.now() - loadStart) / 1000, rss: process.memoryUsage().rss, waiting: health.queue.waiting, active: health.queue.active });
    };
    await sample();
    const sampler = setInterval(() => void sample().catch(() => {}), 250);
    const endLoad = watchLoad();
    const deadline = loadStart + plan.seconds * 1000;
    const outcomes = (await Promise.all(Array.from({ length: plan.clients }, (_, c) => client(c, url, prompts, plan, deadline)))).flat();
    const load = endLoad();
    clearInterval(sampler);
    await sample();
    const wall = (performance.now() - loadStart) / 1000;

    const errors = outcomes.filter((o) => !o.ok);
    const mismatches = outcomes.filter((o) => o.ok && o.text !== references.get(`${o.prompt}/${o.mode}`)).length;
    const half = samples.at(-1)!.at / 2;
    const firstHalfPeak = Math.max(...samples.filter((s) => s.at <= half).map((s) => s.rss));
    const secondHalfPeak = Math.max(...samples.filter((s) => s.at > half).map((s) => s.rss));
    const bounded = secondHalfPeak - firstHalfPeak <= Math.max(32 * 2 ** 20, 0.1 * firstHalfPeak);
    const newTokens = outcomes.reduce((n, o) => n + o.newTokens, 0);
    const report: ServeBenchReport = {
      schema: 'ppd.bench.serve/1',
      mode: plan.mode,
      command: `npm run bench:serve${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`,
      date,
      durationSeconds: (performance.now() - started) / 1000,
      machine,
      model: { dir: plan.modelDir === undefined ? '(tiny random model)' : repoPath(plan.modelDir), parameters: parameterCount(served.loaded.config), contextLength: served.loaded.config.maxPositionEmbeddings },
      adapter: { dir: plan.adapterDir === undefined ? '(untrained)' : repoPath(plan.adapterDir), trees: served.ppd.treesFile === undefined ? '(built in memory)' : repoPath(served.ppd.treesFile) },
      workload: { clients: plan.clients, seconds: plan.seconds, maxTokens: plan.maxTokens, prompts: prompts.length, concurrency: plan.concurrency, modes: 'alternating ppd / plain, greedy, streamed' },
      results: {
        requests: outcomes.length,
        errors: errors.length,
        errorSamples: errors.slice(0, 5).map((o) => `prompt ${o.prompt} (${o.mode}): ${o.error}`),
        mismatches,
        referenceMismatches,
        newTokens,
        tokensPerSecond: newTokens / wall,
        byMode: { ppd: modeResult(outcomes.filter((o) => o.mode === 'ppd')), plain: modeResult(outcomes.filter((o) => o.mode === 'plain')) },
      },
      memory: { samples: samples.length, rssBefore: samples[0]!.rss, firstHalfPeak, secondHalfPeak, rssAfter: samples.at(-1)!.rss, bounded },
      queue: { maxWaiting: Math.max(...samples.map((s) => s.waiting)), maxActive: Math.max(...samples.map((s) => s.active)) },
      checks: [
        { name: 'no errors (every request 200, [DONE], no error event)', pass: errors.length === 0 },
        { name: 'every output equals the same request sent alone', pass: mismatches === 0 },
        { name: 'greedy PPD equals plain decoding on every prompt', pass: referenceMismatches === 0 },
        { name: 'memory bounded (second-half peak ≤ first-half peak + max(32 MiB, 10 %))', pass: bounded },
      ],
      load,
    };
    mkdirSync(plan.outDir, { recursive: true });
    const paths = [join(plan.outDir, 'serve.json'), join(plan.outDir, 'serve.md')];
    writeJsonAtomic(paths[0]!, report);
    writeFileAtomic(paths[1]!, markdown(report));

    console.log(
      `${report.results.requests} requests, ${report.results.errors} errors, ${mismatches} mismatches; ${fmt(report.results.tokensPerSecond, 1)} tokens/s; ` +
        `τ ${fmt(report.results.byMode.ppd.acceptedPerStep, 2)} (PPD); RSS peak ${bytes(firstHalfPeak)} → ${bytes(secondHalfPeak)}`,
    );
    for (const path of paths) console.log(`wrote ${shownPath(path)}`);
    const failed = report.checks.filter((c) => !c.pass);
    if (failed.length > 0) {
      process.stderr.write(`error: ${failed.map((c) => c.name).join('; ')} failed; see the report\n`);
      process.exitCode = 1;
    }
  } finally {
    await app.close();
    await served.cleanup();
  }
}

await runBenchmark(main);
