/**
 * How well adapters' prompt tokens guess while decoding, beside their held-out tables: for each
 * adapter folder, greedy generations of bench:ppd's held-out prompts with root-only trees (every
 * step emits one token, and its prompt rows guess the N tokens after the next), the share of
 * steps where each prompt token's top-1 / top-3 guess was the token decoding then produced; and
 * τ (tokens per step after the prompt's forward) of greedy PPD alone with the adapter's
 * trees.json. Held-out tables score contexts of the training recipe (accuracy.json); these score
 * the contexts a user's generation meets. Prints a Markdown table.
 *
 *   npx tsx scripts/decode-accuracy.ts --ppd models/ppd-base/ppd [--ppd OTHER] [--prompts 16] [--max-tokens 128]
 */
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { heldOutTextFor, selectPrompts } from '../bench/prompts.ts';
import { loadModel, type LoadedModel } from '../src/checkpoint/load.ts';
import { loadAdapter, promptHeadOf } from '../src/ppd/adapter-files.ts';
import type { PromptAdapter } from '../src/ppd/adapter.ts';
import { PpdDecoder, ppdDecode } from '../src/ppd/decode.ts';
import { TREE_SCHEMA, TREE_SET_SCHEMA, type PpdTree, type PpdTreeSet } from '../src/ppd/tree.ts';
import { loadTreeSet } from '../src/ppd/tree-files.ts';
import { Sampler } from '../src/sampling/sampler.ts';
import { promptIds } from '../src/generate/request.ts';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/ppd-base' },
    ppd: { type: 'string', multiple: true, default: ['models/ppd-base/ppd'] },
    prompts: { type: 'string', default: '16' },
    'max-tokens': { type: 'string', default: '128' },
  },
});
const promptCount = Number(values.prompts);
const maxTokens = Number(values['max-tokens']);

/** Trees of the root alone with all N prompt rows, for every guess depth: one token per step, N guess lists after it. */
function rootOnlyTrees(adapter: PromptAdapter): PpdTreeSet {
  const { promptTokens: N, virtualTokens, attention } = adapter.config;
  const trees = Array.from({ length: N + 1 }, (_, d): PpdTree => ({ schema: TREE_SCHEMA, guessDepth: d, topK: 10, root: { prompts: N }, candidates: [] }));
  return { schema: TREE_SET_SCHEMA, budget: 1 + N * virtualTokens, promptTokens: N, virtualTokens, attention, topK: 10, accuracySource: 'none: root-only trees', expectedAcceptedLength: trees.map(() => 1), expectedTokensPerStep: 1, trees };
}

async function measure(loaded: LoadedModel, dir: string) {
  const adapter = loadAdapter(dir, loaded.config);
  const N = adapter.promptTokens;
  const prompts = selectPrompts(loaded, promptCount, heldOutTextFor(loaded));
  const top1 = new Array<number>(N).fill(0);
  const top3 = new Array<number>(N).fill(0);
  const scored = new Array<number>(N).fill(0);
  let steps = 0;
  let tokens = 0;
  for (const prompt of prompts) {
    const ids = promptIds(loaded, prompt.text);
    // Guess lists g_k come with token t_k; g_k[i] stands for t_(k+1+i).
    const sampler = new Sampler({ temperature: 0 });
    const decoder = new PpdDecoder(loaded.model, { adapter, trees: rootOnlyTrees(adapter), sampler, lookup: 0 });
    const first = await decoder.prefill(ids);
    const out = [sampler.sample(first.logits)];
    const guesses = [first.guesses];
    while (out.length < maxTokens) {
      const step = await decoder.step(out.at(-1)!, guesses.at(-1)!);
      out.push(...step.tokens);
      guesses.push(step.guesses);
    }
    guesses.forEach((lists, k) =>
      lists.forEach((list, i) => {
        const truth = out[k + 1 + i];
        if (truth === undefined) return;
        scored[i]!++;
        if (list[0] === truth) top1[i]!++;
        if (list.slice(0, 3).includes(truth)) top3[i]!++;
      }),
    );
    let produced = 0;
    let promptSteps = 0;
    for await (const chunk of ppdDecode(loaded.model, ids, { adapter, trees: loadTreeSet(join(dir, 'trees.json')), sampler: new Sampler({ temperature: 0 }), lookup: 0 })) {
      produced += chunk.length;
      promptSteps++;
      if (produced >= maxTokens) break;
    }
    steps += promptSteps - 1; // the prompt's forward and its one token left out, as bench:ppd counts τ
    tokens += produced - 1;
  }
  const share = (hits: number[]) => hits.map((h, i) => ((100 * h) / scored[i]!).toFixed(1)).join(' / ');
  return { dir, head: adapter.config.head ?? 'none', top1: share(top1), top3: share(top3), scored: scored[0]!, tau: tokens / steps };
}

const rows = [];
for (const dir of values.ppd) {
  const loaded = await loadModel(values.model, { needsTokenizer: true, promptHead: promptHeadOf(dir) });
  try {
    rows.push(await measure(loaded, dir));
  } finally {
    await loaded.model.release();
  }
}
console.log(`Greedy generations of ${promptCount} held-out prompts × ${maxTokens} tokens (bench:ppd's prompts), \`${values.model}\`.\n`);
console.log('| adapter | head | top-1 while decoding, prompt token 1 / 2 / 3 | top-3 | steps scored | τ, trees.json, PPD alone |');
console.log('| --- | --- | --- | --- | --- | --- |');
for (const r of rows) console.log(`| \`${r.dir}\` | ${r.head} | ${r.top1} % | ${r.top3} % | ${r.scored} | ${r.tau.toFixed(2)} |`);
