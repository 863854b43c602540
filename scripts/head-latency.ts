/**
 * What a prompt head costs a forward: L(T) of a model's graph without a head, with the head's
 * graph and no prompt rows (plain decoding on a model opened for PPD), and with the head on one
 * row, for T = 1, 4, 8 rows after a 64-row cache: single forwards taken in turn (timeInRounds),
 * medians over the rounds. Prints a Markdown table.
 *
 *   npx tsx scripts/head-latency.ts [--model models/ppd-base] [--rounds 300] [--threads 2]
 */
import { parseArgs } from 'node:util';
import { loadModel } from '../src/checkpoint/load.ts';
import { KVCache } from '../src/model/kv-cache.ts';
import { causalMask, type ForwardInput } from '../src/model/llama-model.ts';
import { promptHeadFeeds } from '../src/model/prompt-head.ts';
import { spread, timeInRounds } from '../src/report/timing.ts';

const { values } = parseArgs({ options: { model: { type: 'string', default: 'models/ppd-base' }, rounds: { type: 'string', default: '300' }, threads: { type: 'string', default: '2' } } });
const N = 3;
const threads = Number(values.threads);
const plain = (await loadModel(values.model, { threads })).model;
const headed = (await loadModel(values.model, { threads, promptHead: N })).model;
const { config } = plain;
const C = config.hiddenSize;
const small = (n: number) => new Float32Array(n).fill(0.001);
const feeds = promptHeadFeeds(small(N * C * C), small(N * C), N, C, small(N * C * C));
const cache = new KVCache(config.numLayers, config.numKvHeads, config.headDim, 256);
const ids = Array.from({ length: 64 }, (_, i) => (i * 37 + 5) % config.vocabSize);
const past = await plain.forward({ embeds: plain.embed(ids), positions: ids.map((_, i) => i), mask: causalMask(ids.length, 0), cache });
cache.append(past.keys, past.values);

const graphs = ['no head', 'head graph, no prompt rows', 'head on one row'] as const;
const rowCounts = [1, 4, 8];
const forwardOf = (T: number, graph: (typeof graphs)[number]) => {
  const input: ForwardInput = { embeds: plain.embed(ids.slice(0, T)), positions: Array.from({ length: T }, (_, i) => ids.length + i), mask: causalMask(T, ids.length), cache };
  // The last row is a prompt row whose parent is row 0 (with T = 1 no row is: the head graph idles).
  if (graph === 'head on one row' && T > 1) {
    const last = (i: number) => i === T - 1;
    input.promptHead = { feeds, rows: Array.from({ length: T }, (_, i) => (last(i) ? 0 : -1)), parents: Array.from({ length: T }, (_, i) => (last(i) ? 0 : -1)) };
  }
  const model = graph === 'no head' ? plain : headed;
  return () => model.forward(input);
};
const samples = await timeInRounds(
  rowCounts.map((T) => graphs.map((graph) => forwardOf(T, graph))),
  { warmupRounds: 20, repeats: Number(values.rounds) },
);
console.log(`\`${values.model}\`, ${threads} threads, after a 64-row cache: ms per forward, median of ${values.rounds} taken in turn\n`);
console.log(`| graph | ${rowCounts.map((T) => `L(${T})`).join(' | ')} |`);
console.log(`| --- | ${rowCounts.map(() => '---').join(' | ')} |`);
graphs.forEach((graph, g) => console.log(`| ${graph} | ${rowCounts.map((_, t) => spread(samples[t]![g]!).medianMs.toFixed(3)).join(' | ')} |`));
await plain.release();
await headed.release();
