/**
 * The bundled model's PPD figures against how long it was pretrained (issue 18: where would the
 * targets be reached?): for each named commit, the files that commit holds (or the working tree,
 * `.`), one row: training tokens seen, test perplexity, the prompt tokens' held-out top-1
 * accuracy, and from bench:ppd's report PPD alone (no lookup) τ and speedup, the context lookup's
 * speedup and the greedy text's distinct 4-grams. Writes docs/bench/training-curve.{json,md,svg}.
 * Every figure is read from a file the pipeline wrote; the commits name where.
 *
 *   npx tsx scripts/training-curve.ts d7501e2 e9303ba .
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFileAtomic, writeJsonAtomic } from '../src/format/atomic.ts';
import { PROFILES_DIR } from '../src/ppd/hardware-profile.ts';
import { writeLineChart } from '../src/report/plot.ts';
import { TARGET_NAMES } from '../bench/ppd-targets.ts';

const OUT = 'docs/bench/training-curve';
const TARGETS = {
  tau: TARGET_NAMES.tauAlone,
  speedup: TARGET_NAMES.speedupAlone,
  lookupSpeedup: TARGET_NAMES.speedupWithLookup,
  distinct4: TARGET_NAMES.distinctFourGrams,
} as const;

interface Point {
  commit: string;
  tokensSeen: number;
  steps: number;
  testPerplexity: number;
  /** Held-out top-1 accuracy of prompt tokens 1..N (accuracy.json). */
  top1: number[];
  /** bench:ppd's figures, and when it ran. */
  benchDate: string;
  tau: number;
  speedup: number;
  lookupSpeedup: number;
  distinct4: number;
  /** The trees bench:ppd's "PPD alone" ran with: their budget (rows) and file (a calibrated profile's, or trees.json). */
  trees: { budget: number; file: string };
}

/** A file as the commit holds it; `.` reads the working tree. */
function fileAt(commit: string, path: string): Record<string, any> {
  const text = commit === '.' ? readFileSync(path, 'utf8') : execFileSync('git', ['show', `${commit}:${path}`], { encoding: 'utf8', maxBuffer: 1 << 28 });
  return JSON.parse(text);
}

function pointAt(commit: string): Point {
  const training = fileAt(commit, 'models/ppd-base/training.json');
  const accuracy = fileAt(commit, 'models/ppd-base/ppd/accuracy.json');
  const bench = fileAt(commit, 'docs/bench/ppd.json');
  const target = (name: string): number => {
    const found = (bench.targets as { name: string; value: number }[]).find((t) => t.name === name);
    if (found === undefined) throw new Error(`${commit}: docs/bench/ppd.json has no target "${name}"`);
    return found.value;
  };
  return {
    commit: commit === '.' ? 'working tree' : commit,
    tokensSeen: training.tokensSeen,
    steps: training.stepsDone,
    testPerplexity: fileAt(commit, 'models/ppd-base/perplexity-test.json').perplexity,
    top1: (accuracy.accuracy as number[][]).map((row) => row[0]!),
    benchDate: bench.date,
    tau: target(TARGETS.tau),
    speedup: target(TARGETS.speedup),
    lookupSpeedup: target(TARGETS.lookupSpeedup),
    distinct4: target(TARGETS.distinct4),
    trees: { budget: bench.adapter.trees.budget, file: bench.adapter.trees.file },
  };
}

const commits = process.argv.slice(2);
if (commits.length === 0) throw new Error('usage: training-curve.ts COMMIT... (`.` = the working tree)');
const points = commits.map(pointAt).sort((a, b) => a.tokensSeen - b.tokensSeen);
const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
const millions = (x: number) => x / 1e6;

writeJsonAtomic(`${OUT}.json`, { command: `npx tsx scripts/training-curve.ts ${commits.join(' ')}`, points });
writeFileAtomic(
  `${OUT}.md`,
  [
    '# The bundled model against its training length',
    '',
    `Command: \`npx tsx scripts/training-curve.ts ${commits.join(' ')}\`. Each row reads the files of one commit: ` +
      '`models/ppd-base/training.json` (tokens seen), `perplexity-test.json` (test perplexity, `data/code-corpus/test.txt`), ' +
      '`ppd/accuracy.json` (held-out top-1 accuracy of the prompt tokens, `npm run train-prompts:default` on that model) and ' +
      '`docs/bench/ppd.json` (`npm run bench:ppd -- --prompts 16 --max-tokens 128 --repeats 2`, AMD EPYC, 2 cores). ' +
      'Same architecture (7.85M parameters), corpus, tokenizer and adapter recipe in every row; each adapter was trained on its own base model.',
    '',
    '![PPD figures against training tokens](training-curve.svg)',
    '',
    '| commit | tokens seen | steps | test perplexity | prompt-token top-1 (1 / 2 / 3) | PPD alone: trees | τ | speedup | lookup speedup | distinct 4-grams | bench:ppd run |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...points.map(
      (p) =>
        `| ${p.commit} | ${millions(p.tokensSeen).toFixed(1)}M | ${p.steps} | ${p.testPerplexity.toFixed(1)} | ${p.top1.map(pct).join(' / ')} | ` +
        `budget ${p.trees.budget} (${p.trees.file.includes(`/${PROFILES_DIR}/`) ? 'calibrated' : 'trees.json'}) | ${p.tau.toFixed(2)} | ${p.speedup.toFixed(2)}× | ${p.lookupSpeedup.toFixed(2)}× | ${pct(p.distinct4)} | ${p.benchDate} |`,
    ),
    '',
    'PPD alone runs with the trees of the machine\'s calibrated profile where the calibration chose prompt-token rows, else with `trees.json` (budget 8): smaller calibrated trees guess fewer tokens per step (τ) and cost less per step, so τ and speedup compare across rows only with the trees in view.',
    '',
    'Issue 18\'s targets: top-1 ≥ 40 / 25 / 15 %, PPD alone τ ≥ 2 and ≥ 1.3× plain, distinct 4-grams ≥ 80 %.',
    '',
  ].join('\n'),
);
await writeLineChart(`${OUT}.svg`, {
  title: 'Bundled model (7.85M parameters): PPD against training tokens',
  x: { title: 'training tokens seen (millions)' },
  y: { title: 'share, or × plain decoding' },
  series: [
    ...points[0]!.top1.map((_, i) => ({ name: `top-1, prompt token ${i + 1}`, points: points.map((p) => ({ x: millions(p.tokensSeen), y: p.top1[i]! })) })),
    { name: 'PPD alone speedup', points: points.map((p) => ({ x: millions(p.tokensSeen), y: p.speedup })) },
    { name: 'distinct 4-grams', points: points.map((p) => ({ x: millions(p.tokensSeen), y: p.distinct4 })) },
  ],
  yRules: [{ y: 1, label: 'plain decoding' }],
  width: 560,
});
for (const ext of ['json', 'md', 'svg']) process.stdout.write(`wrote ${OUT}.${ext}\n`);
