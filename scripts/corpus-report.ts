/**
 * Report of issue 18's corpus comparison (scripts/compare-corpora.sh trains the models): for each
 * corpus's model under runs/compare-<corpus>/model, its held-out loss on its own test split (per
 * token, and per byte of text so that corpora with different tokenizers compare), greedy
 * continuations of 16 held-out document openings (share of distinct 4-grams in 128 new tokens),
 * and its prompt tokens' accuracy. Writes docs/corpora.json and docs/corpora.md.
 *
 *   npx tsx scripts/corpus-report.ts [--corpora default,prose,code]
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { selectPrompts } from '../bench/prompts.ts';
import { REPO_ROOT, fmt, pct, describeMachine } from '../bench/harness.ts';
import { loadModel, requireTokenizer } from '../src/checkpoint/load.ts';
import { documentsOf, tokenizeDocuments } from '../src/data/tokenize.ts';
import { perplexity } from '../src/eval/perplexity.ts';
import { distinctNgramShare } from '../src/eval/repetition.ts';
import { writeFileAtomic, writeJsonAtomic } from '../src/format/atomic.ts';
import { generationFromIds, promptIds } from '../src/generate/request.ts';
import { readAccuracyTable } from '../src/ppd/accuracy-files.ts';
import { Progress } from '../src/report/progress.ts';

const CORPORA: Record<string, { data: string; title: string }> = {
  default: { data: 'data/corpus', title: "today's prose (Bible, Moby-Dick, SOTU, Jargon File, Devil's Dictionary)" },
  prose: { data: 'data/prose-corpus', title: 'larger prose (the above + Python, Node.js, PostgreSQL, SQLite manuals)' },
  code: { data: 'data/code-corpus', title: 'JavaScript/TypeScript from 347 permissively licensed npm packages' },
};
const PROMPTS = 16;
const NEW_TOKENS = 128;
const NGRAM = 4;

interface CorpusResult {
  corpus: string;
  title: string;
  trainingTokens: number;
  trainingSeconds: number;
  validLoss: { step: number; loss: number }[];
  test: { tokens: number; bytes: number; nllPerToken: number; bitsPerByte: number; perplexity: number };
  continuations: { prompt: string; text: string; newTokens: number; distinct4: number }[];
  medianDistinct4: number;
  accuracy: { top1: number[]; top5: number[]; examples: number };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function evaluate(corpus: string): Promise<CorpusResult> {
  const { data, title } = CORPORA[corpus]!;
  const dir = join(REPO_ROOT, 'runs', `compare-${corpus}`, 'model');
  const training = JSON.parse(readFileSync(join(dir, 'training.json'), 'utf8'));
  const loaded = await loadModel(dir, { needsTokenizer: true });
  const tokenizer = requireTokenizer(loaded);

  const testFile = join(REPO_ROOT, data, 'test.txt');
  const docs = documentsOf(readFileSync(testFile, 'utf8'));
  const ids = Array.from(tokenizeDocuments(tokenizer, docs));
  const bytes = docs.reduce((sum, d) => sum + Buffer.byteLength(d, 'utf8'), 0);
  const bar = new Progress(`${corpus}: test loss`, ids.length - 1, 'tokens');
  const scored = await perplexity(loaded.model, ids, { window: 512, stride: 256, onProgress: (done) => bar.update(done) });
  bar.stop();

  const continuations: CorpusResult['continuations'] = [];
  const gen = new Progress(`${corpus}: greedy continuations`, PROMPTS, 'prompts');
  for (const prompt of selectPrompts(loaded, PROMPTS, testFile)) {
    const result = await generationFromIds(loaded, promptIds(loaded, prompt.text), { maxTokens: NEW_TOKENS }).complete();
    continuations.push({ prompt: prompt.text, text: result.text, newTokens: result.ids.length, distinct4: distinctNgramShare(result.ids, NGRAM) });
    gen.tick();
  }
  gen.stop();
  await loaded.model.release();

  const table = readAccuracyTable(join(dir, 'ppd', 'accuracy.json'));
  const accuracyDoc = JSON.parse(readFileSync(join(dir, 'ppd', 'accuracy.json'), 'utf8'));
  const history = training.history as { step: number; validLoss?: number; seconds: number }[];
  return {
    corpus,
    title,
    trainingTokens: training.tokensSeen ?? history.length * training.settings.seqLen * training.settings.batchWindows * training.settings.accumulation,
    trainingSeconds: training.wallSeconds,
    validLoss: history.filter((h) => h.validLoss !== undefined).map((h) => ({ step: h.step, loss: h.validLoss! })),
    test: { tokens: scored.tokens, bytes, nllPerToken: scored.nll, bitsPerByte: (scored.nll * scored.tokens) / (bytes * Math.LN2), perplexity: scored.perplexity },
    continuations,
    medianDistinct4: median(continuations.map((c) => c.distinct4)),
    accuracy: { top1: table.map((row) => row[0]!), top5: table.map((row) => row.slice(0, 5).reduce((a, b) => a + b, 0)), examples: accuracyDoc.examples },
  };
}

function markdown(results: CorpusResult[], cpu: string): string {
  const lines = [
    '# Which corpus for the bundled model',
    '',
    `Issue 18's comparison: the same model (configs/ppd-base.json: 8 layers, hidden 256, 8k vocabulary, ~7.9M parameters) pretrained on each corpus with its own 8k BPE tokenizer for an equal budget of tokens, then prompt tokens trained with equal settings (scripts/compare-corpora.sh; this report: \`npx tsx scripts/corpus-report.ts\`). CPU: ${cpu}.`,
    '',
    '| corpus | training tokens | wall time | final validation loss (nats/token) | test loss (nats/token) | test bits per byte | greedy: distinct 4-grams in 128 new tokens (median of 16) | prompt tokens top-1 (1st / 2nd / 3rd) | top-5 |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...results.map(
      (r) =>
        `| ${r.corpus}: ${r.title} | ${fmt(r.trainingTokens / 1e6, 2)}M | ${fmt(r.trainingSeconds / 60, 0)} min | ${fmt(r.validLoss.at(-1)?.loss ?? NaN, 3)} | ${fmt(r.test.nllPerToken, 3)} | ${fmt(r.test.bitsPerByte, 3)} | ${pct(r.medianDistinct4)} | ${r.accuracy.top1.map(pct).join(' / ')} | ${r.accuracy.top5.map(pct).join(' / ')} |`,
    ),
    '',
    'Losses per token compare only within a corpus (different tokenizers, different test texts); bits per byte put them on one scale of text, but the texts still differ: code is more predictable than prose. The columns that decide are the ones a user sees: whether greedy text loops, and how often the prompt tokens guess right (what PPD turns into speed).',
    '',
  ];
  for (const r of results) {
    const c = r.continuations[0]!;
    lines.push(`## ${r.corpus}: the first held-out prompt`, '', '```', `${c.prompt}⟦${c.text}⟧`, '```', '', `(⟦ ⟧ marks the model's greedy continuation: ${c.newTokens} tokens, ${pct(c.distinct4)} distinct 4-grams.)`, '');
  }
  return lines.join('\n');
}

const { values } = parseArgs({ options: { corpora: { type: 'string', default: 'default,prose,code' } } });
const results: CorpusResult[] = [];
for (const corpus of values.corpora!.split(',')) {
  if (!CORPORA[corpus]) throw new Error(`unknown corpus ${corpus}`);
  if (!existsSync(join(REPO_ROOT, 'runs', `compare-${corpus}`, 'model', 'ppd', 'accuracy.json'))) throw new Error(`runs/compare-${corpus}: not trained yet (scripts/compare-corpora.sh)`);
  results.push(await evaluate(corpus));
}
const cpu = describeMachine(1).cpuModel;
writeJsonAtomic(join(REPO_ROOT, 'docs', 'corpora.json'), { schema: 'ppd.corpora/1', cpu, results });
writeFileAtomic(join(REPO_ROOT, 'docs', 'corpora.md'), markdown(results, cpu));
console.log(results.map((r) => `${r.corpus}: distinct4 ${pct(r.medianDistinct4)}, top-1 ${r.accuracy.top1.map(pct).join('/')}, ${fmt(r.test.bitsPerByte, 3)} bits/byte`).join('\n'));
