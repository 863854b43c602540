/**
 * The calibration report: the `ppd.calibration/2` JSON (the data), a Markdown page (the same for
 * people) and an SVG chart of τ(n), L(n)/L(1) and the predicted speedup against n with the chosen
 * n marked, all three written side by side under one base name. Formatting only; the numbers come
 * from ppd/tree-size-choice.ts and measure.ts.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from '../format/atomic.ts';
import { writeLineChart, type Series } from '../report/plot.ts';
import { guessesAnything, type Decision, type Prediction, type WithoutLookup } from '../ppd/tree-size-choice.ts';
import type { LatencyRow, MeasuredSize } from './measure.ts';
import { describeSignature, type MachineSignature } from '../ppd/hardware-profile.ts';
import type { TauPoint } from '../ppd/tree-size-tau.ts';

export const REPORT_SCHEMA = 'ppd.calibration/2';

/** Times in milliseconds unless named otherwise, speeds in tokens per second. */
export interface CalibrationReport {
  schema: typeof REPORT_SCHEMA;
  command: string;
  /** ISO 8601, when the run started. */
  date: string;
  durationSeconds: number;
  machine: MachineSignature & { signatureHash: string; node: string; loadAverageBefore: number };
  /** The base model folder. */
  model: string;
  /** The folder L(n) was measured on when it is not the base model (--latency-model), else null. */
  latencyModel: string | null;
  adapter: { dir: string; promptTokens: number; virtualTokens: number; attention: string; accuracyFile: string; accuracyDigest: string };
  latency: { contexts: number[]; warmupRounds: number; repeats: number; rows: LatencyRow[] };
  /** τ(n) for every n of the grid, from the tree builder. */
  tau: TauPoint[];
  /** Per n: τ, L (mean over contexts), predicted tokens/s and speedup. */
  predictions: Prediction[];
  tolerance: number;
  /** The n the prediction chooses. */
  chosen: Prediction;
  fastest: Prediction;
  /** The final n (1 = plain decoding), after the end-to-end check when it ran; the profile uses it. */
  decision: Decision;
  /**
   * Where the decision verifies a context-lookup chain: the prompt-token trees measured fastest
   * alone (bestWithoutLookup), which `--lookup 0` decodes with; null otherwise.
   */
  withoutLookup: WithoutLookup | null;
  /** The share by which a measured PPD speed had to beat plain decoding. */
  margin: number;
  /** The adapter's trees.json, for comparison (null when it has none). */
  defaultTrees: { file: string; budget: number } | null;
  /** End-to-end check on held-out prompts; null when skipped (--prompts 0, or --latency-model). */
  check: {
    dataFile: string;
    /** The adapter folder's n-gram table the check also ran every decoder with (and alone); null when none. */
    ngramFile: string | null;
    prompts: { document: number; tokens: number; text: string }[];
    maxTokens: number;
    repeats: number;
    sizes: (MeasuredSize & { predictedTau: number; predictedSpeedup: number })[];
  } | null;
  /** The profile written for this machine (relative to the adapter folder), or null (--latency-model). */
  profile: string | null;
}

const fmt = (x: number, digits = 2) => x.toFixed(digits);

function curveTable(r: CalibrationReport): string[] {
  const byN = new Map(r.latency.rows.map((row) => [row.n, row]));
  const tauByN = new Map(r.tau.map((t) => [t.n, t]));
  return [
    `| n | τ(n) | rows per tree (d = 0..N) | ${r.latency.contexts.map((P) => `L(n), P = ${P}: median [min–max] ms`).join(' | ')} | L(n) mean | predicted tok/s | predicted speedup |`,
    `| --- | --- | --- | ${r.latency.contexts.map(() => '---').join(' | ')} | --- | --- | --- |`,
    ...r.predictions.map((p) => {
      const row = byN.get(p.n)!;
      const mark = p.n === r.chosen.n ? ' **← chosen**' : '';
      return (
        `| ${p.n}${mark} | ${fmt(p.tau, 3)} | ${tauByN.get(p.n)!.rowsPerTree.join(', ')} | ` +
        `${row.perContext.map((s) => `${fmt(s.medianMs)} [${fmt(s.minMs)}–${fmt(s.maxMs)}]`).join(' | ')} | ${fmt(row.meanMs)} | ${fmt(p.tokensPerSecond, 1)} | ${fmt(p.speedup)}× |`
      );
    }),
  ];
}

function checkSection(r: CalibrationReport): string[] {
  if (r.check === null) {
    return ['## Prediction against measurement', '', r.latencyModel === null ? 'Not measured (`--prompts 0`).' : 'Not measured: L(n) came from another model (`--latency-model`), so only the prediction applies.', ''];
  }
  const c = r.check;
  return [
    '## Prediction against measurement',
    '',
    `Greedy generations of ${c.prompts.length} held-out prompts (openings of documents ${c.prompts.map((p) => p.document).join(', ')} of \`${c.dataFile}\`, ` +
      `${Math.min(...c.prompts.map((p) => p.tokens))}–${Math.max(...c.prompts.map((p) => p.tokens))} tokens), up to ${c.maxTokens} new tokens each, ` +
      `${c.repeats} timed repeat${c.repeats === 1 ? '' : 's'} per decoder after one warm-up (median time). Speedup = PPD tokens/s over plain tokens/s, Σ tokens / Σ seconds over the prompts, ` +
      'end to end (the prompt\'s forward included). Measured τ = tokens per decoding step after the prompt\'s forward. Identical = prompts where PPD produced exactly the plain ids (greedy: must be all).',
    '',
    'Rows with a context lookup verify up to that many tokens copied from earlier text beside the trees (n = 1: the lookup alone); ' +
      (c.ngramFile === null ? '' : `rows with the n-gram table also verify its drafts (\`${c.ngramFile}\`, where the lookup finds nothing); `) +
      'the prediction prices neither, so for them it is the trees\' alone.',
    '',
    '| n | lookup | n-gram table | τ predicted | τ measured | speedup predicted | speedup measured | measured / predicted | plain tok/s | PPD tok/s | identical |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...c.sizes.map(
      (s) =>
        `| ${s.n}${s.n === r.chosen.n && !s.lookup && !s.ngram ? ' **← chosen**' : ''}${r.defaultTrees?.budget === s.n ? ' (trees.json)' : ''} | ${s.lookup || '–'} | ${s.ngram ? 'yes' : '–'} | ${fmt(s.predictedTau)} | ${fmt(s.tau)} | ${fmt(s.predictedSpeedup)}× | ` +
        `${fmt(s.speedup)}× | ${fmt(s.speedup / s.predictedSpeedup)} | ${fmt(s.plainTokensPerSecond, 1)} | ${fmt(s.ppdTokensPerSecond, 1)} | ${s.identical}/${c.prompts.length}${s.identical === c.prompts.length ? '' : ' **MISMATCH**'} |`,
    ),
    '',
  ];
}

/**
 * A measured decision in words, for the command's output and the report: "plain decoding — …",
 * "n = 8 with a context lookup of 8 tokens and the n-gram table, measured 1.41× plain end to end".
 */
export function decisionText(d: Decision, margin: number): string {
  if (!guessesAnything(d)) return `plain decoding — nothing checked beat it by ${fmt(margin * 100, 0)} % end to end on this machine`;
  const drafts = [d.lookup ? `a context lookup of ${d.lookup} tokens` : '', d.ngram ? 'the n-gram table' : ''].filter((x) => x !== '').join(' and ');
  const what = d.n > 1 ? `n = ${d.n}${drafts === '' ? '' : ` with ${drafts}`}` : `no prompt-token rows, ${drafts} alone`;
  return `${what}${d.ngram === false ? ' (without the n-gram table)' : ''}, measured ${fmt(d.speedup)}× plain end to end`;
}

/** The prompt tokens' best alone in words: "n = 4, measured 1.07× plain end to end". */
export function withoutLookupText(w: WithoutLookup): string {
  return `n = ${w.n}, measured ${fmt(w.speedup)}× plain end to end${w.speedup < 1 ? ' (slower than plain decoding)' : ''}`;
}

/** The final decision when the end-to-end check overruled or confirmed the prediction, and the one for --lookup 0. */
function decisionLine(r: CalibrationReport): string[] {
  const d = r.decision;
  if (d.basis === 'prediction') return [];
  const text = !guessesAnything(d)
    ? `**Decision: ${decisionText(d, r.margin)}**, so generation with this adapter decodes plainly here (\`--trees FILE\` forces a tree set).`
    : `**Decision: ${decisionText(d, r.margin)}**: the best checked; the prediction chose n = ${r.chosen.n}.`;
  const without = r.withoutLookup ? [`Without the context lookup (\`--lookup 0\`: the prompt tokens alone, as the demo and the benchmarks show them): ${withoutLookupText(r.withoutLookup)}.`, ''] : [];
  return [text, '', ...without];
}

export function markdown(r: CalibrationReport, chartFile: string): string {
  const m = r.machine;
  return [
    '# Tree-size calibration',
    '',
    `Command: \`${r.command}\` (${r.date}, ${fmt(r.durationSeconds, 0)} s). Data: the JSON beside this page (schema \`${r.schema}\`, see \`src/calibrate/report.ts\`).`,
    '',
    `**Chosen n = ${r.chosen.n} input rows per step**: τ = ${fmt(r.chosen.tau)} tokens/step, L = ${fmt(r.chosen.latencyMs)} ms, predicted speedup ${fmt(r.chosen.speedup)}×` +
      (r.fastest.n === r.chosen.n ? '.' : ` (the fastest predicted is n = ${r.fastest.n} at ${fmt(r.fastest.speedup)}×; tolerance ${fmt(r.tolerance * 100, 1)} % prefers the smaller tree).`) +
      (r.profile === null ? ' No profile was written.' : ` Profile: \`${r.profile}\` in the adapter folder.`),
    '',
    ...decisionLine(r),
    `![τ(n), L(n)/L(1) and predicted speedup](${chartFile})`,
    '',
    ...checkSection(r),
    '## The curves',
    '',
    `L(n): one forward of n rows after a cache of P rows (${r.latency.contexts.join(' and ')}), ${r.latency.warmupRounds} warm-up round${r.latency.warmupRounds === 1 ? '' : 's'}, ` +
      `then ${r.latency.repeats} rounds over every (P, n); median [min–max]. The choice uses the mean of the medians over P. ` +
      `τ(n): expected tokens per step of the dynamic tree set the builder makes for a budget of n rows (\`buildTreeSet\`, docs/TREES.md), from \`${r.adapter.accuracyFile}\`. ` +
      'Predicted speedup = τ(n) · L(1) / L(n). A tree set may use fewer rows than n (see rows per tree); L(n) is then an upper bound on its step cost.' +
      (r.latencyModel === null ? '' : ` **L(n) was measured on \`${r.latencyModel}\`, not on the base model.**`),
    '',
    ...curveTable(r),
    '',
    '## Machine',
    '',
    '| | |',
    '| --- | --- |',
    `| signature | ${describeSignature(m)} (hash ${m.signatureHash}) |`,
    `| Node | ${m.node} |`,
    `| load average before the run | ${fmt(m.loadAverageBefore)}${m.loadAverageBefore > 0.5 ? ' (**busy: the latencies overstate this machine**)' : ''} |`,
    `| model / latency model | \`${r.model}\` / ${r.latencyModel === null ? 'the same' : `\`${r.latencyModel}\``} |`,
    `| adapter | \`${r.adapter.dir}\`: N = ${r.adapter.promptTokens}, V = ${r.adapter.virtualTokens}, ${r.adapter.attention} attention |`,
    '',
  ].join('\n');
}

/** The chart: every curve is a ratio (tokens/step, ×), on log axes so that all of them read. */
function chartSeries(r: CalibrationReport): Series[] {
  const l1 = r.latency.rows[0]!;
  const series: Series[] = [
    { name: 'τ(n), tokens/step', points: r.predictions.map((p) => ({ x: p.n, y: p.tau })) },
    ...r.latency.contexts.map((P, c) => ({
      name: `L(n)/L(1), cache ${P}`,
      points: r.latency.rows.map((row) => ({ x: row.n, y: row.perContext[c]!.medianMs / l1.perContext[c]!.medianMs })),
    })),
    { name: 'predicted speedup', points: r.predictions.map((p) => ({ x: p.n, y: p.speedup })) },
  ];
  if (r.check !== null) {
    const trees = r.check.sizes.filter((s) => !s.lookup && !s.ngram);
    const lookups = r.check.sizes.filter((s) => s.lookup && !s.ngram);
    const withTable = r.check.sizes.filter((s) => s.lookup && s.ngram);
    series.push({ name: 'measured speedup', points: trees.map((s) => ({ x: s.n, y: s.speedup })) });
    series.push({ name: 'measured τ', points: trees.map((s) => ({ x: s.n, y: s.tau })) });
    if (lookups.length > 0) series.push({ name: `measured speedup, + lookup ${lookups[0]!.lookup}`, points: lookups.map((s) => ({ x: s.n, y: s.speedup })) });
    if (withTable.length > 0) series.push({ name: `measured speedup, + lookup ${withTable[0]!.lookup} + n-gram table`, points: withTable.map((s) => ({ x: s.n, y: s.speedup })) });
  }
  series.push({ name: `chosen n = ${r.chosen.n}`, points: [{ x: r.chosen.n, y: r.chosen.speedup }] });
  return series;
}

/** Writes `<dir>/<name>.json`, `.md` and `.svg`; returns their paths. */
export async function writeReport(r: CalibrationReport, dir: string, name: string): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const [json, md, svg] = ['json', 'md', 'svg'].map((ext) => join(dir, `${name}.${ext}`)) as [string, string, string];
  writeJsonAtomic(json, r);
  writeFileAtomic(md, markdown(r, `${name}.svg`));
  await writeLineChart(svg, {
    title: `Tree size on ${r.machine.cpuModel}, ${r.machine.threads} thread${r.machine.threads === 1 ? '' : 's'}`,
    x: { title: 'n (input rows per step)', logBase: 2 },
    y: { title: 'τ (tokens/step), L(n)/L(1), speedup (×)', logBase: 2 },
    series: chartSeries(r),
    yRules: [{ y: r.chosen.speedup, label: `chosen n = ${r.chosen.n}: predicted ${fmt(r.chosen.speedup)}×` }],
    width: 640,
  });
  return [json, md, svg];
}
