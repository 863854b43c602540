/**
 * The PPD reference implementation's sparse trees (hmarkc/parallel-prompt-decoding,
 * prompt/inference/dynamic_sparse_trees_*.py) read as ppd tree sets (`ppd.trees/1`, tree.ts),
 * and ppd's sets written in their form.
 *
 * Their form is a Python dictionary, one per input-length limit, in a .py file:
 *
 *   dynamic_sparse_trees_105 = {1: [[[0], 0.15, 3], [[1], 0.09, 3], ...], 2: [...], 3: [...]}
 *
 * Key d = how many guess lists the step has (the prompt tokens the accepted node carried); each
 * entry [path, acc, n] is a candidate: its rank path (path[k] = rank of the guess at depth k+1,
 * as in ppd), its probability of being accepted (the product of accuracies along the path), and
 * n = prompt tokens attached after it. Their decoder attaches all N prompt tokens to the root
 * (generate_buffers adds `([-1], num_special_tokens)`) and has no tree for d = 0; ppd's set gets
 * one (the root alone, N prompt tokens), never used when every node carries prompt tokens.
 *
 * Read here: that Python literal (comments, several assignments in one file, tuples, trailing
 * commas), or the same dictionary as JSON (string keys). Not the trees' semantics (tree.ts) nor
 * the builder (tree-builder.ts).
 */
import { FormatError, InputError } from '../errors.ts';
import { evaluateTreeSet, pathProbability, type PathCandidate } from './tree-builder.ts';
import type { AttentionVariant } from './prompt-mask.ts';
import { comparePaths, TREE_SCHEMA, TREE_SET_SCHEMA, treeRows, validateTreeSet, type PpdTree, type PpdTreeSet } from './tree.ts';

/** One candidate as the reference writes it. */
export interface ReferenceCandidate {
  path: number[];
  /** Probability the whole path is accepted. */
  accuracy: number;
  /** Prompt tokens attached after this node. */
  prompts: number;
}

/** d -> candidates, as one `dynamic_sparse_trees_*` dictionary. */
export type ReferenceTrees = Map<number, ReferenceCandidate[]>;

/**
 * The dictionaries a .py (or .json) file defines, by name (a JSON file's one dictionary is named
 * "json"). Only the literal syntax the reference writes is accepted: numbers, lists, tuples,
 * dictionaries with integer or string keys.
 */
export function readReferenceTreeFile(text: string, file: string): Map<string, unknown> {
  const trimmed = text.trimStart();
  if (trimmed.startsWith('{')) return new Map([['json', parseLiteral(trimmed, file)]]);
  const code = text.replace(/#[^\n]*/g, '');
  const found = new Map<string, unknown>();
  const assignment = /^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*\{/gm;
  for (let match = assignment.exec(code); match; match = assignment.exec(code)) {
    const start = match.index + match[0].length - 1;
    const end = matchingBrace(code, start, file);
    found.set(match[1]!, parseLiteral(code.slice(start, end + 1), file, match[1]));
    assignment.lastIndex = end + 1;
  }
  if (found.size === 0) throw new FormatError(file, 'defines no dictionary (expected `name = {1: [[[0], 0.15, 3], ...], ...}` or a JSON object)');
  return found;
}

function matchingBrace(code: string, start: number, file: string): number {
  let depth = 0;
  for (let i = start; i < code.length; i++) {
    if (code[i] === '{') depth++;
    else if (code[i] === '}' && --depth === 0) return i;
  }
  throw new FormatError(file, 'a dictionary is not closed');
}

/** The Python literal as JSON: tuples as lists, integer keys quoted, trailing commas dropped. */
function parseLiteral(literal: string, file: string, name?: string): unknown {
  if (/[^\s\d.eE+\-[\](){}:,"]/.test(literal)) {
    throw new FormatError(file, `${name ?? 'the dictionary'} holds something other than numbers, lists and dictionaries`);
  }
  const json = literal
    .replace(/\(/g, '[')
    .replace(/\)/g, ']')
    .replace(/([{,]\s*)(-?\d+)\s*:/g, '$1"$2":')
    .replace(/,(\s*[\]}])/g, '$1');
  try {
    return JSON.parse(json);
  } catch (e) {
    throw new FormatError(file, `${name ?? 'the dictionary'} does not parse: ${(e as Error).message}`);
  }
}

/** One dictionary of the file: the one named `name`, or the only one. */
export function pickReferenceTrees(dictionaries: Map<string, unknown>, file: string, name?: string): ReferenceTrees {
  let chosen: string;
  if (name !== undefined) {
    if (!dictionaries.has(name)) throw new InputError(`${file} defines no ${name} (it defines ${[...dictionaries.keys()].join(', ')})`);
    chosen = name;
  } else if (dictionaries.size === 1) {
    chosen = [...dictionaries.keys()][0]!;
  } else {
    throw new InputError(`${file} defines ${dictionaries.size} tree dictionaries (${[...dictionaries.keys()].join(', ')}); say which with --name`);
  }
  return checkReferenceTrees(dictionaries.get(chosen), `${file}: ${chosen}`);
}

function checkReferenceTrees(raw: unknown, where: string): ReferenceTrees {
  const fail = (field: string, detail: string): never => {
    throw new FormatError(where, `${field} ${detail}`);
  };
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('the trees', 'must be a dictionary {depth: [[path, accuracy, prompts], ...]}');
  const trees: ReferenceTrees = new Map();
  for (const [key, list] of Object.entries(raw as Record<string, unknown>)) {
    const d = Number(key);
    if (!Number.isInteger(d) || d < 1) fail(`key ${JSON.stringify(key)}`, 'must be a depth >= 1');
    if (!Array.isArray(list)) return fail(`[${d}]`, 'must be a list of [path, accuracy, prompts]');
    trees.set(
      d,
      list.map((entry: unknown, i: number) => {
        const field = `[${d}][${i}]`;
        if (!Array.isArray(entry) || entry.length !== 3) fail(field, `must be [path, accuracy, prompts], got ${JSON.stringify(entry)}`);
        const [path, accuracy, prompts] = entry as [unknown, unknown, unknown];
        if (!Array.isArray(path) || path.length === 0 || !path.every((r) => Number.isInteger(r) && r >= 0)) {
          fail(`${field} path`, `must be a non-empty list of ranks >= 0, got ${JSON.stringify(path)}`);
        }
        if (typeof accuracy !== 'number' || !(accuracy >= 0 && accuracy <= 1)) fail(`${field} accuracy`, `must be a probability, got ${JSON.stringify(accuracy)}`);
        if (!Number.isInteger(prompts) || (prompts as number) < 0) fail(`${field} prompts`, `must be an integer >= 0, got ${JSON.stringify(prompts)}`);
        return { path: path as number[], accuracy: accuracy as number, prompts: prompts as number };
      }),
    );
  }
  if (trees.size === 0) fail('the trees', 'are empty');
  return trees;
}

export interface ReferenceConversion {
  /** N: the adapter's prompt tokens (the reference's num_special_tokens); default: the deepest key. */
  promptTokens?: number;
  /** Vt: virtual tokens per prompt token (default 1, the only value the reference decodes with). */
  virtualTokens?: number;
  attention?: AttentionVariant;
  /** Recorded as the set's accuracySource. */
  source: string;
}

/** The ppd tree set equivalent to one reference dictionary; InputError naming what does not fit. */
export function treeSetFromReference(reference: ReferenceTrees, options: ReferenceConversion): PpdTreeSet {
  const deepest = Math.max(...reference.keys());
  const N = options.promptTokens ?? deepest;
  const Vt = options.virtualTokens ?? 1;
  if (deepest > N) throw new InputError(`${options.source}: has a tree for ${deepest} guess lists, but the adapter has ${N} prompt tokens`);
  const states = Array.from({ length: N + 1 }, (_, d) => {
    // A depth the dictionary lacks (0 always, others rarely) verifies nothing: the root with N prompt tokens.
    const candidates = [...(reference.get(d) ?? [])].sort((a, b) => comparePaths(a.path, b.path));
    for (const c of candidates) {
      if (c.prompts > N) throw new InputError(`${options.source}: [${d}] path ${JSON.stringify(c.path)} attaches ${c.prompts} prompt tokens, the adapter has ${N}`);
    }
    return { d, candidates };
  });
  const topK = 1 + Math.max(0, ...states.flatMap((s) => s.candidates.flatMap((c) => c.path)));
  const trees: PpdTree[] = states.map(({ d, candidates }) => ({
    schema: TREE_SCHEMA,
    guessDepth: d,
    topK,
    root: { prompts: N },
    candidates: candidates.map((c) => ({ path: [...c.path], prompts: c.prompts })),
  }));
  const budget = Math.max(...trees.map((t) => treeRows(t, Vt)));
  // Path checks (parents present, no duplicates, depths) come from the schema, naming the tree.
  const draft: PpdTreeSet = {
    schema: TREE_SET_SCHEMA, budget, promptTokens: N, virtualTokens: Vt, attention: options.attention ?? 'ensemble', topK,
    accuracySource: options.source, expectedAcceptedLength: trees.map(() => 1), expectedTokensPerStep: 1, trees,
  };
  validateTreeSet(draft);
  const { tau, tokensPerStep } = evaluateTreeSet(
    states.map(({ candidates }) => ({
      candidates: candidates.map((c): PathCandidate => ({ path: c.path, probability: c.accuracy })),
      prompts: Int32Array.from([N, ...candidates.map((c) => c.prompts)]),
    })),
  );
  return validateTreeSet({ ...draft, expectedAcceptedLength: tau, expectedTokensPerStep: tokensPerStep });
}

/**
 * A ppd tree set as the reference's Python dictionary, `name = {d: [[path, accuracy, n], ...]}`
 * for d = 1..N, each accuracy the path's probability under `acc` (the adapter's accuracy table).
 * The reference attaches all N prompt tokens to the root whatever the tree says, so a set whose
 * roots carry fewer takes a few more rows there.
 */
export function referenceTreesSource(set: PpdTreeSet, acc: readonly (readonly number[])[], name: string): string {
  const trees = set.trees.filter((t) => t.guessDepth >= 1).map((t) => {
    const entries = t.candidates.map((c) => `[${JSON.stringify(c.path)}, ${pathProbability(acc, c.path)}, ${c.prompts}]`);
    return `${t.guessDepth}: [${entries.join(', ')}]`;
  });
  return `# ppd tree set (budget ${set.budget} rows, ${set.promptTokens} prompt tokens) from ${set.accuracySource}\n${name} = {${trees.join(', ')}}\n`;
}
