/**
 * Candidate trees as data: the `ppd.tree/1` schema (one tree), the `ppd.trees/1` schema (one
 * tree per number of guessing positions, the dynamic tree set), their validation, and reading
 * them (by path on Node: tree-files.ts). Not the builder (tree-builder.ts) and not the step
 * buffers (tree-buffers.ts).
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
import { z } from 'zod';
import { InputError } from '../errors.ts';
import { arrayOf, crossCheck, type Fail, failing, integer, literal, number, object, oneOf, parseWithSchema, shown, text } from '../format/schema.ts';
import { readFolderJson, type Folder } from '../format/readable-file.ts';
import { ATTENTION_VARIANTS, type AttentionVariant } from './prompt-mask.ts';

export const TREE_SCHEMA = 'ppd.tree/1';
export const TREE_SET_SCHEMA = 'ppd.trees/1';


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
  /** n: the most input rows one step may use (root + candidates + prompt rows × Vt). */
  budget: number;
  /** N: prompt tokens the adapter has. */
  promptTokens: number;
  /** Vt: virtual tokens per prompt token. */
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

/** Input rows one step with this tree takes: 1 root + candidates + Vt × attached prompt tokens. */
export function treeRows(tree: PpdTree, virtualTokens: number): number {
  const prompts = tree.candidates.reduce((sum, c) => sum + c.prompts, tree.root.prompts);
  return 1 + tree.candidates.length + virtualTokens * prompts;
}

/** Input rows of the set's widest tree (its budget or fewer: the builder may leave rows unused). */
export function widestTreeRows(set: PpdTreeSet): number {
  return Math.max(...set.trees.map((tree) => treeRows(tree, set.virtualTokens)));
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
// Validation: zod schemas (format/schema.ts) for the fields, cross checks for what relates them.
// One checker for files (FormatError naming the file) and in-memory trees (InputError).

export interface TreeLimits {
  /** N; when given, every prompt count must be <= N. */
  promptTokens?: number;
}

const treeFields = object({
  schema: literal(TREE_SCHEMA),
  guessDepth: integer(0),
  topK: integer(1),
  root: object({ prompts: integer(0) }, 'an object like {"prompts": 3}'),
  candidates: arrayOf(
    object({
      path: arrayOf(integer(0), 'a non-empty array of ranks').min(1, failing((v) => `must be a non-empty array of ranks, got ${shown(v)}`)),
      prompts: integer(0),
    }, 'an object like {"path": [0], "prompts": 3}'),
    'an array',
  ),
});

/** Depths, ranks and prompt counts in range; every path once, with its parent. `at` prefixes paths. */
function checkTreeNodes(tree: z.output<typeof treeFields>, limits: TreeLimits, fail: Fail, at: (string | number)[] = []): void {
  const maxPrompts = limits.promptTokens ?? Infinity;
  const promptsInRange = (prompts: number, path: (string | number)[]) => {
    if (prompts > maxPrompts) fail([...at, ...path], `must be an integer in 0..${maxPrompts}, got ${prompts}`);
  };
  promptsInRange(tree.root.prompts, ['root', 'prompts']);
  tree.candidates.forEach(({ path, prompts }, i) => {
    if (path.length > tree.guessDepth) {
      fail([...at, 'candidates', i, 'path'], `${JSON.stringify(path)} is ${path.length} deep but guessDepth is ${tree.guessDepth}`);
    }
    path.forEach((rank, k) => {
      if (rank >= tree.topK) {
        fail([...at, 'candidates', i, 'path', k], `rank must be an integer in 0..${tree.topK - 1} (topK ${tree.topK}), got ${rank}`);
      }
    });
    promptsInRange(prompts, ['candidates', i, 'prompts']);
  });
  const seen = new Set<string>();
  for (const { path } of tree.candidates) {
    if (seen.has(pathKey(path))) fail([...at, 'candidates'], `path ${JSON.stringify(path)} appears more than once`);
    seen.add(pathKey(path));
  }
  tree.candidates.forEach(({ path }, i) => {
    if (path.length > 1 && !seen.has(pathKey(path.slice(0, -1)))) {
      fail([...at, 'candidates', i, 'path'], `${JSON.stringify(path)} has no parent ${JSON.stringify(path.slice(0, -1))} in the tree`);
    }
  });
}

const treeSchema = (limits: TreeLimits) =>
  crossCheck(treeFields, (tree, fail) => checkTreeNodes(tree, limits, fail)).transform((tree): PpdTree => tree);

/** Tree paths are written bare: `tree.candidates[0].path ...`. */
const bare = (path: string) => path;

/** A copy of `tree` with candidates in BFS order (the order parse and the builder produce). */
export function canonicalTree(tree: PpdTree): PpdTree {
  return { ...tree, root: { ...tree.root }, candidates: [...tree.candidates].sort((a, b) => comparePaths(a.path, b.path)) };
}

/** Checks an in-memory tree (InputError naming the field); returns it unchanged. */
export function validateTree(tree: PpdTree, limits: TreeLimits = {}): PpdTree {
  parseWithSchema(treeSchema(limits), tree, { file: 'tree', root: 'tree', label: bare, error: (detail) => new InputError(detail) });
  return tree;
}

/** Parses a `ppd.tree/1` object read from `file` (FormatError naming the field), candidates in BFS order. */
export function parseTree(raw: unknown, file = 'tree.json', limits: TreeLimits = {}): PpdTree {
  return canonicalTree(parseWithSchema(treeSchema(limits), raw, { file, root: 'tree', label: bare }));
}

// ---------------------------------------------------------------------------------------------
// Tree sets

const treeSetSchema = crossCheck(object({
  schema: literal(TREE_SET_SCHEMA),
  budget: integer(1),
  promptTokens: integer(0),
  virtualTokens: integer(1),
  topK: integer(1),
  attention: oneOf(ATTENTION_VARIANTS),
  accuracySource: text('a string', true),
  expectedAcceptedLength: arrayOf(number(1), 'numbers >= 1 (one per tree)'),
  expectedTokensPerStep: number(1),
  trees: arrayOf(treeFields, 'an array of trees (one per guessDepth 0..N)'),
}), (set, fail) => {
  const N = set.promptTokens;
  if (set.expectedAcceptedLength.length !== N + 1) {
    fail(['expectedAcceptedLength'], `must be ${N + 1} numbers >= 1 (one per tree), got ${JSON.stringify(set.expectedAcceptedLength)}`);
  }
  if (set.trees.length !== N + 1) {
    fail(['trees'], `must hold ${N + 1} trees (one per guessDepth 0..${N}), got ${set.trees.length}`);
  }
  set.trees.forEach((tree, d) => {
    checkTreeNodes(tree, { promptTokens: N }, fail, ['trees', d]);
    if (tree.guessDepth !== d) fail(['trees', d, 'guessDepth'], `must be ${d} (its index), got ${tree.guessDepth}`);
    if (tree.topK > set.topK) fail(['trees', d, 'topK'], `${tree.topK} exceeds the set's topK ${set.topK}`);
    const rows = treeRows(tree, set.virtualTokens);
    if (rows > set.budget) fail(['trees', d], `takes ${rows} input rows, over the budget of ${set.budget}`);
  });
}).transform((set): PpdTreeSet => ({ ...set, trees: set.trees.map(canonicalTree) }));

/** Checks an in-memory tree set (InputError naming the field); returns it unchanged. */
export function validateTreeSet(set: PpdTreeSet): PpdTreeSet {
  parseWithSchema(treeSetSchema, set, { file: 'tree set', label: bare, error: (detail) => new InputError(`tree set: ${detail}`) });
  return set;
}

/** Parses a `ppd.trees/1` object read from `file` (FormatError naming the field). */
export function parseTreeSet(raw: unknown, file = 'trees.json'): PpdTreeSet {
  return parseWithSchema(treeSetSchema, raw, { file, label: bare });
}

/** The tree set `name` in `folder` (an adapter folder). */
export function readTreeSet(folder: Folder, name: string): PpdTreeSet {
  return parseTreeSet(readFolderJson(folder, name), folder.nameOf(name));
}
