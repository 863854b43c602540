/**
 * The measured half of calibration: L(n), the latency of one forward over n input rows on this
 * machine, and end-to-end greedy generations (plain and PPD at a few tree sizes) on held-out
 * prompts, which give the measured τ and speedup the prediction is checked against.
 *
 * What it is not: the choice (ppd/tree-size-choice.ts) or the report (report.ts). Timing is wall time of whole
 * calls, in milliseconds; rounds go through every size in turn (forwards and backwards on
 * alternate rounds) so that a slow spell of the machine lands on all sizes alike instead of
 * skewing one of them.
 *
 * Shape legend: n = input rows of one step, P = rows in the KV cache (the context), C = hidden
 * size, V = vocabulary.
 */
import type { GenerationResult } from '../generate/generate.ts';
import { promptIds, startGeneration } from '../generate/request.ts';
import type { LoadedModel } from '../checkpoint/load.ts';
import type { PpdSetup } from '../ppd/setup.ts';
import { spread } from '../report/timing.ts';

// ---------------------------------------------------------------------------------------------
// L(n)

// L(n) is measured by decode/latency.ts (the server measures it too); re-exported for calibration.
export { latencyForwards, measureLatency, type LatencyPlan, type LatencyRow } from '../decode/latency.ts';

// ---------------------------------------------------------------------------------------------
// Held-out prompts

export interface HeldOutPrompt {
  /** Index of the document it opens. */
  document: number;
  text: string;
  /** Prompt ids as generation sees them (BOS included). */
  tokens: number;
}

/**
 * The opening of `doc`, cut after the first word that brings it to `minTokens` tokens; null when
 * the document ends before that (a whole document as the prompt invites EOS, not a continuation).
 */
function openingOf(loaded: LoadedModel, doc: string, minTokens: number): { text: string; tokens: number } | null {
  const length = doc.trimEnd().length;
  for (const match of doc.matchAll(/\S+/g)) {
    const text = doc.slice(0, match.index + match[0].length);
    if (text.length === length) return null;
    const tokens = promptIds(loaded, text).length;
    if (tokens >= minTokens) return { text, tokens };
  }
  return null;
}

/**
 * `count` prompts: openings of documents spread evenly over `documents`, each moving on to the
 * next document that is long enough. Fewer when too few documents are long enough.
 */
export function heldOutPrompts(loaded: LoadedModel, documents: readonly string[], count: number, minTokens: number): HeldOutPrompt[] {
  const prompts: HeldOutPrompt[] = [];
  let next = 0;
  for (let i = 0; i < count && next < documents.length; i++) {
    const start = Math.max(next, Math.floor((i * documents.length) / count));
    for (let document = start; document < documents.length; document++) {
      next = document + 1;
      const opening = openingOf(loaded, documents[document]!, minTokens);
      if (opening !== null) {
        prompts.push({ document, ...opening });
        break;
      }
    }
  }
  return prompts;
}

// ---------------------------------------------------------------------------------------------
// End-to-end generations

/** One PPD decoder of the check: the tree size n, the context-lookup length and whether the n-gram table drafts beside them. */
export interface Candidate {
  n: number;
  /** Context-lookup tokens per step (0 = none). */
  lookup: number;
  /** Whether the adapter folder's static n-gram table (setup.ngram) drafts too. */
  ngram: boolean;
  setup: PpdSetup;
}

export interface GenerationPlan {
  prompts: readonly HeldOutPrompt[];
  /** The PPD decoders, each against plain decoding. */
  candidates: readonly Candidate[];
  maxTokens: number;
  /** Timed generations of each (prompt, decoder); the median time counts. */
  repeats: number;
}

/** One decoder on one prompt: ids and counts from the first repeat (greedy: all repeats agree), the median time. */
export interface RunSummary {
  ids: number[];
  newTokens: number;
  /** Forwards that produced tokens, the prompt's included. */
  steps: number;
  seconds: number;
}

export interface PromptRuns {
  plain: RunSummary;
  /** One per candidate, in the plan's order. */
  ppd: RunSummary[];
}

/** Generations run by generationRuns: one warm-up per decoder, then prompts × decoders × repeats. */
export const generationCount = (plan: GenerationPlan) => (1 + plan.candidates.length) * (1 + plan.prompts.length * plan.repeats);

function greedy(loaded: LoadedModel, prompt: string, maxTokens: number, ppd?: PpdSetup): Promise<GenerationResult> {
  return startGeneration(loaded, { prompt, maxTokens, sampling: { temperature: 0 }, ppd }).complete();
}

function summarise(results: GenerationResult[]): RunSummary {
  const first = results[0]!;
  return { ids: first.ids, newTokens: first.stats.newTokens, steps: first.stats.steps, seconds: spread(results.map((r) => r.stats.seconds)).medianMs };
}

/**
 * Greedy generations of every prompt by plain decoding and by every candidate of the plan,
 * after one warm-up generation per decoder. Per prompt, the decoders run round by round in an
 * order reversed every other round, so no decoder always follows the same one.
 */
export async function generationRuns(loaded: LoadedModel, plan: GenerationPlan, onRun?: () => void): Promise<PromptRuns[]> {
  const decoders: (PpdSetup | undefined)[] = [undefined, ...plan.candidates.map((c) => c.setup)]; // [0] = plain
  for (const setup of decoders) {
    await greedy(loaded, plan.prompts[0]!.text, Math.min(16, plan.maxTokens), setup);
    onRun?.();
  }
  const runs: PromptRuns[] = [];
  for (const [p, prompt] of plan.prompts.entries()) {
    const results: GenerationResult[][] = decoders.map(() => []);
    for (let round = 0; round < plan.repeats; round++) {
      const order = decoders.map((_, d) => d);
      if ((p + round) % 2 === 1) order.reverse();
      for (const d of order) {
        results[d]!.push(await greedy(loaded, prompt.text, plan.maxTokens, decoders[d]));
        onRun?.();
      }
    }
    runs.push({ plain: summarise(results[0]!), ppd: results.slice(1).map(summarise) });
  }
  return runs;
}

export interface MeasuredSize {
  n: number;
  /** Context-lookup tokens per step the size ran with (0 = none). */
  lookup: number;
  /** Whether the n-gram table drafted too. */
  ngram: boolean;
  /** Σ new tokens / Σ seconds over the prompts. */
  plainTokensPerSecond: number;
  ppdTokensPerSecond: number;
  /** ppdTokensPerSecond / plainTokensPerSecond. */
  speedup: number;
  /** Tokens per decoding step after the prompt's forward: Σ (new tokens − 1) / Σ (steps − 1). */
  tau: number;
  /** Prompts where PPD produced exactly plain decoding's ids (greedy: it must be all). */
  identical: number;
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const rate = (runs: RunSummary[]) => sum(runs.map((r) => r.newTokens)) / sum(runs.map((r) => r.seconds));
const sameIds = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((id, i) => id === b[i]);

/** Speed, τ and identity of candidate `index` of the plan (tree size `n`, lookup `lookup`, table or not) over all prompts. */
export function measuredSize(runs: readonly PromptRuns[], index: number, { n, lookup, ngram }: Pick<Candidate, 'n' | 'lookup' | 'ngram'>): MeasuredSize {
  const plain = runs.map((r) => r.plain);
  const ppd = runs.map((r) => r.ppd[index]!);
  const plainTokensPerSecond = rate(plain);
  const ppdTokensPerSecond = rate(ppd);
  const decodingSteps = sum(ppd.map((r) => r.steps - 1));
  return {
    n,
    lookup,
    ngram,
    plainTokensPerSecond,
    ppdTokensPerSecond,
    speedup: ppdTokensPerSecond / plainTokensPerSecond,
    tau: decodingSteps > 0 ? sum(ppd.map((r) => r.newTokens - 1)) / decodingSteps : 1,
    identical: runs.filter((r) => sameIds(r.plain.ids, r.ppd[index]!.ids)).length,
  };
}
