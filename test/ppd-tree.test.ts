/**
 * Candidate trees: hand-drawn trees compile to buffers written out by hand (a chain, a branching
 * tree with prompt tokens, the three attention variants with V = 2); malformed trees and tree
 * sets fail naming the field; JSON round-trips; the builder's trees are valid, respect the
 * budget, have τ = 1 + Σ p, get no worse with a larger budget, and match exhaustive search on
 * tiny cases (the greedy prompt pruning, and the whole set).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { FormatError, InputError } from '../src/errors.ts';
import { parseTree, parseTreeSet, treeRows, type PpdTree, type PpdTreeSet } from '../src/ppd/tree.ts';
import { loadTree, loadTreeSet, saveTree, saveTreeSet } from '../src/ppd/tree-files.ts';
import { compileTree, withDraftChain, type CompileOptions, type TreeBuffers } from '../src/ppd/tree-buffers.ts';
import {
  allocatePrompts, allocatePromptsExhaustive, allocationValue, buildTreeSet, endProbabilities, expectedAcceptedLength,
  pathProbability, RESTART, topPaths,
} from '../src/ppd/tree-builder.ts';

const dir = mkdtempSync(join(tmpdir(), 'ppd-tree-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function tree(guessDepth: number, rootPrompts: number, candidates: [number[], number][], topK = 10): PpdTree {
  return { schema: 'ppd.tree/1', guessDepth, topK, root: { prompts: rootPrompts }, candidates: candidates.map(([path, prompts]) => ({ path, prompts })) };
}

/** The mask as one string per row, '1' where the row sees the column. */
function maskRows(b: TreeBuffers): string[] {
  return Array.from({ length: b.rows }, (_, r) => Array.from(b.mask.subarray(r * b.rows, (r + 1) * b.rows)).join(''));
}

/** Mask rows from lists of visible columns. */
function rowsSeeing(R: number, visible: number[][]): string[] {
  return visible.map((cols) => Array.from({ length: R }, (_, c) => (cols.includes(c) ? '1' : '0')).join(''));
}

const N3V1: CompileOptions = { promptTokens: 3, virtualTokens: 1, attention: 'ensemble' };

describe('compileTree: hand-drawn trees', () => {
  test('a chain root → [0] → [0,0] with two prompt tokens on the leaf', () => {
    const b = compileTree(tree(2, 0, [[[0], 0], [[0, 0], 2]]), N3V1);
    assert.equal(b.rows, 5);
    assert.deepEqual(b.source, [
      { kind: 'root', node: 0 },
      { kind: 'candidate', node: 1, depth: 1, rank: 0 },
      { kind: 'candidate', node: 2, depth: 2, rank: 0 },
      { kind: 'prompt', node: 2, prompt: 0, virtual: 0 },
      { kind: 'prompt', node: 2, prompt: 1, virtual: 0 },
    ]);
    assert.deepEqual([...b.positionOffset], [0, 1, 2, 3, 4]);
    assert.deepEqual(maskRows(b), ['10000', '11000', '11100', '11110', '11111']);
    assert.deepEqual(b.retrievePaths, [[0, 1, 2]]);
    assert.deepEqual([...b.nodeRows], [0, 1, 2]);
    assert.deepEqual(b.promptRows, [[], [], [[3], [4]]]);
    assert.deepEqual(b.guesses, [{ row: 1, depth: 1, rank: 0 }, { row: 2, depth: 2, rank: 0 }]);
  });

  test('a drafted chain of 2 beside root → [0] with one prompt token on the candidate', () => {
    const base = compileTree(tree(1, 0, [[[0], 1]]), N3V1); // rows: root, [0], prompt of [0]
    const b = withDraftChain(base, 2);
    assert.equal(b.rows, 5);
    assert.deepEqual(b.source.slice(3), [
      { kind: 'draft', node: 2, depth: 1 },
      { kind: 'draft', node: 3, depth: 2 },
    ]);
    assert.deepEqual([...b.positionOffset], [0, 1, 2, 1, 2]);
    // The chain sees the root and its own earlier rows, nothing of the tree; the tree not the chain.
    assert.deepEqual(maskRows(b), rowsSeeing(5, [[0], [0, 1], [0, 1, 2], [0, 3], [0, 3, 4]]));
    assert.deepEqual(b.retrievePaths, [[0, 3, 4], [0, 1]]);
    // The verifiers meet the chain's nodes first (its path comes first), then the tree's.
    assert.deepEqual([...b.verifyRows], [0, 3, 4, 1]);
    assert.deepEqual([...b.verifyParents], [0, 0, 1, 0]);
    assert.deepEqual([...b.nodeRows], [0, 1, 3, 4]);
    assert.deepEqual(b.promptRows, [[], [[2]], [], []]);
    assert.deepEqual(b.guesses, base.guesses);
    assert.equal(withDraftChain(base, 0), base);
    assert.throws(() => withDraftChain(base, -1), InputError);
  });

  test('a two-level branching tree given out of order, prompt tokens on some nodes', () => {
    //            root (1 prompt)
    //           /          \
    //        [0]            [1] (2 prompts)
    //       /    \
    //  [0,0](1)  [0,1]
    // node numbers follow the given order: 1 = [0,1], 2 = [1], 3 = [0], 4 = [0,0].
    const t = tree(2, 1, [[[0, 1], 0], [[1], 2], [[0], 0], [[0, 0], 1]], 3);
    const b = compileTree(t, N3V1);
    assert.equal(b.rows, 9);
    assert.deepEqual([...b.nodeRows], [0, 4, 2, 1, 3]); // rows: root, [0], [1], [0,0], [0,1]
    assert.deepEqual(b.source.slice(5), [
      { kind: 'prompt', node: 0, prompt: 0, virtual: 0 }, // 5: root's
      { kind: 'prompt', node: 2, prompt: 0, virtual: 0 }, // 6, 7: [1]'s
      { kind: 'prompt', node: 2, prompt: 1, virtual: 0 },
      { kind: 'prompt', node: 4, prompt: 0, virtual: 0 }, // 8: [0,0]'s
    ]);
    assert.deepEqual([...b.positionOffset], [0, 1, 1, 2, 2, 1, 2, 3, 3]);
    assert.deepEqual(maskRows(b), rowsSeeing(9, [
      [0], [0, 1], [0, 2], [0, 1, 3], [0, 1, 4], // candidates: themselves and their ancestors
      [0, 5], [0, 2, 6], [0, 2, 6, 7], [0, 1, 3, 8], // prompt rows: their node's path, then causal
    ]));
    assert.deepEqual(b.retrievePaths, [[0, 2], [0, 1, 3], [0, 1, 4]]);
    // Verification nodes in the order the paths reach them; each parent is the row's nearest ancestor.
    assert.deepEqual([...b.verifyRows], [0, 2, 1, 3, 4]);
    assert.deepEqual([...b.verifyParents], [0, 0, 0, 2, 2]);
    assert.deepEqual(b.promptRows, [[[5]], [], [[6], [7]], [], [[8]]]);
    assert.deepEqual(b.guesses, [
      { row: 1, depth: 1, rank: 0 }, { row: 2, depth: 1, rank: 1 }, { row: 3, depth: 2, rank: 0 }, { row: 4, depth: 2, rank: 1 },
    ]);
  });

  // root (1 prompt token) → [0] (2 prompt tokens), V = 2. Rows: 0 root, 1 [0], 2-3 root's prompt
  // 0 (virtual 0, 1), 4-5 [0]'s prompt 0, 6-7 [0]'s prompt 1.
  const withV2 = tree(1, 1, [[[0], 2]]);
  const common = [[0], [0, 1]];
  const expected: Record<CompileOptions['attention'], number[][]> = {
    ensemble: [...common, [0, 2], [0, 3], [0, 1, 4], [0, 1, 5], [0, 1, 4, 6], [0, 1, 5, 7]],
    decoder: [...common, [0, 2], [0, 2, 3], [0, 1, 4], [0, 1, 4, 5], [0, 1, 4, 5, 6], [0, 1, 4, 5, 6, 7]],
    encoder: [...common, [0, 2, 3], [0, 2, 3], [0, 1, 4, 5], [0, 1, 4, 5], [0, 1, 4, 5, 6, 7], [0, 1, 4, 5, 6, 7]],
  };
  for (const attention of ['ensemble', 'decoder', 'encoder'] as const) {
    test(`V = 2, ${attention} attention among a node's virtual tokens`, () => {
      const b = compileTree(withV2, { promptTokens: 2, virtualTokens: 2, attention });
      assert.equal(b.rows, 8);
      assert.deepEqual([...b.positionOffset], [0, 1, 1, 1, 2, 2, 3, 3]); // virtual tokens share a position
      assert.deepEqual(b.promptRows, [[[2, 3]], [[4, 5], [6, 7]]]);
      assert.deepEqual(maskRows(b), rowsSeeing(8, expected[attention]));
      assert.deepEqual(b.retrievePaths, [[0, 1]]);
    });
  }

  test('a root-only tree is one row that is its own path', () => {
    const b = compileTree(tree(0, 0, []), N3V1);
    assert.equal(b.rows, 1);
    assert.deepEqual(maskRows(b), ['1']);
    assert.deepEqual(b.retrievePaths, [[0]]);
    assert.deepEqual([...b.verifyRows], [0]);
    assert.deepEqual(b.guesses, []);
  });

  test('rows agree with treeRows, and bad options or trees are InputErrors', () => {
    const t = tree(2, 1, [[[0, 1], 0], [[1], 2], [[0], 0], [[0, 0], 1]], 3);
    assert.equal(compileTree(t, { promptTokens: 3, virtualTokens: 2, attention: 'decoder' }).rows, treeRows(t, 2));
    assert.throws(() => compileTree(t, { promptTokens: 1, virtualTokens: 1, attention: 'ensemble' }), (e: unknown) =>
      e instanceof InputError && /tree\.candidates\[1\]\.prompts/.test(e.message));
    assert.throws(() => compileTree(t, { ...N3V1, virtualTokens: 0 }), InputError);
    assert.throws(() => compileTree(t, { ...N3V1, attention: 'causal' as never }), /attention must be one of/);
  });
});

describe('tree schema', () => {
  const good = { schema: 'ppd.tree/1', guessDepth: 2, topK: 3, root: { prompts: 3 }, candidates: [{ path: [0], prompts: 1 }, { path: [0, 2], prompts: 0 }] };
  const bad = (edit: (t: any) => void): unknown => {
    const t = structuredClone(good);
    edit(t);
    return t;
  };
  const cases: [string, unknown, RegExp][] = [
    ['wrong schema', bad((t) => (t.schema = 'ppd.tree/2')), /tree\.schema must be "ppd\.tree\/1", got "ppd\.tree\/2"/],
    ['missing parent', bad((t) => t.candidates.shift()), /tree\.candidates\[0\]\.path \[0,2\] has no parent \[0\]/],
    ['rank over topK', bad((t) => (t.candidates[1].path = [0, 3])), /tree\.candidates\[1\]\.path\[1\] rank must be an integer in 0\.\.2 \(topK 3\), got 3/],
    ['too deep', bad((t) => t.candidates.push({ path: [0, 2, 0], prompts: 0 })), /tree\.candidates\[2\]\.path \[0,2,0\] is 3 deep but guessDepth is 2/],
    ['prompts over N', bad((t) => (t.root.prompts = 4)), /tree\.root\.prompts must be an integer in 0\.\.3, got 4/],
    ['duplicate path', bad((t) => t.candidates.push({ path: [0], prompts: 0 })), /path \[0\] appears more than once/],
    ['empty path', bad((t) => (t.candidates[0].path = [])), /tree\.candidates\[0\]\.path must be a non-empty array/],
    ['negative prompts', bad((t) => (t.candidates[0].prompts = -1)), /tree\.candidates\[0\]\.prompts must be an integer/],
  ];
  for (const [name, raw, message] of cases) {
    test(`rejects: ${name}`, () => {
      assert.throws(() => parseTree(raw, 'my-tree.json', { promptTokens: 3 }), (e: unknown) => {
        assert.ok(e instanceof FormatError, `FormatError expected, got ${e}`);
        assert.match(e.message, /^my-tree\.json: /);
        assert.match(e.message, message);
        return true;
      });
    });
  }

  test('parse sorts candidates into BFS order; save + load round-trips', () => {
    const shuffled = { ...good, candidates: [good.candidates[1], good.candidates[0]] };
    const parsed = parseTree(shuffled);
    assert.deepEqual(parsed, good);
    const path = join(dir, 'tree.json');
    saveTree(path, parsed);
    assert.deepEqual(loadTree(path, { promptTokens: 3 }), parsed);
  });

  test('unreadable files name the file', () => {
    assert.throws(() => loadTree(join(dir, 'missing.json')), /missing\.json: file not found/);
    writeFileSync(join(dir, 'broken.json'), '{"schema": ');
    assert.throws(() => loadTree(join(dir, 'broken.json')), (e: unknown) => e instanceof FormatError && /broken\.json: malformed JSON/.test(e.message));
  });
});

// A table shaped like a trained adapter's: accuracy falls with depth and with rank.
const ACC = [
  [0.62, 0.1, 0.05, 0.03, 0.02, 0.015],
  [0.45, 0.1, 0.05, 0.03, 0.02, 0.015],
  [0.33, 0.09, 0.05, 0.03, 0.02, 0.015],
];

describe('tree set schema', () => {
  test('a built set round-trips through JSON', () => {
    const set = buildTreeSet(ACC, { budget: 20, virtualTokens: 2, attention: 'encoder', accuracySource: 'runs/x/accuracy.json' });
    const path = join(dir, 'trees.json');
    saveTreeSet(path, set);
    assert.deepEqual(loadTreeSet(path), set);
  });

  test('rejects sets that do not fit together, naming the field', () => {
    const set = buildTreeSet(ACC, { budget: 20 });
    const bad = (edit: (s: any) => void): unknown => {
      const s: any = structuredClone(set);
      edit(s);
      return s;
    };
    const cases: [unknown, RegExp][] = [
      [bad((s) => s.trees.pop()), /trees must hold 4 trees \(one per guessDepth 0\.\.3\), got 3/],
      [bad((s) => ([s.trees[1], s.trees[2]] = [s.trees[2], s.trees[1]])), /trees\[1\]\.guessDepth must be 1 \(its index\), got 2/],
      [bad((s) => (s.budget = 10)), /trees\[\d\] takes \d+ input rows, over the budget of 10/],
      [bad((s) => (s.attention = 'causal')), /attention must be one of ensemble, decoder, encoder, got "causal"/],
      [bad((s) => (s.trees[3].root.prompts = 4)), /trees\[3\]\.root\.prompts must be an integer in 0\.\.3, got 4/],
      [bad((s) => s.expectedAcceptedLength.pop()), /expectedAcceptedLength must be 4 numbers/],
      [bad((s) => (s.schema = 'ppd.tree/1')), /schema must be "ppd\.trees\/1"/],
    ];
    for (const [raw, message] of cases) {
      assert.throws(() => parseTreeSet(raw, 'trees.json'), (e: unknown) => e instanceof FormatError && message.test(e.message) && e.message.startsWith('trees.json: '));
    }
  });
});

describe('builder helpers', () => {
  test('path probabilities multiply along the path; τ = 1 + Σ p', () => {
    assert.equal(pathProbability(ACC, [0]), 0.62);
    assert.ok(Math.abs(pathProbability(ACC, [0, 1, 2]) - 0.62 * 0.1 * 0.05) < 1e-15);
    assert.equal(expectedAcceptedLength([0.5, 0.25]), 1.75);
  });

  test('end probabilities: accepted minus children accepted; they sum to 1', () => {
    const acc = [[0.5, 0.25], [0.5, 0.25]];
    const paths = [[0], [1], [0, 0]];
    const end = endProbabilities(paths.map((path) => ({ path, probability: pathProbability(acc, path) })));
    assert.deepEqual([...end], [0.25, 0.25, 0.25, 0.25]); // root 1−.5−.25, [0] .5−.25, [1] .25, [0,0] .25
    assert.throws(() => endProbabilities([{ path: [0, 0], probability: 0.1 }]), /no parent/);
  });

  test('topPaths: most probable first, every prefix is a tree, ties put parents first', () => {
    const acc = [[1, 0.5], [1, 0.5], [1]];
    const paths = topPaths(acc, 3, 100, 2);
    assert.deepEqual(paths.slice(0, 3).map((c) => c.path), [[0], [0, 0], [0, 0, 0]]);
    const seen = new Set<string>(['']);
    for (const c of paths) {
      assert.ok(seen.has(c.path.slice(0, -1).join(',')), `parent of ${c.path} comes first`);
      seen.add(c.path.join(','));
    }
    assert.equal(topPaths(ACC, 2, 5, 2).length, 5);
    assert.ok(topPaths(ACC, 3, 100, 2).every((c) => c.path.every((r) => r < 2)));
  });

  test('greedy prompt pruning matches exhaustive search on tiny cases', () => {
    let seed = 12345;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const value = [1, 1.6, 1.9, 2.05]; // concave in m, as worth per guessing position is
    for (let trial = 0; trial < 40; trial++) {
      const M = 1 + (trial % 4);
      const raw = Array.from({ length: M }, random);
      const sum = raw.reduce((a, b) => a + b, 0);
      const end = raw.map((r) => r / sum);
      for (let capacity = 0; capacity <= 3 * M; capacity++) {
        const greedy = allocatePrompts(end, value, 3, capacity);
        const best = allocatePromptsExhaustive(end, value, 3, capacity);
        assert.ok(greedy.reduce((a, b) => a + b, 0) <= capacity);
        assert.ok(Math.abs(allocationValue(end, greedy, value) - allocationValue(end, best, value)) < 1e-12,
          `end ${end} capacity ${capacity}: greedy ${greedy} vs best ${best}`);
      }
    }
  });

  test('pruning drops prompt tokens that are worth nothing even under the budget', () => {
    // The root never ends the path (e = 0): its prompt tokens go first, and all of them.
    assert.deepEqual([...allocatePrompts([0, 1], [1, 2, 3], 2, 4)], [0, 2]);
    assert.deepEqual([...allocatePrompts([0.5, 0.5], [1, 2, 3], 2, 3)], [2, 1]); // tie: later node loses
  });
});

/** Independent check of expectedTokensPerStep: the stationary distribution of the state chain. */
function longRunTokensPerStep(set: PpdTreeSet, acc: number[][]): number {
  const N = set.promptTokens;
  const S = N + 1;
  const P = Array.from({ length: S }, () => new Array<number>(S).fill(0)); // [S, S]
  const tau = set.trees.map((t) => expectedAcceptedLength(t.candidates.map((c) => pathProbability(acc, c.path))));
  set.trees.forEach((t, d) => {
    const end = endProbabilities(t.candidates.map((c) => ({ path: c.path, probability: pathProbability(acc, c.path) })));
    [t.root, ...t.candidates].forEach((node, x) => (P[d]![node.prompts]! += (1 - RESTART) * end[x]!));
    P[d]![N]! += RESTART;
  });
  let pi = new Array<number>(S).fill(0);
  pi[N] = 1;
  for (let step = 0; step < 100_000; step++) {
    const next = new Array<number>(S).fill(0);
    for (let d = 0; d < S; d++) for (let m = 0; m < S; m++) next[m]! += pi[d]! * P[d]![m]!;
    pi = next;
  }
  return pi.reduce((sum, p, d) => sum + p * tau[d]!, 0);
}

describe('buildTreeSet', () => {
  const budgets = [1, 2, 3, 5, 8, 13, 21, 34, 60];

  test('every tree is valid, within budget, and its τ is 1 + Σ p', () => {
    for (const V of [1, 2]) {
      for (const budget of budgets) {
        const set = buildTreeSet(ACC, { budget, virtualTokens: V });
        assert.equal(set.trees.length, 4);
        parseTreeSet(set); // nodes form trees, depths and ranks in range, rows within budget
        set.trees.forEach((t, d) => {
          assert.ok(treeRows(t, V) <= budget, `budget ${budget} V ${V} tree ${d} rows ${treeRows(t, V)}`);
          const tau = expectedAcceptedLength(t.candidates.map((c) => pathProbability(ACC, c.path)));
          assert.ok(Math.abs(set.expectedAcceptedLength[d]! - tau) < 1e-12);
        });
        assert.deepEqual(set.trees[0]!.candidates, []); // d = 0: the root alone
      }
    }
  });

  test('expectedTokensPerStep is the long-run mean of the state chain', () => {
    for (const budget of [4, 13, 40]) {
      const set = buildTreeSet(ACC, { budget });
      assert.ok(Math.abs(set.expectedTokensPerStep - longRunTokensPerStep(set, ACC)) < 1e-9);
    }
  });

  test('a larger budget never lowers the expected tokens per step', () => {
    for (const V of [1, 2]) {
      let previous = 0;
      for (let budget = 1; budget <= 40; budget++) {
        const g = buildTreeSet(ACC, { budget, virtualTokens: V }).expectedTokensPerStep;
        assert.ok(g >= previous - 1e-9, `V ${V} budget ${budget}: ${g} < ${previous}`);
        previous = g;
      }
      assert.ok(previous > 2, `V ${V}: ${previous}`);
    }
  });

  test('with accuracy concentrated on rank 0 the deepest tree is a chain', () => {
    const acc = [[0.9, 0.01, 0.01], [0.9, 0.01, 0.01], [0.9, 0.01, 0.01]];
    for (let budget = 4; budget <= 15; budget++) {
      const deepest = buildTreeSet(acc, { budget }).trees[3]!;
      assert.ok(deepest.candidates.every((c) => c.path.every((rank) => rank === 0)), `budget ${budget}: ${JSON.stringify(deepest)}`);
    }
    const certain = buildTreeSet([[1, 0], [1, 0], [1, 0]], { budget: 12 });
    assert.deepEqual(certain.trees[3]!.candidates.map((c) => c.path), [[0], [0, 0], [0, 0, 0]]);
    assert.ok(Math.abs(certain.expectedTokensPerStep - 4) < 1e-12); // every guess right: 4 tokens per step
  });

  test('budget 1 is plain decoding: the root alone, no prompt tokens', () => {
    const set = buildTreeSet(ACC, { budget: 1 });
    for (const t of set.trees) assert.deepEqual([t.root.prompts, t.candidates.length], [0, 0]);
    assert.equal(set.expectedTokensPerStep, 1);
  });

  test('rejects bad tables and options', () => {
    assert.throws(() => buildTreeSet(ACC, { budget: 0 }), (e: unknown) => e instanceof InputError && /budget must be an integer >= 1, got 0/.test(e.message));
    assert.throws(() => buildTreeSet(ACC, { budget: 5, promptTokens: 2 }), /accuracy table has 3 rows but promptTokens is 2/);
    assert.throws(() => buildTreeSet([[0.75, 0.5]], { budget: 5 }), /row 0 sums to 1\.25, over 1/);
    assert.throws(() => buildTreeSet([[0.5, -0.1]], { budget: 5 }), /\[0\]\[1\] must be a probability/);
    assert.throws(() => buildTreeSet(ACC, { budget: 5, attention: 'causal' as never }), /attention must be one of/);
  });

  test('on tiny cases it matches the best of every possible tree set', () => {
    for (const acc of [[[0.6, 0.2], [0.4, 0.2]], [[0.9, 0.05], [0.3, 0.3]]]) {
      for (const [budget, V] of [[3, 1], [4, 1], [4, 2], [5, 2]] as const) {
        const built = buildTreeSet(acc, { budget, virtualTokens: V, maxRank: 2 }).expectedTokensPerStep;
        const best = bestOfAllTreeSets(acc, budget, V);
        assert.ok(built <= best + 1e-9 && built >= best - 1e-4, `acc ${JSON.stringify(acc)} budget ${budget} V ${V}: ${built} vs ${best}`);
      }
    }
  });
});

/** Exhaustive search for N = 2, K = 2: every tree for every state, every combination. */
function bestOfAllTreeSets(acc: number[][], budget: number, V: number): number {
  const N = 2;
  const allPaths = [[0], [1], [0, 0], [0, 1], [1, 0], [1, 1]];
  const treesFor = (d: number): PpdTree[] => {
    const out: PpdTree[] = [];
    const paths = allPaths.filter((p) => p.length <= d);
    for (let subset = 0; subset < 1 << paths.length; subset++) {
      const chosen = paths.filter((_, i) => subset & (1 << i));
      const keys = new Set(chosen.map((p) => p.join(',')));
      if (!chosen.every((p) => p.length === 1 || keys.has(String(p[0])))) continue;
      const M = chosen.length + 1;
      for (let code = 0; code < 3 ** M; code++) {
        const prompts = Array.from({ length: M }, (_, x) => Math.floor(code / 3 ** x) % 3);
        const t = tree(d, prompts[0]!, chosen.map((p, i) => [p, prompts[i + 1]!]), 2);
        if (treeRows(t, V) <= budget) out.push(t);
      }
    }
    return out;
  };
  const [t0, t1, t2] = [treesFor(0), treesFor(1), treesFor(2)];
  let best = 0;
  const base = { schema: 'ppd.trees/1', budget, promptTokens: N, virtualTokens: V, attention: 'ensemble', topK: 2 } as const;
  for (const a of t0!) for (const b of t1!) for (const c of t2!) {
    const set: PpdTreeSet = { ...base, accuracySource: '', expectedAcceptedLength: [1, 1, 1], expectedTokensPerStep: 1, trees: [a, b, c] };
    best = Math.max(best, stationaryMean(set, acc));
  }
  return best;
}

/** Like longRunTokensPerStep, exactly: solves π P = π, Σ π = 1 for the 3 states. */
function stationaryMean(set: PpdTreeSet, acc: number[][]): number {
  const S = set.promptTokens + 1;
  const A = Array.from({ length: S }, () => new Array<number>(S + 1).fill(0)); // [S, S+1]: (Pᵀ − I) π = 0, last row Σ π = 1
  const tau: number[] = [];
  set.trees.forEach((t, d) => {
    const probs = t.candidates.map((c) => pathProbability(acc, c.path));
    tau.push(expectedAcceptedLength(probs));
    const end = endProbabilities(t.candidates.map((c, i) => ({ path: c.path, probability: probs[i]! })));
    [t.root, ...t.candidates].forEach((node, x) => (A[node.prompts]![d]! += (1 - RESTART) * end[x]!));
    A[S - 1]![d]! += RESTART;
    A[d]![d]! -= 1;
  });
  A[S - 1] = [...new Array<number>(S).fill(1), 1];
  for (let col = 0; col < S; col++) {
    let pivot = col;
    for (let r = col + 1; r < S; r++) if (Math.abs(A[r]![col]!) > Math.abs(A[pivot]![col]!)) pivot = r;
    [A[col], A[pivot]] = [A[pivot]!, A[col]!];
    for (let r = 0; r < S; r++) {
      if (r === col) continue;
      const f = A[r]![col]! / A[col]![col]!;
      for (let c = col; c <= S; c++) A[r]![c]! -= f * A[col]![c]!;
    }
  }
  return tau.reduce((sum, t, d) => sum + t * (A[d]![S]! / A[d]![d]!), 0);
}
