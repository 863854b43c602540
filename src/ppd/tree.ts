/**
 * Candidate trees as data: the `ppd.tree/1` schema (one tree), the `ppd.trees/1` schema (one
 * tree per number of guessing positions, the dynamic tree set), their validation, and JSON
 * load/save. Not the builder (tree-builder.ts) and not the step buffers (tree-buffers.ts).
 *
 * A tree for `guessDepth` = d describes one decoding step that has d ranked guess lists
 * available (depth 1..d beyond the root; the lists come from the prompt tokens of the node
 * accepted in the previous step):
 * - the root is the token already chosen (always accepted);
 * - each candidate is a rank path: `[0]` is the top-1 guess at depth 1, `[0, 2]` its child taking
 *   the 3rd guess at depth 2; a path of length k takes its last token from the depth-k list;
 * - every node, root included, carries `prompts` = how many prompt tokens (0..N) are appended
 *   after it, i.e. how many guessing positions the next step has if the accepted path ends there.
 *
 * Node numbering used across ppd/tree*: node 0 is the root, node 1 + i is `candidates[i]`.
 * Trees parsed or built here keep `candidates` in BFS order (depth, then path lexicographically),
 * so a node's index is also its row in the step input (see tree-buffers.ts).
 *
 * docs/TREES.md documents both schemas with examples.
 */
import { FormatError, InputError } from '../errors.ts';
import { readJsonObject } from '../format/text-file.ts';
import { writeJsonAtomic } from '../format/atomic.ts';

export const TREE_SCHEMA = 'ppd.tree/1';
export const TREE_SET_SCHEMA = 'ppd.trees/1';

/** How the virtual tokens attached to one node attend to each other (PPD.md §2). */
export type AttentionVariant = 'ensemble' | 'decoder' | 'encoder';
export const ATTENTION_VARIANTS: readonly AttentionVariant[] = ['ensemble', 'decoder', 'encoder'];

export interface TreeCandidate {
  /** Ranks of the guesses from depth 1 to depth path.length; non-empty. */
  path: number[];
  /** Prompt tokens attached after this node (0..N). */
  prompts: number;
}

export interface PpdTree {
  schema: typeof TREE_SCHEMA;
  /** d: how many guess lists the step has; every path is at most this long. */
  guessDepth: number;
  /** Every rank is below topK: the guess lists the caller keeps must be at least this long. */
  topK: number;
  root: { prompts: number };
  candidates: TreeCandidate[];
}

export interface PpdTreeSet {
  schema: typeof TREE_SET_SCHEMA;
  /** n: the most input rows one step may use (root + candidates + prompt rows × V). */
  budget: number;
  /** N: prompt tokens the adapter has. */
  promptTokens: number;
  /** V: virtual tokens per prompt token. */
  virtualTokens: number;
  attention: AttentionVariant;
  topK: number;
  /** Where the accuracy table came from (a file, an adapter, a note); free text. */
  accuracySource: string;
  /** [N+1]: 1 + the sum of candidate path probabilities of trees[d]. */
  expectedAcceptedLength: number[];
  /** Long-run mean tokens per step when the trees are switched as PPD.md §5 says. */
  expectedTokensPerStep: number;
  /** [N+1]: trees[d] is used when the previous accepted node had d prompt tokens. */
  trees: PpdTree[];
}

// ---------------------------------------------------------------------------------------------
// Small helpers on valid trees

/** Input rows one step with this tree takes: 1 root + candidates + V × attached prompt tokens. */
export function treeRows(tree: PpdTree, virtualTokens: number): number {
  const prompts = tree.candidates.reduce((sum, c) => sum + c.prompts, tree.root.prompts);
  return 1 + tree.candidates.length + virtualTokens * prompts;
}

/** BFS order: shallower first, then lexicographic by ranks (so parents precede children). */
export function comparePaths(a: readonly number[], b: readonly number[]): number {
  if (a.length !== b.length) return a.length - b.length;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return a[k]! - b[k]!;
  return 0;
}

export function pathKey(path: readonly number[]): string {
  return path.join(',');
}

// ---------------------------------------------------------------------------------------------
// Validation. One checker; the caller decides which error type reports a failure.

type Fail = (field: string, detail: string) => never;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function intField(obj: Record<string, unknown>, key: string, field: string, min: number, max: number, fail: Fail): number {
  const value = obj[key];
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Infinity ? `an integer >= ${min}` : `an integer in ${min}..${max}`;
    fail(field, `must be ${range}, got ${JSON.stringify(value)}`);
  }
  return value;
}

interface TreeLimits {
  /** N; when given, every prompt count must be <= N. */
  promptTokens?: number;
}

function checkTree(raw: unknown, where: string, limits: TreeLimits, fail: Fail): PpdTree {
  if (!isObject(raw)) fail(where, 'must be a JSON object');
  if (raw.schema !== TREE_SCHEMA) fail(`${where}.schema`, `must be "${TREE_SCHEMA}", got ${JSON.stringify(raw.schema)}`);
  const guessDepth = intField(raw, 'guessDepth', `${where}.guessDepth`, 0, Infinity, fail);
  const topK = intField(raw, 'topK', `${where}.topK`, 1, Infinity, fail);
  const maxPrompts = limits.promptTokens ?? Infinity;
  if (!isObject(raw.root)) fail(`${where}.root`, 'must be an object like {"prompts": 3}');
  const rootPrompts = intField(raw.root, 'prompts', `${where}.root.prompts`, 0, maxPrompts, fail);
  if (!Array.isArray(raw.candidates)) fail(`${where}.candidates`, 'must be an array');

  const candidates: TreeCandidate[] = raw.candidates.map((c: unknown, i: number) => {
    const field = `${where}.candidates[${i}]`;
    if (!isObject(c)) fail(field, 'must be an object like {"path": [0], "prompts": 3}');
    const path = c.path;
    if (!Array.isArray(path) || path.length === 0) fail(`${field}.path`, `must be a non-empty array of ranks, got ${JSON.stringify(path)}`);
    if (path.length > guessDepth) {
      fail(`${field}.path`, `${JSON.stringify(path)} is ${path.length} deep but guessDepth is ${guessDepth}`);
    }
    path.forEach((rank: unknown, k: number) => {
      if (typeof rank !== 'number' || !Number.isInteger(rank) || rank < 0 || rank >= topK) {
        fail(`${field}.path[${k}]`, `rank must be an integer in 0..${topK - 1} (topK ${topK}), got ${JSON.stringify(rank)}`);
      }
    });
    const prompts = intField(c, 'prompts', `${field}.prompts`, 0, maxPrompts, fail);
    return { path: [...(path as number[])], prompts };
  });

  const seen = new Set<string>();
  for (const c of candidates) seen.add(pathKey(c.path));
  if (seen.size !== candidates.length) {
    const dup = candidates.find((c, i) => candidates.findIndex((o) => pathKey(o.path) === pathKey(c.path)) !== i)!;
    fail(`${where}.candidates`, `path ${JSON.stringify(dup.path)} appears more than once`);
  }
  candidates.forEach((c, i) => {
    if (c.path.length > 1 && !seen.has(pathKey(c.path.slice(0, -1)))) {
      fail(`${where}.candidates[${i}].path`, `${JSON.stringify(c.path)} has no parent ${JSON.stringify(c.path.slice(0, -1))} in the tree`);
    }
  });
  return { schema: TREE_SCHEMA, guessDepth, topK, root: { prompts: rootPrompts }, candidates };
}

/** A copy of `tree` with candidates in BFS order (the order parse and the builder produce). */
export function canonicalTree(tree: PpdTree): PpdTree {
  return { ...tree, root: { ...tree.root }, candidates: [...tree.candidates].sort((a, b) => comparePaths(a.path, b.path)) };
}

/** Checks an in-memory tree (InputError naming the field); returns it unchanged. */
export function validateTree(tree: PpdTree, limits: TreeLimits = {}): PpdTree {
  checkTree(tree, 'tree', limits, (field, detail) => {
    throw new InputError(`${field} ${detail}`);
  });
  return tree;
}

/** Parses a `ppd.tree/1` object read from `file` (FormatError naming the field), candidates in BFS order. */
export function parseTree(raw: unknown, file = 'tree.json', limits: TreeLimits = {}): PpdTree {
  return canonicalTree(checkTree(raw, 'tree', limits, (field, detail) => {
    throw new FormatError(file, `${field} ${detail}`);
  }));
}

export function loadTree(path: string, limits: TreeLimits = {}): PpdTree {
  return parseTree(readJsonObject(path), path, limits);
}

export function saveTree(path: string, tree: PpdTree): void {
  writeJsonAtomic(path, canonicalTree(validateTree(tree)));
}

// ---------------------------------------------------------------------------------------------
// Tree sets

function checkTreeSet(raw: unknown, fail: Fail): PpdTreeSet {
  if (!isObject(raw)) fail('trees', 'must be a JSON object');
  if (raw.schema !== TREE_SET_SCHEMA) fail('schema', `must be "${TREE_SET_SCHEMA}", got ${JSON.stringify(raw.schema)}`);
  const budget = intField(raw, 'budget', 'budget', 1, Infinity, fail);
  const promptTokens = intField(raw, 'promptTokens', 'promptTokens', 0, Infinity, fail);
  const virtualTokens = intField(raw, 'virtualTokens', 'virtualTokens', 1, Infinity, fail);
  const topK = intField(raw, 'topK', 'topK', 1, Infinity, fail);
  const attention = raw.attention as AttentionVariant;
  if (!ATTENTION_VARIANTS.includes(attention)) {
    fail('attention', `must be one of ${ATTENTION_VARIANTS.join(', ')}, got ${JSON.stringify(raw.attention)}`);
  }
  if (typeof raw.accuracySource !== 'string') fail('accuracySource', `must be a string, got ${JSON.stringify(raw.accuracySource)}`);
  const tau = raw.expectedAcceptedLength;
  if (!Array.isArray(tau) || tau.length !== promptTokens + 1 || !tau.every((t) => typeof t === 'number' && t >= 1)) {
    fail('expectedAcceptedLength', `must be ${promptTokens + 1} numbers >= 1 (one per tree), got ${JSON.stringify(tau)}`);
  }
  const perStep = raw.expectedTokensPerStep;
  if (typeof perStep !== 'number' || !(perStep >= 1)) fail('expectedTokensPerStep', `must be a number >= 1, got ${JSON.stringify(perStep)}`);
  if (!Array.isArray(raw.trees) || raw.trees.length !== promptTokens + 1) {
    fail('trees', `must hold ${promptTokens + 1} trees (one per guessDepth 0..${promptTokens}), got ${Array.isArray(raw.trees) ? raw.trees.length : JSON.stringify(raw.trees)}`);
  }
  const trees = raw.trees.map((t: unknown, d: number) => {
    const tree = canonicalTree(checkTree(t, `trees[${d}]`, { promptTokens }, fail));
    if (tree.guessDepth !== d) fail(`trees[${d}].guessDepth`, `must be ${d} (its index), got ${tree.guessDepth}`);
    if (tree.topK > topK) fail(`trees[${d}].topK`, `${tree.topK} exceeds the set's topK ${topK}`);
    const rows = treeRows(tree, virtualTokens);
    if (rows > budget) fail(`trees[${d}]`, `takes ${rows} input rows, over the budget of ${budget}`);
    return tree;
  });
  return {
    schema: TREE_SET_SCHEMA, budget, promptTokens, virtualTokens, attention, topK,
    accuracySource: raw.accuracySource, expectedAcceptedLength: [...tau], expectedTokensPerStep: perStep, trees,
  };
}

/** Checks an in-memory tree set (InputError naming the field); returns it unchanged. */
export function validateTreeSet(set: PpdTreeSet): PpdTreeSet {
  checkTreeSet(set, (field, detail) => {
    throw new InputError(`tree set: ${field} ${detail}`);
  });
  return set;
}

/** Parses a `ppd.trees/1` object read from `file` (FormatError naming the field). */
export function parseTreeSet(raw: unknown, file = 'trees.json'): PpdTreeSet {
  return checkTreeSet(raw, (field, detail) => {
    throw new FormatError(file, `${field} ${detail}`);
  });
}

export function loadTreeSet(path: string): PpdTreeSet {
  return parseTreeSet(readJsonObject(path), path);
}

export function saveTreeSet(path: string, set: PpdTreeSet): void {
  validateTreeSet(set);
  writeJsonAtomic(path, { ...set, trees: set.trees.map(canonicalTree) });
}
