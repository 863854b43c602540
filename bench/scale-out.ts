/**
 * Scale-out check: two `ppd serve` replicas behind HAProxy with the committed configuration
 * (deploy/haproxy.cfg), load-tested on loopback, one replica stopped (SIGTERM) halfway. It checks
 * what running replicas behind a balancer relies on — zero errors through the balancer, every
 * greedy output equal to the same request's output before the load, both replicas serving, and
 * after the stop only the other one, the stopped one finishing what it had and exiting 0 — and
 * measures the throughput and latencies on the way. Writes docs/bench/scale-out.json (schema
 * `ScaleOutReport` below) and docs/bench/scale-out.md.
 *
 *   npm run bench:scale-out                   models/ppd-base with its adapter, 8 clients, 30 s
 *   npm run bench:scale-out -- --quick        a tiny random model, 4 clients, 8 s, to a temporary folder
 *   --model DIR --ppd DIR --clients N --seconds S --max-tokens N --prompts N --threads N (per replica)
 *
 * Needs Debian's haproxy (`apt-get install haproxy`) and the ports in deploy/haproxy.cfg
 * (127.0.0.1:8080 for the balancer, 8081 and 8082 for the replicas) free. Not part of `npm
 * test`: CI does not install haproxy.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_ADAPTER, DEFAULT_MODEL } from '../src/cli/demo.ts';
import { InputError } from '../src/errors.ts';
import { writeFileAtomic, writeJsonAtomic } from '../src/format/atomic.ts';
import { loadModel } from '../src/checkpoint/load.ts';
import { writeRandomModel } from '../src/checkpoint/random-init.ts';
import { byteFallbackTokenizerConfig, byteFallbackTokenizerJson } from '../src/tokenizer/byte-tokenizer.ts';
import { quantiles, streamCompletion, type Quantiles, type StreamOutcome } from './client.ts';
import { describeMachine, fmt, machineSection, parseBenchArgs, positiveInt, REPO_ROOT, repoPath, runBenchmark, shownPath, watchLoad, type Machine, type PhaseLoad } from './harness.ts';
import { heldOutTextFor, selectPrompts } from './prompts.ts';

const CONFIG = join(REPO_ROOT, 'deploy', 'haproxy.cfg');
const BALANCER = 'http://127.0.0.1:8080';
const REPLICAS = [
  { name: 'replica1', port: 8081 },
  { name: 'replica2', port: 8082 },
] as const;
/** Generation slots and queue places per replica: together, the `maxconn` of deploy/haproxy.cfg. */
const REPLICA_CONCURRENCY = 8;
const REPLICA_QUEUE = 8;

export interface ScaleOutReport {
  schema: 'ppd.bench.scale-out/1';
  mode: 'full' | 'quick';
  command: string;
  date: string;
  durationSeconds: number;
  machine: Machine;
  haproxy: string;
  model: string;
  adapter: string;
  workload: { replicas: number; threadsPerReplica: number; clients: number; seconds: number; maxTokens: number; prompts: number; stopAtSeconds: number };
  results: {
    requests: number;
    errors: number;
    errorSamples: string[];
    mismatches: number;
    newTokens: number;
    tokensPerSecond: number;
    /** Requests answered by each replica, started before the stop and after it. */
    byReplica: Record<string, { beforeStop: number; afterStop: number }>;
    timeToFirstToken: Quantiles;
    latency: Quantiles;
    stoppedReplicaExit: number | null;
  };
  checks: { name: string; pass: boolean }[];
  load: PhaseLoad;
}

interface Plan {
  mode: 'full' | 'quick';
  threads: number;
  outDir: string;
  modelDir?: string;
  adapterDir?: string;
  clients: number;
  seconds: number;
  maxTokens: number;
  prompts: number;
}

function planFromArgs(argv: string[]): Plan {
  const { quick, threads, flags } = parseBenchArgs(argv, ['model', 'ppd', 'clients', 'seconds', 'max-tokens', 'prompts']);
  const modelDir = flags.model ?? (quick ? undefined : DEFAULT_MODEL);
  return {
    mode: quick ? 'quick' : 'full',
    // Two replicas share the machine: one thread each unless told.
    threads: argv.some((a) => a === '--threads' || a.startsWith('--threads=')) ? threads : 1,
    outDir: quick ? join(tmpdir(), 'ppd-bench-scale-out-quick') : join(REPO_ROOT, 'docs', 'bench'),
    modelDir,
    adapterDir: flags.ppd ?? (modelDir === undefined ? undefined : flags.model === undefined ? DEFAULT_ADAPTER : join(modelDir, 'ppd')),
    clients: positiveInt('clients', flags.clients, quick ? 4 : 8),
    seconds: positiveInt('seconds', flags.seconds, quick ? 8 : 30),
    maxTokens: positiveInt('max-tokens', flags['max-tokens'], quick ? 16 : 64),
    prompts: positiveInt('prompts', flags.prompts, quick ? 4 : 8),
  };
}

/** The model folder to serve (a tiny random one for --quick, removed by `cleanup`) and the prompts. */
async function modelAndPrompts(plan: Plan): Promise<{ modelDir: string; prompts: string[]; cleanup: () => void }> {
  if (plan.modelDir !== undefined) {
    const loaded = await loadModel(plan.modelDir, { threads: 1, needsTokenizer: true });
    const prompts = selectPrompts(loaded, plan.prompts, heldOutTextFor(loaded)).map((p) => p.text);
    await loaded.model.release();
    return { modelDir: plan.modelDir, prompts, cleanup: () => {} };
  }
  const dir = mkdtempSync(join(tmpdir(), 'ppd-scale-out-model-'));
  writeRandomModel(dir, { model_type: 'llama', vocab_size: 260, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 512, eos_token_id: 2 }, { seed: 5, tokenizerJson: byteFallbackTokenizerJson() });
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(byteFallbackTokenizerConfig()));
  const prompts = Array.from({ length: plan.prompts }, (_, i) => `Replica test prompt number ${i}`);
  return { modelDir: dir, prompts, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

interface Process {
  child: ChildProcess;
  log: () => string;
  exit: Promise<number | null>;
}

function start(command: string, args: string[], env: Record<string, string> = {}): Process {
  const child = spawn(command, args, { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (d) => (log += d));
  child.stderr!.on('data', (d) => (log += d));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, log: () => log, exit };
}

/** Polls `url` until it answers 200; fails with `what`'s log after `seconds`. */
async function waitReady(url: string, what: Process, seconds: number): Promise<void> {
  const deadline = performance.now() + seconds * 1000;
  for (;;) {
    const status = await fetch(url).then((r) => r.status, () => 0);
    if (status === 200) return;
    if (what.child.exitCode !== null || performance.now() > deadline) throw new Error(`${url} never became ready:\n${what.log()}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

interface Outcome extends StreamOutcome {
  prompt: number;
  startedAt: number;
}

function markdown(r: ScaleOutReport): string {
  const q = (x: Quantiles) => `${fmt(x.p50, 2)} / ${fmt(x.p95, 2)} / ${fmt(x.max, 2)}`;
  return [
    '# Scale-out: two replicas behind HAProxy',
    '',
    `\`${r.command}\` on ${r.date.slice(0, 10)} (${r.mode} run, ${fmt(r.durationSeconds, 0)} s): two \`ppd serve\` replicas (${r.workload.threadsPerReplica} thread${r.workload.threadsPerReplica === 1 ? '' : 's'} each, ` +
      `--concurrency ${REPLICA_CONCURRENCY} --queue ${REPLICA_QUEUE}) behind ${r.haproxy} with [deploy/haproxy.cfg](../../deploy/haproxy.cfg), all on loopback; ` +
      `${r.workload.clients} streaming clients for ${r.workload.seconds} s through the balancer (greedy, ${r.workload.prompts} prompts × ${r.workload.maxTokens} tokens); ` +
      `replica1 gets SIGTERM at ${fmt(r.workload.stopAtSeconds, 0)} s. Model \`${r.model}\`, adapter \`${r.adapter}\`.`,
    '',
    '## Checks',
    '',
    '| check | result |',
    '| --- | --- |',
    ...r.checks.map((c) => `| ${c.name} | ${c.pass ? 'pass' : '**FAIL**'} |`),
    '',
    '## Results',
    '',
    `${r.results.requests} requests, ${r.results.errors} errors, ${r.results.mismatches} outputs that differ from the reference; ${r.results.newTokens} new tokens, ` +
      `${fmt(r.results.tokensPerSecond, 1)} tokens/s through the balancer. Time to first token p50 / p95 / max ${q(r.results.timeToFirstToken)} s; request latency ${q(r.results.latency)} s. ` +
      `The stopped replica exited with code ${r.results.stoppedReplicaExit ?? 'none'}.`,
    '',
    '| replica | requests started before the stop | after the stop |',
    '| --- | --- | --- |',
    ...Object.entries(r.results.byReplica).map(([name, n]) => `| ${name} | ${n.beforeStop} | ${n.afterStop} |`),
    '',
    ...(r.results.errorSamples.length > 0 ? ['## First errors', '', ...r.results.errorSamples.map((e) => `- ${e}`), ''] : []),
    ...machineSection(r.machine, r.load),
  ].join('\n');
}

async function main(argv: string[]): Promise<void> {
  const plan = planFromArgs(argv);
  const date = new Date().toISOString();
  const started = performance.now();
  const version = spawnSync('haproxy', ['-v'], { encoding: 'utf8' });
  if (version.error) throw new InputError('haproxy is not installed (Debian: apt-get install haproxy)');
  const haproxyVersion = /HAProxy version (\S+)/.exec(version.stdout)?.[1] ?? 'unknown';
  const { modelDir, prompts, cleanup } = await modelAndPrompts(plan);
  const cacheDir = mkdtempSync(join(tmpdir(), 'ppd-scale-out-cache-'));
  const processes: Process[] = [];
  try {
    const replicas = REPLICAS.map(({ port }) =>
      start(process.execPath, [
        'bin/ppd.js', 'serve', '--model', modelDir, ...(plan.adapterDir ? ['--ppd', plan.adapterDir] : []),
        '--port', String(port), '--threads', String(plan.threads), '--concurrency', String(REPLICA_CONCURRENCY), '--queue', String(REPLICA_QUEUE),
      ], { PPD_CACHE_DIR: cacheDir }),
    );
    processes.push(...replicas);
    for (const [i, { port }] of REPLICAS.entries()) await waitReady(`http://127.0.0.1:${port}/health/ready`, replicas[i]!, 300);
    const balancer = start('haproxy', ['-db', '-f', CONFIG]);
    processes.push(balancer);
    await waitReady(`${BALANCER}/health/ready`, balancer, 30);
    process.stderr.write(`scale-out (${plan.mode}): 2 replicas × ${plan.threads} thread(s) behind HAProxy ${haproxyVersion}; ${plan.clients} clients × ${plan.seconds} s\n`);

    // References: each prompt once, whole, through the balancer before the load.
    const body = (p: number) => ({ prompt: prompts[p]!, max_tokens: plan.maxTokens, temperature: 0 });
    const references: string[] = [];
    for (let p = 0; p < prompts.length; p++) {
      const response = await fetch(`${BALANCER}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body(p)) });
      if (response.status !== 200) throw new Error(`reference request failed: HTTP ${response.status} ${await response.text()}`);
      references.push((await response.json()).choices[0].text);
    }

    const loadStart = performance.now();
    const stopAt = plan.seconds / 2;
    const endLoad = watchLoad(() => processes.flatMap((p) => (p.child.pid === undefined || p.child.exitCode !== null ? [] : [p.child.pid])));
    const stopTimer = setTimeout(() => replicas[0]!.child.kill('SIGTERM'), stopAt * 1000);
    const deadline = loadStart + plan.seconds * 1000;
    const client = async (c: number): Promise<Outcome[]> => {
      const outcomes: Outcome[] = [];
      for (let n = 0; performance.now() < deadline; n++) {
        const prompt = (c * 3 + n) % prompts.length;
        const startedAt = (performance.now() - loadStart) / 1000;
        outcomes.push({ ...(await streamCompletion(BALANCER, body(prompt), { keepHeaders: ['x-ppd-replica'] })), prompt, startedAt });
      }
      return outcomes;
    };
    const outcomes = (await Promise.all(Array.from({ length: plan.clients }, (_, c) => client(c)))).flat();
    clearTimeout(stopTimer);
    const wall = (performance.now() - loadStart) / 1000;
    const load = endLoad();
    const stoppedExit = await Promise.race([replicas[0]!.exit, new Promise<null>((resolve) => setTimeout(() => resolve(null), 30_000))]);

    const errors = outcomes.filter((o) => !o.ok);
    const mismatches = outcomes.filter((o) => o.ok && o.text !== references[o.prompt]).length;
    // Requests started within 3 s of the stop may still reach the stopping replica (its readiness
    // fails within `fall 2` checks of 1 s), and are not counted on either side.
    const byReplica: ScaleOutReport['results']['byReplica'] = Object.fromEntries(REPLICAS.map(({ name }) => [name, { beforeStop: 0, afterStop: 0 }]));
    for (const o of outcomes.filter((o) => o.ok)) {
      const counts = byReplica[o.headers['x-ppd-replica'] ?? ''];
      if (!counts) continue;
      if (o.startedAt < stopAt) counts.beforeStop++;
      else if (o.startedAt > stopAt + 3) counts.afterStop++;
    }
    const newTokens = outcomes.reduce((n, o) => n + o.newTokens, 0);
    const ok = outcomes.filter((o) => o.ok);
    const report: ScaleOutReport = {
      schema: 'ppd.bench.scale-out/1',
      mode: plan.mode,
      command: `npm run bench:scale-out${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`,
      date,
      durationSeconds: (performance.now() - started) / 1000,
      machine: describeMachine(plan.threads),
      haproxy: `HAProxy ${haproxyVersion}`,
      model: plan.modelDir === undefined ? '(tiny random model)' : repoPath(plan.modelDir),
      adapter: plan.adapterDir === undefined ? '(none: plain decoding)' : repoPath(plan.adapterDir),
      workload: { replicas: 2, threadsPerReplica: plan.threads, clients: plan.clients, seconds: plan.seconds, maxTokens: plan.maxTokens, prompts: prompts.length, stopAtSeconds: stopAt },
      results: {
        requests: outcomes.length,
        errors: errors.length,
        errorSamples: errors.slice(0, 5).map((o) => `prompt ${o.prompt} at ${fmt(o.startedAt, 1)} s: ${o.error}`),
        mismatches,
        newTokens,
        tokensPerSecond: newTokens / wall,
        byReplica,
        timeToFirstToken: quantiles(ok.map((o) => o.timeToFirstToken)),
        latency: quantiles(ok.map((o) => o.latency)),
        stoppedReplicaExit: stoppedExit,
      },
      checks: [
        { name: 'no errors through the balancer (every request 200, [DONE], no error event)', pass: errors.length === 0 },
        { name: 'every output equals the same request before the load', pass: mismatches === 0 },
        { name: 'both replicas served requests before the stop', pass: REPLICAS.every(({ name }) => byReplica[name]!.beforeStop > 0) },
        { name: 'after the stop, only the running replica served', pass: byReplica.replica1!.afterStop === 0 && byReplica.replica2!.afterStop > 0 },
        { name: 'the stopped replica finished its requests and exited 0', pass: stoppedExit === 0 },
      ],
      load,
    };
    mkdirSync(plan.outDir, { recursive: true });
    const paths = [join(plan.outDir, 'scale-out.json'), join(plan.outDir, 'scale-out.md')];
    writeJsonAtomic(paths[0]!, report);
    writeFileAtomic(paths[1]!, markdown(report));
    console.log(`${outcomes.length} requests, ${errors.length} errors, ${mismatches} mismatches; ${fmt(report.results.tokensPerSecond, 1)} tokens/s; by replica ${JSON.stringify(byReplica)}`);
    for (const path of paths) console.log(`wrote ${shownPath(path)}`);
    const failed = report.checks.filter((c) => !c.pass);
    if (failed.length > 0) {
      process.stderr.write(`error: ${failed.map((c) => c.name).join('; ')} failed; see the report\n`);
      for (const [i, p] of processes.entries()) process.stderr.write(`--- ${i < 2 ? REPLICAS[i]!.name : 'haproxy'} log (last 2 KB):\n${p.log().slice(-2000)}\n`);
      process.exitCode = 1;
    }
  } finally {
    for (const p of processes) p.child.kill('SIGKILL');
    await Promise.all(processes.map((p) => p.exit));
    rmSync(cacheDir, { recursive: true, force: true });
    cleanup();
  }
}

await runBenchmark(main);
