/**
 * One engine's memory after loading a GGUF file, in a process of its own, for bench:llamacpp:
 * a process that loaded other models before keeps their freed memory (the allocators reuse it
 * without asking the system for more), so a load measured there would look smaller than it is.
 *
 *   tsx bench/memory-probe.ts ppd|llama.cpp FILE THREADS [PROMPT_HEAD]
 *
 * Loads the file, runs a warm-up (a 16-row prompt and 16 one-row steps, so that buffers sized by
 * the first forwards exist), and prints the growth of its resident memory since just before the
 * load as one JSON line (harness.ts `Resident`).
 */
import { loadModel } from '../src/checkpoint/load.ts';
import { KVCache } from '../src/model/kv-cache.ts';
import { causalMask } from '../src/model/llama-model.ts';
import { range, residentGrowth, residentMemory, tokenIds } from './harness.ts';
import { LlamaCppPeer, llamaInstance } from './peers/llamacpp.ts';

const WARMUP_ROWS = 16;

const [engine, file, threadsArg, headArg] = process.argv.slice(2);
const threads = Number(threadsArg);
if ((engine !== 'ppd' && engine !== 'llama.cpp') || file === undefined || !Number.isInteger(threads)) {
  throw new Error('usage: memory-probe.ts ppd|llama.cpp FILE THREADS [PROMPT_HEAD]');
}
// Both engines' native libraries are loaded before the baseline (ONNX Runtime's by the imports).
if (engine === 'llama.cpp') await llamaInstance();
const before = await residentMemory();
if (engine === 'ppd') {
  const { model } = await loadModel(file, { threads, needsTokenizer: false, promptHead: headArg === undefined ? undefined : Number(headArg) });
  const c = model.config;
  const cache = new KVCache(c.numLayers, c.numKvHeads, c.headDim, 2 * WARMUP_ROWS);
  const prompt = tokenIds(WARMUP_ROWS, c.vocabSize, 1);
  const out = await model.forward({ embeds: model.embed(prompt), positions: range(WARMUP_ROWS), mask: causalMask(WARMUP_ROWS, 0), cache });
  cache.append(out.keys, out.values);
  for (let step = 0; step < WARMUP_ROWS; step++) {
    const P = WARMUP_ROWS + step;
    const next = await model.forward({ embeds: model.embed([step]), positions: [P], mask: causalMask(1, P), cache });
    cache.append(next.keys, next.values);
  }
  process.stdout.write(JSON.stringify(residentGrowth(before, await residentMemory())) + '\n');
  await model.release();
} else {
  const peer = await LlamaCppPeer.open(file, { threads, contextSize: 512 });
  await peer.generate(range(WARMUP_ROWS, 1), WARMUP_ROWS, []);
  process.stdout.write(JSON.stringify(residentGrowth(before, await residentMemory())) + '\n');
  await peer.close();
}
