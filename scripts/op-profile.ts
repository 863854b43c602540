/**
 * Where a decoding forward's time goes, per op: L(T) of a model (folder or .gguf) after a
 * 64-row cache, timed, then again in a session with ONNX Runtime's profiler on, its kernel
 * times summed by op type and operand shapes (so each weight matrix's product shows: for
 * MatMulNBits the second shape is [N, blocks, bytes per block]). Prints Markdown tables.
 *
 *   npx tsx scripts/op-profile.ts --model FILE.gguf [--rows 1,16] [--runs 20] [--threads 2] [--top 16]
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModel } from '../src/checkpoint/load.ts';
import { KVCache } from '../src/model/kv-cache.ts';
import { exitOnPpdError, InputError } from '../src/errors.ts';
import { causalMask, type LlamaModel } from '../src/model/llama-model.ts';
import { opAndShapes, sumKernels, type TraceEvent } from '../src/report/ort-profile.ts';
import { spread } from '../src/report/timing.ts';

const { values } = parseArgs({ options: { model: { type: 'string' }, rows: { type: 'string', default: '1,16' }, runs: { type: 'string', default: '20' }, threads: { type: 'string', default: '2' }, top: { type: 'string', default: '16' } } });
if (values.model === undefined) exitOnPpdError(new InputError('--model DIR|FILE.gguf is needed'));
const [threads, runs, top] = [Number(values.threads), Number(values.runs), Number(values.top)];
const PAST = 64;

/** `runs` forwards of T rows after a PAST-row cache (three warm-ups first); their times in ms. */
async function forwards(model: LlamaModel, T: number): Promise<number[]> {
  const { config } = model;
  const cache = new KVCache(config.numLayers, config.numKvHeads, config.headDim, PAST + T);
  const ids = Array.from({ length: PAST + T }, (_, i) => (i * 37 + 5) % config.vocabSize);
  const past = await model.forward({ embeds: model.embed(ids.slice(0, PAST)), positions: ids.slice(0, PAST).map((_, i) => i), mask: causalMask(PAST, 0), cache });
  cache.append(past.keys, past.values);
  const input = { embeds: model.embed(ids.slice(PAST)), positions: Array.from({ length: T }, (_, i) => PAST + i), mask: causalMask(T, PAST), cache };
  for (let i = 0; i < 3; i++) await model.forward(input);
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await model.forward(input);
    times.push(performance.now() - start);
  }
  return times;
}

for (const T of values.rows.split(',').map(Number)) {
  const plain = (await loadModel(values.model, { threads }).catch(exitOnPpdError)).model;
  const timed = spread(await forwards(plain, T));
  await plain.release();
  const dir = mkdtempSync(join(tmpdir(), 'ppd-op-profile-'));
  try {
    const profiled = (await loadModel(values.model, { threads, profilePrefix: join(dir, 'forward') })).model;
    await forwards(profiled, T);
    await profiled.release(); // ORT writes the profile now
    const file = readdirSync(dir).find((name) => name.endsWith('.json'))!;
    const events = JSON.parse(readFileSync(join(dir, file), 'utf8')) as TraceEvent[];
    // The cache's prefill and the warm-ups are the first four runs.
    const summary = sumKernels(events, { skip: 4, keyOf: (e) => opAndShapes(e) });
    console.log(`\n\`${values.model}\`, ${threads} threads, T = ${T} rows after ${PAST}: L(T) ${timed.medianMs.toFixed(2)} ms median of ${runs} [${timed.minMs.toFixed(2)}–${timed.maxMs.toFixed(2)}] unprofiled; profiled ${summary.runMs.toFixed(2)} ms a run, ${summary.kernelMs.toFixed(2)} ms of it in kernels (${summary.groups.reduce((n, g) => n + g.nodesPerRun, 0).toFixed(0)} a run)\n`);
    console.log('| op and operand shapes | kernels a run | ms a run | share of kernel time |');
    console.log('| --- | --- | --- | --- |');
    for (const g of summary.groups.slice(0, top)) console.log(`| ${g.key} | ${g.nodesPerRun.toFixed(0)} | ${g.msPerRun.toFixed(3)} | ${(100 * g.share).toFixed(1)} % |`);
    const rest = summary.groups.slice(top);
    if (rest.length > 0) console.log(`| ${rest.length} others | ${rest.reduce((n, g) => n + g.nodesPerRun, 0).toFixed(0)} | ${rest.reduce((n, g) => n + g.msPerRun, 0).toFixed(3)} | ${(100 * rest.reduce((n, g) => n + g.share, 0)).toFixed(1)} % |`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
