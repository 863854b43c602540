/**
 * compileTree: one pure function from a tree (tree.ts) to the buffers one decoding step needs,
 * in the shape Medusa uses (mask, index, position and retrieval buffers). Compile once per tree
 * and reuse every step; nothing here touches tokens, logits or the cache.
 *
 * Shape legend: R = input rows of the step, M = tree nodes (root + candidates), N = prompt
 * tokens, Vt = virtual tokens per prompt token.
 *
 * Row order: [root, candidates in BFS order (parents before children), prompt rows grouped per
 * node in node row order, i-major, j-minor within a node]. The forward's mask is [R, P+R]: the P
 * cache columns are all 1 and are the caller's; `mask` here is the [R, R] block of the step's own
 * rows.
 */
import { InputError } from '../errors.ts';
import { ATTENTION_VARIANTS, promptVisibility, type AttentionVariant } from './prompt-mask.ts';
import { comparePaths, pathKey, validateTree, type PpdTree } from './tree.ts';

export interface CompileOptions {
  promptTokens: number; // N
  virtualTokens: number; // Vt
  attention: AttentionVariant;
}

/** What one input row holds. `node` numbers nodes as tree.ts does: 0 = root, 1 + i = tree.candidates[i]. */
export type RowSource =
  | { kind: 'root'; node: 0 }
  | { kind: 'candidate'; node: number; depth: number; rank: number }
  | { kind: 'prompt'; node: number; prompt: number; virtual: number }
  /** Token `depth` of a drafted chain hanging from the root (see withDraftChain; draft.ts). */
  | { kind: 'draft'; node: number; depth: number };

export interface TreeBuffers {
  /** R. */
  rows: number;
  /** [R] what each row is. */
  source: RowSource[];
  /** [R] position of each row relative to the cache length (row position = P + offset). */
  positionOffset: Int32Array;
  /** [R, R] row-major, 1 where row r may attend to row c (the step's own rows only). */
  mask: Uint8Array;
  /** One per leaf, in row order: the rows from the root to the leaf (depth + 1 entries). */
  retrievePaths: number[][];
  /** [M] row of each tree node. */
  nodeRows: Int32Array;
  /** [M][prompts of node][Vt] rows of the prompt tokens attached to each node ([] when none). */
  promptRows: number[][][];
  /** One per candidate row, in row order: which guess list (depth 1..d) and rank fills it. */
  guesses: { row: number; depth: number; rank: number }[];
  /**
   * The verifiers' view of the tree (verify.ts), fixed for the tree: node k (0 = the root) is row
   * `verifyRows[k]` and its parent is node `verifyParents[k]`. Nodes are numbered in the order the
   * retrieval paths first reach them, so a drafted chain's nodes come before the tree's.
   */
  verifyRows: Int32Array;
  verifyParents: Int32Array;
}

/** Verification nodes from retrieval paths: rows in first-reached order, and each node's parent. */
function verificationOrder(retrievePaths: readonly number[][]): Pick<TreeBuffers, 'verifyRows' | 'verifyParents'> {
  const nodeOfRow = new Map<number, number>([[0, 0]]);
  const rows = [0];
  const parents = [0];
  for (const path of retrievePaths) {
    path.forEach((row, depth) => {
      if (nodeOfRow.has(row)) return;
      nodeOfRow.set(row, rows.length);
      rows.push(row);
      parents.push(nodeOfRow.get(path[depth - 1]!)!);
    });
  }
  return { verifyRows: Int32Array.from(rows), verifyParents: Int32Array.from(parents) };
}

/** The step buffers of `tree` (validated against N first; InputError on a bad tree or option). */
export function compileTree(tree: PpdTree, options: CompileOptions): TreeBuffers {
  const { promptTokens, virtualTokens: Vt, attention } = options;
  if (!Number.isInteger(promptTokens) || promptTokens < 0) throw new InputError(`promptTokens must be an integer >= 0, got ${promptTokens}`);
  if (!Number.isInteger(Vt) || Vt < 1) throw new InputError(`virtualTokens must be an integer >= 1, got ${Vt}`);
  if (!ATTENTION_VARIANTS.includes(attention)) {
    throw new InputError(`attention must be one of ${ATTENTION_VARIANTS.join(', ')}, got ${JSON.stringify(attention)}`);
  }
  validateTree(tree, { promptTokens });

  // Node rows: root, then candidates in BFS order.
  const nodeCount = 1 + tree.candidates.length; // M
  const order = tree.candidates.map((_, i) => i + 1).sort((a, b) => comparePaths(tree.candidates[a - 1]!.path, tree.candidates[b - 1]!.path));
  const nodeRows = new Int32Array(nodeCount);
  order.forEach((node, k) => (nodeRows[node] = k + 1));
  const rowNode = [0, ...order]; // [M] node held by each node row

  const pathOf = (node: number): number[] => (node === 0 ? [] : tree.candidates[node - 1]!.path);
  const promptsOf = (node: number): number => (node === 0 ? tree.root.prompts : tree.candidates[node - 1]!.prompts);
  const nodeOfPath = new Map<string, number>(rowNode.map((node) => [pathKey(pathOf(node)), node]));
  // ancestorRows[node]: rows of root..node, in depth order.
  const ancestorRows: number[][] = new Array(nodeCount);
  for (const node of rowNode) {
    const path = pathOf(node);
    ancestorRows[node] = node === 0 ? [0] : [...ancestorRows[nodeOfPath.get(pathKey(path.slice(0, -1)))!]!, nodeRows[node]!];
  }

  const source: RowSource[] = [];
  const offsets: number[] = [];
  const guesses: TreeBuffers['guesses'] = [];
  for (const node of rowNode) {
    const path = pathOf(node);
    if (node === 0) source.push({ kind: 'root', node: 0 });
    else {
      source.push({ kind: 'candidate', node, depth: path.length, rank: path.at(-1)! });
      guesses.push({ row: nodeRows[node]!, depth: path.length, rank: path.at(-1)! });
    }
    offsets.push(path.length);
  }
  const promptRows: number[][][] = Array.from({ length: nodeCount }, () => []);
  for (const node of rowNode) {
    const depth = pathOf(node).length;
    for (let i = 0; i < promptsOf(node); i++) {
      const virtualRows: number[] = [];
      for (let j = 0; j < Vt; j++) {
        virtualRows.push(source.length);
        source.push({ kind: 'prompt', node, prompt: i, virtual: j });
        offsets.push(depth + 1 + i); // stands in for the token i + 1 past the node's bonus token
      }
      promptRows[node]!.push(virtualRows);
    }
  }

  // Each node sees its ancestors; its prompt rows see them too, and each other as the adapter's
  // attention says (prompt-mask.ts; rows of one node are i-major, j-minor, like its [N·Vt] block).
  const R = source.length;
  const mask = new Uint8Array(R * R);
  const see = (row: number, col: number) => (mask[row * R + col] = 1);
  const among = promptVisibility(promptTokens, Vt, attention); // [N·Vt, N·Vt]
  const NV = promptTokens * Vt;
  for (const node of rowNode) {
    const ancestors = ancestorRows[node]!;
    for (const col of ancestors) see(nodeRows[node]!, col);
    const rows = promptRows[node]!.flat();
    rows.forEach((row, a) => {
      for (const col of ancestors) see(row, col);
      rows.forEach((col, b) => among[a * NV + b] && see(row, col));
    });
  }

  const hasChild = new Set<number>();
  for (const node of rowNode) if (node !== 0) hasChild.add(nodeOfPath.get(pathKey(pathOf(node).slice(0, -1)))!);
  const retrievePaths = rowNode.filter((node) => !hasChild.has(node)).map((node) => [...ancestorRows[node]!]);

  return { rows: R, source, positionOffset: Int32Array.from(offsets), mask, retrievePaths, nodeRows, promptRows, guesses, ...verificationOrder(retrievePaths) };
}

/**
 * The buffers of `b` plus a chain of `length` drafted rows (draft.ts: context lookup or static
 * n-gram table) hanging from the root: row R + j holds the chain's token j + 1 at offset j + 1 and sees the root and the chain
 * rows before it. Chain nodes carry no prompt tokens (a step that accepts the chain's end takes
 * the next tree for 0 guessing positions). The chain's path comes first in `retrievePaths`, so
 * where a chain token equals a tree guess the verifiers meet the chain's node first.
 */
export function withDraftChain(b: TreeBuffers, length: number): TreeBuffers {
  if (!(Number.isInteger(length) && length >= 0)) throw new InputError(`drafted chain length must be an integer >= 0, got ${length}`);
  if (length === 0) return b;
  const R = b.rows + length;
  const M = b.nodeRows.length;
  const mask = new Uint8Array(R * R);
  for (let r = 0; r < b.rows; r++) mask.set(b.mask.subarray(r * b.rows, (r + 1) * b.rows), r * R);
  const chainRows = Array.from({ length }, (_, j) => b.rows + j);
  chainRows.forEach((row, j) => {
    mask[row * R] = 1;
    for (let k = 0; k <= j; k++) mask[row * R + chainRows[k]!] = 1;
  });
  const retrievePaths = [[0, ...chainRows], ...b.retrievePaths];
  return {
    rows: R,
    source: [...b.source, ...chainRows.map((_, j): RowSource => ({ kind: 'draft', node: M + j, depth: j + 1 }))],
    positionOffset: Int32Array.from([...b.positionOffset, ...chainRows.map((_, j) => j + 1)]),
    mask,
    retrievePaths,
    nodeRows: Int32Array.from([...b.nodeRows, ...chainRows]),
    promptRows: [...b.promptRows, ...chainRows.map(() => [])],
    guesses: b.guesses,
    ...verificationOrder(retrievePaths),
  };
}
