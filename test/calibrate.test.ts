/**
 * Hardware calibration (src/calibrate/): the pure parts on synthetic curves (the step-size grid,
 * the choice of n, the sizes checked end to end, the quick choice a browser page makes), the hardware profile's schema, which trees
 * decoding picks (matching profile, another machine's, a stale one, --trees), and one whole
 * `ppd calibrate` run on a tiny random model, after which decoding uses its profile.
 */
import { loadLlamaModel, tokenizerAt } from '../src/checkpoint/load.ts';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chooseTreeSize, bestWithoutLookup, decide, predict, sizesToCheck, type CurvePoint } from '../src/ppd/tree-size-choice.ts';
import { gridStep, nearestInGrid, sizeGrid } from '../src/ppd/tree-size-grid.ts';
import { measureLatency } from '../src/calibrate/measure.ts';
import { fileDigest, machineSignature, parseProfile, profilePath, profileTreesName, profileTreesWithoutLookupName, saveProfile, signatureHash, type HardwareProfile, type MachineSignature } from '../src/ppd/hardware-profile.ts';
import { tauCurve, treeSetFor } from '../src/ppd/tree-size-tau.ts';
import { QUICK_GRID, QUICK_MARGIN, quickDecision, quickTreeChoice } from '../src/ppd/quick-calibration.ts';
import { widestTreeRows } from '../src/ppd/tree.ts';
import { calibrateCommand, type CalibrateFlags } from '../src/cli/calibrate.ts';
import { FormatError, InputError } from '../src/errors.ts';
import { openModelDir } from '../src/checkpoint/model-dir.ts';
import type { LlamaConfig } from '../src/model/config.ts';
import { writeRandomModel } from '../src/checkpoint/random-init.ts';
import { configHash, PromptAdapter } from '../src/ppd/adapter.ts';
import { saveAdapter } from '../src/ppd/adapter-files.ts';
import { loadPpdSetup } from '../src/ppd/setup.ts';
import { loadTreeSet, saveTreeSet } from '../src/ppd/tree-files.ts';
import { bindingOf, countNgrams, NgramTable } from '../src/ppd/ngram-table.ts';
import { saveNgramTable } from '../src/ppd/ngram-files.ts';
import { buildTreeSet } from '../src/ppd/tree-builder.ts';
import { byteFallbackTokenizerConfig, byteFallbackTokenizerJson } from '../src/tokenizer/byte-tokenizer.ts';
import { memorySource, randomWeights, tinyConfig } from './helpers/tiny-model.ts';

/** A made-up accuracy table: rank k at position i right with probability ~ 0.5^(k+1) · 0.8^i. */
const ACC = [0, 1, 2].map((i) => Array.from({ length: 6 }, (_, k) => 0.45 * Math.pow(0.5, k) * Math.pow(0.8, i)));
const SHAPE = { promptTokens: 3, virtualTokens: 1, attention: 'ensemble' as const, accuracySource: 'test' };

// ---------------------------------------------------------------------------------------------
// The grid

describe('step-size grid', () => {
  test('the documented default grid up to 256', () => {
    assert.deepEqual(sizeGrid(256), [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256]);
  });

  test('properties over many maxima and densities', () => {
    for (const [dense, perOctave] of [[8, 4], [4, 2], [16, 8], [1, 1], [3, 5]] as const) {
      for (let max = 1; max <= 600; max += max < 40 ? 1 : 7) {
        const grid = sizeGrid(max, { dense, perOctave });
        const what = `max ${max}, dense ${dense}, perOctave ${perOctave}: ${grid.join(' ')}`;
        assert.equal(grid[0], 1, what);
        assert.equal(grid.at(-1), max, what);
        assert.ok(grid.every(Number.isInteger), what);
        for (let n = 1; n <= Math.min(dense, max); n++) assert.ok(grid.includes(n), `${what}: misses ${n}`);
        const gaps = grid.slice(1).map((n, i) => n - grid[i]!);
        gaps.forEach((gap, i) => {
          assert.ok(gap >= 1, what);
          assert.ok(gap <= gridStep(grid[i]!, dense, perOctave), `${what}: gap after ${grid[i]} too wide`);
          // Sparser as n grows, except that the last gap (up to max) may be cut short.
          if (i > 0 && i < gaps.length - 1) assert.ok(gap >= gaps[i - 1]!, `${what}: gap shrinks after ${grid[i]}`);
          if (grid[i]! >= dense) assert.ok(gap <= Math.max(1, grid[i]! / perOctave), `${what}: gap ${gap} after ${grid[i]} over 1/${perOctave} of it`);
        });
        // Logarithmic size: at most max(dense, perOctave) points up to there, then at most 2·perOctave in each
        // (partial) octave (the step 2^k / perOctave is rounded down), then the end.
        const D = Math.max(dense, perOctave);
        const octaves = max > D ? Math.ceil(Math.log2(max / D)) + 1 : 0;
        assert.ok(grid.length <= D + 2 * perOctave * octaves + 1, `${what}: ${grid.length} points`);
      }
    }
  });

  test('bad arguments are InputErrors naming the argument; nearestInGrid prefers the smaller on a tie', () => {
    assert.throws(() => sizeGrid(0), (e) => e instanceof InputError && /max/.test(e.message));
    assert.throws(() => sizeGrid(8, { perOctave: 0 }), (e) => e instanceof InputError && /perOctave/.test(e.message));
    assert.equal(nearestInGrid([1, 2, 4, 8], 6), 4);
    assert.equal(nearestInGrid([1, 2, 4, 8], 7), 8);
  });
});

// ---------------------------------------------------------------------------------------------
// The choice

/** A concave τ(n) that keeps growing: each doubling of the tree adds a quarter token per step. */
const saturatingTau = (n: number) => 1 + 0.25 * Math.log2(n);
const curve = (grid: number[], tau: (n: number) => number, latency: (n: number) => number): CurvePoint[] => grid.map((n) => ({ n, tau: tau(n), latencyMs: latency(n) }));

describe('tree-size choice', () => {
  const grid = sizeGrid(256);

  test('flat latency (bandwidth-bound hardware): the largest n', () => {
    const { chosen, predictions } = chooseTreeSize(curve(grid, saturatingTau, () => 10));
    assert.equal(chosen.n, 256);
    assert.ok(Math.abs(chosen.speedup - saturatingTau(256)) < 1e-12, 'speedup = τ when L is flat');
    assert.equal(predictions.length, grid.length);
  });

  test('steep latency (compute-bound): a small n; linear cost from the first row: n = 1', () => {
    const steep = chooseTreeSize(curve(grid, saturatingTau, (n) => 10 + 2 * n)).chosen;
    assert.equal(steep.n, 2);
    assert.ok(steep.speedup > 1);
    assert.equal(chooseTreeSize(curve(grid, saturatingTau, (n) => 10 * n)).chosen.n, 1);
  });

  test('a knee in L(n): the best n sits at or just before the knee, and moves down when a forward costs more', () => {
    // Flat to 32 rows, then linear: a CPU whose cores saturate at 32 rows.
    const knee = (kneeAt: number) => (n: number) => 10 * Math.max(1, n / kneeAt);
    assert.equal(chooseTreeSize(curve(grid, saturatingTau, knee(32))).chosen.n, 32);
    assert.equal(chooseTreeSize(curve(grid, saturatingTau, knee(8))).chosen.n, 8);
  });

  test('ties go to the smaller n; tolerance takes the smallest n within that share of the best', () => {
    // τ/L = 0.1 at n = 4, 8 and 16 (ties), less elsewhere.
    const points: CurvePoint[] = [
      { n: 1, tau: 1, latencyMs: 20 },
      { n: 4, tau: 1.5, latencyMs: 15 },
      { n: 8, tau: 2, latencyMs: 20 },
      { n: 16, tau: 2.5, latencyMs: 25 },
      { n: 32, tau: 2.6, latencyMs: 40 },
    ];
    assert.equal(chooseTreeSize(points).chosen.n, 4);
    assert.equal(chooseTreeSize([...points].reverse()).chosen.n, 4, 'input order does not matter');
    const nearly: CurvePoint[] = [{ n: 1, tau: 1, latencyMs: 10 }, { n: 8, tau: 1.98, latencyMs: 10 }, { n: 16, tau: 2, latencyMs: 10 }];
    const strict = chooseTreeSize(nearly);
    assert.equal(strict.chosen.n, 16);
    const tolerant = chooseTreeSize(nearly, { tolerance: 0.02 });
    assert.equal(tolerant.chosen.n, 8);
    assert.equal(tolerant.fastest.n, 16);
  });

  test('predictions: speedup = τ(n) · L(1) / L(n), tokens/s = 1000 τ / L', () => {
    const [one, two] = predict([{ n: 2, tau: 1.8, latencyMs: 12 }, { n: 1, tau: 1, latencyMs: 10 }]);
    assert.equal(one!.n, 1);
    assert.equal(one!.speedup, 1);
    assert.ok(Math.abs(two!.speedup - 1.5) < 1e-12);
    assert.ok(Math.abs(two!.tokensPerSecond - 150) < 1e-9);
  });

  test('bad curves are InputErrors naming the point', () => {
    const bad = (points: CurvePoint[], pattern: RegExp) => assert.throws(() => chooseTreeSize(points), (e) => e instanceof InputError && pattern.test(e.message));
    bad([{ n: 2, tau: 1.5, latencyMs: 1 }], /n = 1/);
    bad([{ n: 1, tau: 1, latencyMs: 1 }, { n: 1, tau: 1, latencyMs: 2 }], /n = 1 appears twice/);
    bad([{ n: 1, tau: 1, latencyMs: 1 }, { n: 4, tau: 0.5, latencyMs: 2 }], /τ\(4\)/);
    bad([{ n: 1, tau: 1, latencyMs: 0 }], /L\(1\)/);
    bad([{ n: 1.5, tau: 1, latencyMs: 1 }], /integer/);
    assert.throws(() => chooseTreeSize([{ n: 1, tau: 1, latencyMs: 1 }], { tolerance: 1 }), /tolerance/);
  });

  test('sizes checked end to end: the chosen n, its grid neighbours at /4, /2, ×2, ×4, and the extras in range', () => {
    assert.deepEqual(sizesToCheck(grid, 24, [16]), [6, 12, 16, 24, 48, 96]);
    assert.deepEqual(sizesToCheck(grid, 256, [300]), [64, 128, 256]);
    assert.deepEqual(sizesToCheck(grid, 1), [1, 2, 4]);
  });

  test('the decision: measured speedups overrule the prediction; plain decoding unless one beats it by the margin', () => {
    const choice = chooseTreeSize([{ n: 1, tau: 1, latencyMs: 10 }, { n: 4, tau: 1.5, latencyMs: 11 }, { n: 8, tau: 1.8, latencyMs: 12 }]);
    assert.equal(choice.chosen.n, 8);
    const m = (n: number, speedup: number, lookup = 0, ngram = false) => ({ n, lookup, ngram, speedup });
    assert.deepEqual(decide(choice, null), { n: 8, lookup: null, ngram: null, basis: 'prediction', speedup: choice.chosen.speedup });
    assert.deepEqual(decide(choice, [m(4, 1.2), m(8, 1.1)]), { n: 4, lookup: 0, ngram: null, basis: 'measurement', speedup: 1.2 });
    assert.deepEqual(decide(choice, [m(4, 0.95), m(8, 1.02)], 0.03), { n: 1, lookup: 0, ngram: null, basis: 'measurement', speedup: 1 });
    assert.deepEqual(decide(choice, [m(4, 0.95), m(8, 1.02)], 0), { n: 8, lookup: 0, ngram: null, basis: 'measurement', speedup: 1.02 });
    // With the context lookup among the candidates: the lookup alone (n = 1) can win, or a size with it.
    assert.deepEqual(decide(choice, [m(4, 0.9), m(1, 1.7, 8), m(4, 1.5, 8)]), { n: 1, lookup: 8, ngram: null, basis: 'measurement', speedup: 1.7 });
    assert.deepEqual(decide(choice, [m(4, 0.9), m(1, 1.7, 8), m(4, 1.8, 8)]), { n: 4, lookup: 8, ngram: null, basis: 'measurement', speedup: 1.8 });
    assert.deepEqual(decide(choice, [m(4, 0.9), m(1, 1.01, 8)]), { n: 1, lookup: 0, ngram: null, basis: 'measurement', speedup: 1 });
    // With the n-gram table among them: the decision says whether it drafts (false when the best ran without it).
    assert.deepEqual(decide(choice, [m(1, 1.7, 8), m(1, 1.6, 8, true), m(1, 1.2, 0, true)]), { n: 1, lookup: 8, ngram: false, basis: 'measurement', speedup: 1.7 });
    assert.deepEqual(decide(choice, [m(1, 1.7, 8), m(4, 1.9, 8, true)]), { n: 4, lookup: 8, ngram: true, basis: 'measurement', speedup: 1.9 });
    assert.deepEqual(decide(choice, [m(4, 0.9), m(1, 1.3, 0, true)]), { n: 1, lookup: 0, ngram: true, basis: 'measurement', speedup: 1.3 }, 'the table alone');
    assert.deepEqual(decide(choice, [m(4, 0.9), m(1, 1.01, 0, true)]), { n: 1, lookup: 0, ngram: false, basis: 'measurement', speedup: 1 }, 'plain: no table either');
    assert.throws(() => decide(choice, [], 1), /margin/);
  });

  test('without the lookup: the best prompt-token trees alone (no chain, no table), even where they lose to plain decoding', () => {
    const m = (n: number, speedup: number, lookup = 0, ngram = false) => ({ n, lookup, ngram, speedup });
    assert.equal(bestWithoutLookup(null), null);
    assert.equal(bestWithoutLookup([m(1, 2.1, 8), m(4, 1.9, 8), m(1, 1.2, 0, true), m(1, 0.99)]), null, 'no trees measured alone');
    assert.deepEqual(bestWithoutLookup([m(1, 2.1, 8), m(2, 0.9), m(4, 1.07), m(8, 0.95), m(4, 1.3, 0, true)]), { n: 4, speedup: 1.07 }, 'the lookup and the table do not count');
    assert.deepEqual(bestWithoutLookup([m(1, 2.1, 8), m(3, 0.98), m(8, 0.84)]), { n: 3, speedup: 0.98 }, 'slower than plain: still the best of them');
  });

  test('τ(n) from the builder: 1 at n = 1, never below 1, and growing overall', () => {
    const tau = tauCurve(ACC, [1, 2, 4, 8, 16, 32], SHAPE);
    assert.equal(tau[0]!.tau, 1);
    assert.ok(tau.every((t) => t.tau >= 1 && t.rowsPerTree.length === 4 && t.rowsPerTree.every((r) => r <= t.n)));
    assert.ok(tau.at(-1)!.tau > tau[1]!.tau);
  });
});

// ---------------------------------------------------------------------------------------------
// Profiles

const OTHER_MACHINE: MachineSignature = { cpuModel: 'Imaginary CPU 9000', cores: 64, threads: 64, executionProvider: 'cpu', onnxruntime: '0.0.1' };

function profileFor(signature: MachineSignature, budget: number, adapter: { baseConfigHash: string; accuracyDigest: string }): HardwareProfile {
  const hash = signatureHash(signature);
  return {
    schema: 'ppd.hardware-profile/1',
    signature,
    signatureHash: hash,
    created: '2026-11-27T10:00:00.000Z',
    adapter,
    budget,
    trees: profileTreesName(hash),
    expectedTokensPerStep: 1.5,
    latencyMs: { one: 1, chosen: 1.2 },
    predictedSpeedup: 1.25,
    measuredSpeedup: null,
    report: `calibration/${hash}.json`,
  };
}

describe('hardware profile schema', () => {
  const good = profileFor(OTHER_MACHINE, 12, { baseConfigHash: '0123456789abcdef', accuracyDigest: 'fedcba9876543210' });

  test('a good profile parses to itself', () => {
    assert.deepEqual(parseProfile(JSON.parse(JSON.stringify(good)), 'p.json'), good);
  });

  const cases: [string, (p: Record<string, any>) => void, RegExp][] = [
    ['wrong schema', (p) => (p.schema = 'ppd.hardware-profile/0'), /field "schema" must be "ppd.hardware-profile\/1"/],
    ['missing signature field', (p) => delete p.signature.threads, /field "signature.threads" must be an integer >= 1, got undefined/],
    ['signature not an object', (p) => (p.signature = 'x'), /field "signature" must be an object/],
    ['hash not of the signature', (p) => (p.signature.cores = 63), /field "signatureHash" [0-9a-f]{16} is not the hash of the signature/],
    ['bad budget', (p) => (p.budget = 0), /field "budget" must be an integer >= 1, got 0/],
    ['bad lookup', (p) => (p.lookup = 1.5), /field "lookup" must be an integer >= 0 \(or absent\), got 1.5/],
    ['trees a path', (p) => (p.trees = '../trees.json'), /field "trees" must be a file name in profiles\//],
    ['τ below 1', (p) => (p.expectedTokensPerStep = 0.5), /field "expectedTokensPerStep" must be a number >= 1/],
    ['latency missing', (p) => delete p.latencyMs.chosen, /field "latencyMs.chosen" must be a positive number/],
    ['bad digest', (p) => (p.adapter.accuracyDigest = 'xyz'), /field "adapter.accuracyDigest" must be 16 hex digits/],
    ['bad measured speedup', (p) => (p.measuredSpeedup = -1), /field "measuredSpeedup" must be a positive number or null/],
    ['unknown quantization', (p) => (p.signature.quantize = 'q5'), /field "signature.quantize" must be one of q8, q4 \(or absent\), got "q5"/],
    ['withoutLookup without trees', (p) => (p.withoutLookup = { budget: 4, measuredSpeedup: 1.1 }), /field "withoutLookup.trees" must be a file name in profiles\//],
    ['withoutLookup budget 1', (p) => (p.withoutLookup = { budget: 1, trees: 'x.json', measuredSpeedup: 1.1 }), /field "withoutLookup.budget" must be an integer >= 2, got 1/],
  ];
  for (const [name, edit, pattern] of cases) {
    test(`schema error: ${name} names the file and the field`, () => {
      const raw = JSON.parse(JSON.stringify(good));
      edit(raw);
      assert.throws(() => parseProfile(raw, 'adapter/profiles/p.json'), (e) => e instanceof FormatError && e.message.startsWith('adapter/profiles/p.json: ') && pattern.test(e.message));
    });
  }
});

describe('which trees decoding uses', () => {
  let dir: string;
  let base: LlamaConfig;
  let binding: { baseConfigHash: string; accuracyDigest: string };
  const here = () => machineSignature(2);
  const treesBudget = (notices: string[], options: Parameters<typeof loadPpdSetup>[2] = {}) =>
    loadPpdSetup(base, dir, { threads: 2, modelDir: 'models/x', onNotice: (line) => notices.push(line), ...options }).trees.budget;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'ppd-profile-test-'));
    base = tinyConfig();
    saveAdapter(PromptAdapter.initialise(base, randomWeights(base, 1).get('model.embed_tokens.weight')!, [3, 4, 5], { promptTokens: 3, virtualTokens: 1, attention: 'ensemble', initText: 't' }), dir);
    writeFileSync(join(dir, 'accuracy.json'), JSON.stringify({ schema: 'ppd.accuracy/1', accuracy: ACC }));
    saveTreeSet(join(dir, 'trees.json'), buildTreeSet(ACC, { budget: 10, ...SHAPE }));
    binding = { baseConfigHash: configHash(base), accuracyDigest: fileDigest(join(dir, 'accuracy.json')) };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('no profile: trees.json and one line saying how to make one', () => {
    const notices: string[] = [];
    assert.equal(treesBudget(notices), 10);
    assert.equal(notices.length, 1);
    assert.doesNotMatch(notices[0]!, /\n/);
    assert.match(notices[0]!, /no hardware profile for this machine/);
    assert.ok(notices[0]!.includes(`ppd calibrate --model models/x --ppd ${dir}`), notices[0]);
  });

  test("another machine's profile is not used: trees.json, and the notice says one exists elsewhere", () => {
    saveProfile(dir, profileFor(OTHER_MACHINE, 6, binding), buildTreeSet(ACC, { budget: 6, ...SHAPE }));
    const notices: string[] = [];
    assert.equal(treesBudget(notices), 10);
    assert.match(notices[0]!, /it has 1 for other machines or thread counts/);
  });

  test("this machine's profile is used, silently; another thread count is another machine", () => {
    saveProfile(dir, profileFor(here(), 20, binding), buildTreeSet(ACC, { budget: 20, ...SHAPE }));
    const notices: string[] = [];
    const setup = loadPpdSetup(base, dir, { threads: 2, onNotice: (line) => notices.push(line) });
    assert.equal(setup.trees.budget, 20);
    assert.equal(setup.treesFile, join(dir, 'profiles', profileTreesName(signatureHash(here()))));
    assert.deepEqual(notices, []);
    assert.equal(treesBudget(notices, { threads: 1 }), 10, 'one thread has no profile');
    assert.match(notices[0]!, /--threads 1/);
  });

  test('quantized weights are another machine; f32 signatures keep the hash they had before --quantize', () => {
    const s = here();
    const before = createHash('sha256').update(JSON.stringify([s.cpuModel, s.cores, s.threads, s.executionProvider, s.onnxruntime])).digest('hex').slice(0, 16);
    assert.equal(signatureHash(s), before);
    assert.notEqual(signatureHash(machineSignature(2, 'q8')), before);
    const notices: string[] = [];
    assert.equal(treesBudget(notices, { quantize: 'q8' }), 10, 'the f32 profile is not used for q8 weights');
    assert.match(notices[0]!, /q8 weights\)/);
    assert.match(notices[0]!, /--quantize q8/);
    saveProfile(dir, profileFor(machineSignature(2, 'q8'), 4, binding), buildTreeSet(ACC, { budget: 4, ...SHAPE }));
    assert.equal(treesBudget([], { quantize: 'q8' }), 4);
    assert.equal(treesBudget([]), 20, 'the f32 profile still serves f32 weights');
  });

  test('--lookup 0 where the profile verifies a lookup chain: its trees for the prompt tokens alone', () => {
    const hash = signatureHash(here());
    const withLookup = { ...profileFor(here(), 1, binding), lookup: 8 };
    const alone = { budget: 6, trees: profileTreesWithoutLookupName(hash), measuredSpeedup: 1.07 };
    assert.throws(() => saveProfile(dir, { ...withLookup, withoutLookup: alone }, buildTreeSet(ACC, { budget: 1, ...SHAPE })), /come together/);
    saveProfile(dir, { ...withLookup, withoutLookup: alone }, buildTreeSet(ACC, { budget: 1, ...SHAPE }), buildTreeSet(ACC, { budget: 6, ...SHAPE }));
    try {
      const notices: string[] = [];
      const zero = loadPpdSetup(base, dir, { threads: 2, lookup: 0, onNotice: (line) => notices.push(line) });
      assert.deepEqual([zero.trees.budget, zero.lookup, zero.treesFile], [6, 0, join(dir, 'profiles', profileTreesWithoutLookupName(hash))]);
      assert.deepEqual(notices, []);
      const asChosen = loadPpdSetup(base, dir, { threads: 2 });
      assert.deepEqual([asChosen.trees.budget, asChosen.lookup], [1, 8], 'without --lookup 0: the lookup alone, as chosen');
      assert.deepEqual([loadPpdSetup(base, dir, { threads: 2, lookup: 4 }).trees.budget], [1], 'another lookup length keeps the chosen trees');
      // Trees that measured slower than plain decoding are still what --lookup 0 asks for, with one line saying so.
      saveProfile(dir, { ...withLookup, measuredSpeedup: 2.05, withoutLookup: { ...alone, measuredSpeedup: 0.98 } }, buildTreeSet(ACC, { budget: 1, ...SHAPE }), buildTreeSet(ACC, { budget: 6, ...SHAPE }));
      const slower: string[] = [];
      assert.equal(treesBudget(slower, { lookup: 0 }), 6);
      assert.equal(slower.length, 1);
      assert.match(slower[0]!, /^this machine's calibration measured the prompt tokens alone at 0\.98× plain decoding at best \(.*without-lookup\.trees\.json, 6 rows\), slower than plain; its choice is the context lookup \(its default\), measured 2\.05×$/);
      rmSync(join(dir, 'profiles', alone.trees));
      assert.throws(() => treesBudget([], { lookup: 0 }), (e) => e instanceof FormatError && /field "withoutLookup.trees" names [0-9a-f]{16}\.without-lookup\.trees\.json, which is not in/.test(e.message));
      // A profile without the field (older, or calibrated without the lookup): --lookup 0 keeps its trees.
      saveProfile(dir, withLookup, buildTreeSet(ACC, { budget: 1, ...SHAPE }));
      assert.equal(treesBudget([], { lookup: 0 }), 1);
    } finally {
      saveProfile(dir, profileFor(here(), 20, binding), buildTreeSet(ACC, { budget: 20, ...SHAPE }));
    }
  });

  test('--trees wins over the profile', () => {
    const file = join(dir, 'chain.json');
    saveTreeSet(file, buildTreeSet(ACC, { budget: 3, ...SHAPE }));
    const notices: string[] = [];
    assert.equal(treesBudget(notices, { trees: file }), 3);
    assert.deepEqual(notices, []);
  });

  test('a profile made with another accuracy table is stale: trees.json, with the reason', () => {
    const accuracy = join(dir, 'accuracy.json');
    const original = readFileSync(accuracy);
    writeFileSync(accuracy, JSON.stringify({ schema: 'ppd.accuracy/1', accuracy: ACC.map((row) => row.map((a) => a / 2)) }));
    try {
      const notices: string[] = [];
      assert.equal(treesBudget(notices), 10);
      assert.match(notices[0]!, /was calibrated with another accuracy\.json/);
      assert.match(notices[0]!, /ppd calibrate/);
    } finally {
      writeFileSync(accuracy, original);
    }
  });

  test("a malformed profile for this machine is a FormatError naming it, not skipped", () => {
    const path = profilePath(dir, signatureHash(here()));
    const good = readFileSync(path, 'utf8');
    writeFileSync(path, JSON.stringify({ ...JSON.parse(good), budget: 'big' }));
    try {
      assert.throws(() => treesBudget([]), (e) => e instanceof FormatError && e.message.includes(path) && /field "budget"/.test(e.message));
      rmSync(join(dir, 'profiles', profileTreesName(signatureHash(here()))));
      writeFileSync(path, good);
      assert.throws(() => treesBudget([]), (e) => e instanceof FormatError && /names [0-9a-f]{16}\.trees\.json, which is not in/.test(e.message));
    } finally {
      rmSync(path);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Measurement and the whole command on tiny random models

test('L(n): one row per n with a spread per context, from a tiny model', async () => {
  const config = tinyConfig({ maxPositionEmbeddings: 64 });
  const model = await loadLlamaModel(config, memorySource(config, randomWeights(config, 2)), { cacheDir: false, threads: 1 });
  try {
    const rows = await measureLatency(model, { grid: [1, 2, 4], contexts: [0, 8], warmupRounds: 1, repeats: 3 });
    assert.deepEqual(rows.map((r) => r.n), [1, 2, 4]);
    for (const r of rows) {
      assert.equal(r.perContext.length, 2);
      assert.ok(r.perContext.every((s) => s.samples === 3 && s.minMs > 0 && s.minMs <= s.medianMs && s.medianMs <= s.maxMs));
      assert.ok(Math.abs(r.meanMs - (r.perContext[0]!.medianMs + r.perContext[1]!.medianMs) / 2) < 1e-9);
    }
    await assert.rejects(measureLatency(model, { grid: [1, 60], contexts: [8], warmupRounds: 0, repeats: 1 }), /exceeds the model's 64 positions/);
  } finally {
    await model.release();
  }
});

// ---------------------------------------------------------------------------------------------
// The quick choice (a browser page's: a short L(n) measurement and the prediction alone)

describe('quick tree choice', () => {
  /** L(n) rows as measureLatency returns them, from ms per n. */
  const rowsOf = (latencyMs: (n: number) => number) => QUICK_GRID.map((n) => ({ n, perContext: [], meanMs: latencyMs(n) }));

  test('cheap rows: the fastest predicted size and the trees the builder makes for it', () => {
    const choice = quickDecision(rowsOf(() => 2), ACC, SHAPE);
    assert.equal(choice.n, 16);
    assert.equal(choice.fastest.n, 16);
    assert.deepEqual(choice.trees, treeSetFor(ACC, 16, SHAPE));
    assert.deepEqual(choice.predictions.map((p) => p.n), [...QUICK_GRID]);
  });

  test('rows costing as much as plain steps: no tree pays, root-only trees (the context lookup alone)', () => {
    const choice = quickDecision(rowsOf((n) => 2 * n), ACC, SHAPE);
    assert.equal(choice.n, 1);
    assert.equal(widestTreeRows(choice.trees), 1);
    assert.equal(choice.trees.promptTokens, SHAPE.promptTokens);
  });

  test('a tree predicted faster than plain, but by less than the margin, is not taken; with margin 1 it is', () => {
    // τ(2) from the builder; L(2) set so that the predicted speedup at n = 2 is 1.1 and every larger n is slower.
    const tau2 = tauCurve(ACC, [2], SHAPE)[0]!.tau;
    const choice = quickDecision(rowsOf((n) => (n === 1 ? 1 : n === 2 ? tau2 / 1.1 : 10 * n)), ACC, SHAPE);
    assert.ok(QUICK_MARGIN > 1.1);
    assert.equal(choice.fastest.n, 2);
    assert.ok(Math.abs(choice.fastest.speedup - 1.1) < 1e-9);
    assert.equal(choice.n, 1);
    assert.equal(quickDecision(rowsOf((n) => (n === 1 ? 1 : n === 2 ? tau2 / 1.1 : 10 * n)), ACC, SHAPE, 1).n, 2);
  });

  test('measured on a model: L(n) for every size of the grid, and trees of the chosen size', async () => {
    const config = tinyConfig({ maxPositionEmbeddings: 40 });
    const model = await loadLlamaModel(config, memorySource(config, randomWeights(config, 3)), { cacheDir: false, threads: 1 });
    try {
      let forwards = 0;
      const choice = await quickTreeChoice(model, ACC, SHAPE, () => forwards++);
      assert.deepEqual(choice.latency.map((r) => r.n), [...QUICK_GRID]);
      assert.equal(forwards, QUICK_GRID.length * 3);
      assert.ok(choice.latency.every((r) => r.meanMs > 0));
      assert.equal(widestTreeRows(choice.trees) <= choice.n, true);
    } finally {
      await model.release();
    }
  });
});

describe('ppd calibrate on a tiny random model', () => {
  let work: string;
  let modelDir: string;
  let adapterDir: string;
  let base: LlamaConfig;
  const savedCache = process.env.PPD_CACHE_DIR;

  before(() => {
    work = mkdtempSync(join(tmpdir(), 'ppd-calibrate-test-'));
    process.env.PPD_CACHE_DIR = join(work, 'cache');
    modelDir = join(work, 'model');
    adapterDir = join(modelDir, 'ppd');
    writeRandomModel(
      modelDir,
      { model_type: 'llama', vocab_size: 260, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 128 },
      { seed: 3, tokenizerJson: byteFallbackTokenizerJson() },
    );
    writeFileSync(join(modelDir, 'tokenizer_config.json'), JSON.stringify(byteFallbackTokenizerConfig()));
    const files = openModelDir(modelDir);
    base = files.config;
    const table = files.tensors.readF32('model.embed_tokens.weight');
    files.tensors.close();
    mkdirSync(adapterDir);
    saveAdapter(PromptAdapter.initialise(base, table, [70, 71, 72], { promptTokens: 3, virtualTokens: 1, attention: 'ensemble', initText: 'FGH' }), adapterDir);
    writeFileSync(join(adapterDir, 'accuracy.json'), JSON.stringify({ schema: 'ppd.accuracy/1', accuracy: ACC }));
    saveTreeSet(join(adapterDir, 'trees.json'), buildTreeSet(ACC, { budget: 4, ...SHAPE }));
    const words = (seed: number) => Array.from({ length: 30 }, (_, i) => `w${(i * 7 + seed) % 13}`).join(' ');
    writeFileSync(join(work, 'held-out.txt'), [1, 2, 3].map(words).join('\n\n<|endoftext|>\n\n'));
    // An n-gram table for this model, counted from the held-out text's own ids: it drafts something.
    const tokenizer = tokenizerAt(modelDir)!;
    const sections = countNgrams([{ ids: tokenizer.encode(readFileSync(join(work, 'held-out.txt'), 'utf8')), countFrom: 1 }], { maxNgram: 3, minCount: 1, topK: 2 });
    saveNgramTable(join(adapterDir, 'ngram.bin'), NgramTable.encode(sections, { binding: bindingOf(base, tokenizer), minCount: 1, topK: 2, source: { test: true }, created: '2026-12-06T00:00:00.000Z' }));
  });
  after(() => {
    if (savedCache === undefined) delete process.env.PPD_CACHE_DIR;
    else process.env.PPD_CACHE_DIR = savedCache;
    rmSync(work, { recursive: true, force: true });
  });

  test('writes profile, trees and report; generate then decodes with the profile', async () => {
    const flags: CalibrateFlags = {
      model: modelDir,
      ppd: adapterDir,
      threads: 1,
      maxN: 12,
      contexts: [8, 32],
      repeats: 2,
      warmup: 1,
      prompts: 2,
      maxTokens: 8,
      genRepeats: 1,
      data: join(work, 'held-out.txt'),
      tolerance: 0,
      margin: 0.03,
      lookup: 4,
      report: join(work, 'docs'),
    };
    await calibrateCommand(flags);
    const hash = signatureHash(machineSignature(1));
    const report = JSON.parse(readFileSync(join(adapterDir, 'calibration', `${hash}.json`), 'utf8'));
    assert.equal(report.schema, 'ppd.calibration/2');
    assert.deepEqual(report.predictions.map((p: { n: number }) => p.n), sizeGrid(12));
    assert.ok(report.check.sizes.some((s: { n: number }) => s.n === report.chosen.n));
    assert.ok(report.check.sizes.some((s: { n: number }) => s.n === 4), 'the default trees.json budget is checked too');
    assert.ok(report.check.sizes.some((s: { n: number; lookup: number }) => s.n === 1 && s.lookup === 4), 'the lookup alone is checked');
    assert.ok(report.check.sizes.some((s: { n: number; lookup: number }) => s.n === 4 && s.lookup === 4), 'and beside the trees');
    assert.equal(report.check.ngramFile, join(adapterDir, 'ngram.bin'));
    type Checked = { n: number; lookup: number; ngram: boolean; identical: number };
    assert.ok(report.check.sizes.some((s: Checked) => s.n === 1 && s.lookup === 0 && s.ngram), 'the n-gram table alone is checked');
    for (const s of report.check.sizes.filter((c: Checked) => !c.ngram)) {
      assert.ok(report.check.sizes.some((t: Checked) => t.ngram && t.n === s.n && t.lookup === s.lookup), `n = ${s.n}, lookup ${s.lookup} is checked with the table too`);
    }
    for (const s of report.check.sizes) assert.equal(s.identical, report.check.prompts.length, `greedy PPD at n = ${s.n}, lookup ${s.lookup}${s.ngram ? ', with the table' : ''} must equal plain decoding`);
    for (const ext of ['md', 'svg']) assert.ok(existsSync(join(adapterDir, 'calibration', `${hash}.${ext}`)));
    for (const ext of ['json', 'md', 'svg']) assert.ok(existsSync(join(work, 'docs', `calibration-1t.${ext}`)));
    assert.match(readFileSync(join(work, 'docs', 'calibration-1t.svg'), 'utf8'), /^<svg/);

    const notices: string[] = [];
    const setup = loadPpdSetup(base, adapterDir, { threads: 1, onNotice: (line) => notices.push(line) });
    assert.deepEqual(notices, []);
    assert.equal(setup.trees.budget, report.decision.n, 'the profile decodes with the decision');
    assert.equal(setup.lookup, report.decision.lookup, 'and its lookup');
    assert.equal(loadPpdSetup(base, adapterDir, { threads: 1, lookup: 7 }).lookup, 7, '--lookup overrides the profile');
    assert.equal(report.decision.basis, 'measurement');
    const best = report.check.sizes.reduce((a: { speedup: number }, b: { speedup: number }) => (b.speedup > a.speedup ? b : a));
    const guesses = best.n > 1 || best.lookup > 0 || best.ngram;
    assert.deepEqual([report.decision.n, report.decision.lookup, report.decision.ngram], guesses && best.speedup >= 1.03 ? [best.n, best.lookup, best.ngram] : [1, 0, false], 'the measured best, or plain decoding');
    assert.equal(setup.treesFile, join(adapterDir, 'profiles', `${hash}.trees.json`));
    assert.equal(setup.ngram !== undefined, report.decision.ngram, 'the table drafts where the profile says it paid');
    // --lookup 0: where the decision verifies a lookup chain, the best prompt-token trees measured alone.
    const treesAlone = report.check.sizes.filter((s: Checked) => s.n > 1 && s.lookup === 0 && !s.ngram);
    const bestAlone = treesAlone.reduce((a: { speedup: number }, b: { speedup: number }) => (b.speedup > a.speedup ? b : a));
    const expectedAlone = report.decision.lookup > 0 ? bestAlone.n : report.decision.n;
    assert.deepEqual(report.withoutLookup && report.withoutLookup.n, report.decision.lookup > 0 ? expectedAlone : null);
    assert.equal(loadPpdSetup(base, adapterDir, { threads: 1, lookup: 0 }).trees.budget, expectedAlone, '--lookup 0 decodes with them');

    // The profile's table choice rules the folder's table; `--ngram FILE` overrides it; a profile that did not measure it keeps the old rule.
    const profileFile = profilePath(adapterDir, hash);
    const profile = parseProfile(JSON.parse(readFileSync(profileFile, 'utf8')), profileFile);
    const trees = loadTreeSet(join(adapterDir, 'profiles', profile.trees));
    const without = profile.withoutLookup && loadTreeSet(join(adapterDir, 'profiles', profile.withoutLookup.trees));
    for (const ngram of [false, true]) {
      saveProfile(adapterDir, { ...profile, ngram }, trees, without);
      assert.equal(loadPpdSetup(base, adapterDir, { threads: 1 }).ngram !== undefined, ngram, `profile ngram: ${ngram}`);
    }
    saveProfile(adapterDir, { ...profile, ngram: false }, trees, without);
    assert.equal(loadPpdSetup(base, adapterDir, { threads: 1, ngram: join(adapterDir, 'ngram.bin') }).ngram?.file, join(adapterDir, 'ngram.bin'), '--ngram FILE wins');
    const { ngram: _, ...unmeasured } = profile;
    saveProfile(adapterDir, { ...unmeasured, budget: trees.budget }, trees, without);
    const old = loadPpdSetup(base, adapterDir, { threads: 1 });
    assert.equal(old.ngram !== undefined, trees.budget > 1 || (profile.lookup ?? 0) > 0, 'unmeasured: the table unless the profile decodes plainly');
  });

  test('--latency-model: a what-if report, no profile', async () => {
    const other = join(work, 'wide');
    writeRandomModel(other, { model_type: 'llama', vocab_size: 260, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 128 }, { seed: 5 });
    rmSync(join(adapterDir, 'profiles'), { recursive: true });
    await calibrateCommand({ model: modelDir, ppd: adapterDir, threads: 1, maxN: 8, contexts: [8], repeats: 1, warmup: 0, prompts: 2, maxTokens: 8, genRepeats: 1, tolerance: 0, margin: 0.03, lookup: 4, latencyModel: other });
    const report = JSON.parse(readFileSync(join(adapterDir, 'calibration', `${signatureHash(machineSignature(1))}-latency-wide.json`), 'utf8'));
    assert.equal(report.check, null);
    assert.equal(report.profile, null);
    assert.ok(!existsSync(join(adapterDir, 'profiles')));
  });
});
