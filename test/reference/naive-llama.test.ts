/**
 * Self-checks of the naive reference forward on tiny random models, independent of ppd's graph:
 * cached equals uncached, tree equals separate branches, rotary is relative, GQA and multi-query
 * attention equal MHA with repeated key/value heads.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LlamaConfig } from '../../src/model/config.ts';
import { layerTensorName } from '../../src/model/weights.ts';
import { assertClose, maxAbsDiff, randomWeights, range, tinyConfig } from '../helpers/tiny-model.ts';
import { causalMask, embedTokens, naiveForward } from './naive-llama.ts';

const rows = (x: Float32Array, width: number, from: number, n: number) => x.subarray(from * width, (from + n) * width);

function runCausal(c: LlamaConfig, w: Map<string, Float32Array>, ids: number[], positions = range(0, ids.length)) {
  return naiveForward(c, w, { embeds: embedTokens(c, w, ids), positions, mask: causalMask(ids.length, 0) });
}

const IDS = [3, 17, 8, 29, 1, 39, 12];

test('causalMask: row t sees the past and new rows up to itself', () => {
  assert.deepEqual(causalMask(2, 1), [
    [true, true, false],
    [true, true, true],
  ]);
});

test('all tokens at once equals one token at a time with the past cache', () => {
  const c = tinyConfig();
  const w = randomWeights(c, 1);
  const full = runCausal(c, w, IDS);
  const kvWidth = c.numKvHeads * c.headDim;
  let past = { keys: range(0, c.numLayers).map(() => new Float32Array(0)), values: range(0, c.numLayers).map(() => new Float32Array(0)) };
  for (let t = 0; t < IDS.length; t++) {
    const step = naiveForward(c, w, { embeds: embedTokens(c, w, [IDS[t]]), positions: [t], mask: causalMask(1, t), past });
    assertClose(step.logits, rows(full.logits, c.vocabSize, t, 1), 1e-5, `logits step ${t}`);
    for (let l = 0; l < c.numLayers; l++) {
      assertClose(step.keys[l], rows(full.keys[l], kvWidth, t, 1), 1e-5, `keys layer ${l} step ${t}`);
      assertClose(step.values[l], rows(full.values[l], kvWidth, t, 1), 1e-5, `values layer ${l} step ${t}`);
    }
    past = {
      keys: past.keys.map((k, l) => Float32Array.from([...k, ...step.keys[l]])),
      values: past.values.map((v, l) => Float32Array.from([...v, ...step.values[l]])),
    };
  }
});

test('a chunk after a cached prefix equals the same rows of the full run', () => {
  const c = tinyConfig();
  const w = randomWeights(c, 2);
  const full = runCausal(c, w, IDS);
  const P = 3;
  const prefix = runCausal(c, w, IDS.slice(0, P));
  const rest = naiveForward(c, w, {
    embeds: embedTokens(c, w, IDS.slice(P)),
    positions: range(P, IDS.length - P),
    mask: causalMask(IDS.length - P, P),
    past: { keys: prefix.keys, values: prefix.values },
  });
  assertClose(rest.logits, rows(full.logits, c.vocabSize, P, IDS.length - P), 1e-5, 'logits');
});

test('a tree of two branches over a shared prefix equals each branch run alone', () => {
  const c = tinyConfig();
  const w = randomWeights(c, 3);
  const prefixIds = [5, 22, 9];
  const branchA = [14, 2];
  const branchB = [31, 7];
  const P = prefixIds.length;
  const prefix = runCausal(c, w, prefixIds);
  // Tree rows: A0, A1, B0, B1. Context: 3 prefix rows, then the 4 tree rows.
  const y = true;
  const n = false;
  const tree = naiveForward(c, w, {
    embeds: embedTokens(c, w, [...branchA, ...branchB]),
    positions: [P, P + 1, P, P + 1],
    mask: [
      [y, y, y, y, n, n, n],
      [y, y, y, y, y, n, n],
      [y, y, y, n, n, y, n],
      [y, y, y, n, n, y, y],
    ],
    past: { keys: prefix.keys, values: prefix.values },
  });
  const aloneA = runCausal(c, w, [...prefixIds, ...branchA]);
  const aloneB = runCausal(c, w, [...prefixIds, ...branchB]);
  const V = c.vocabSize;
  assertClose(rows(tree.logits, V, 0, 2), rows(aloneA.logits, V, P, 2), 1e-5, 'branch A logits');
  assertClose(rows(tree.logits, V, 2, 2), rows(aloneB.logits, V, P, 2), 1e-5, 'branch B logits');
  const kvWidth = c.numKvHeads * c.headDim;
  for (let l = 0; l < c.numLayers; l++) {
    assertClose(rows(tree.keys[l], kvWidth, 2, 2), rows(aloneB.keys[l], kvWidth, P, 2), 1e-5, `branch B keys layer ${l}`);
  }
});

test('rotary: shifting every position by a constant leaves logits unchanged', () => {
  const c = tinyConfig();
  const w = randomWeights(c, 4);
  const base = runCausal(c, w, IDS);
  const shifted = runCausal(c, w, IDS, range(37, IDS.length));
  assertClose(shifted.logits, base.logits, 1e-5, 'logits');
  // Rotary is not a no-op: spreading positions apart changes the logits.
  const spread = runCausal(c, w, IDS, range(0, IDS.length).map((p) => 3 * p));
  assert.ok(maxAbsDiff(spread.logits, base.logits) > 1e-3, 'spread positions should change logits');
});

test('rotary: keys rotate by rotate_half (dimension i pairs with i + D/2), positions divided by scaling', () => {
  const factor = 2.5;
  const c = tinyConfig({ ropeScaling: { type: 'linear', factor }, ropeTheta: 500 });
  const w = randomWeights(c, 5);
  const one = (position: number) =>
    naiveForward(c, w, { embeds: embedTokens(c, w, [11]), positions: [position], mask: [[true]] });
  // With a single token the attention output is its own value, whatever the position, so layer 0
  // keys at position 0 are the unrotated projections.
  const k0 = one(0).keys[0];
  const position = 7;
  const k = one(position).keys[0];
  const D = c.headDim;
  const half = D / 2;
  for (let h = 0; h < c.numKvHeads; h++) {
    for (let i = 0; i < half; i++) {
      const angle = (position / factor) * Math.pow(c.ropeTheta, (-2 * i) / D);
      const a = k0[h * D + i];
      const b = k0[h * D + i + half];
      assert.ok(Math.abs(k[h * D + i] - (a * Math.cos(angle) - b * Math.sin(angle))) < 1e-5, `head ${h} dim ${i}`);
      assert.ok(Math.abs(k[h * D + i + half] - (b * Math.cos(angle) + a * Math.sin(angle))) < 1e-5, `head ${h} dim ${i + half}`);
    }
  }
});

// Query head h reads key/value head floor(h / G), as transformers' repeat_kv does: GQA (K = 2)
// and multi-query attention (K = 1) must equal MHA whose key/value heads repeat each shared one.
for (const [label, numKvHeads] of [['GQA, 2 key/value heads', 2], ['multi-query attention, 1 key/value head', 1]] as const) {
  test(`${label} equals MHA whose key/value heads repeat each shared head for its group of query heads`, () => {
    const shared = tinyConfig({ numHeads: 4, numKvHeads });
    const mha = tinyConfig({ numHeads: 4, numKvHeads: 4 });
    const wShared = randomWeights(shared, 6 + numKvHeads);
    const wMha = new Map(wShared);
    const D = shared.headDim;
    const C = shared.hiddenSize;
    const group = shared.numHeads / shared.numKvHeads;
    for (let l = 0; l < shared.numLayers; l++) {
      for (const part of ['self_attn.k_proj', 'self_attn.v_proj'] as const) {
        const name = layerTensorName(l, part);
        const src = wShared.get(name)!; // [K * D, C]
        const dst = new Float32Array(mha.numKvHeads * D * C);
        for (let h = 0; h < mha.numKvHeads; h++) {
          dst.set(src.subarray(Math.floor(h / group) * D * C, (Math.floor(h / group) + 1) * D * C), h * D * C);
        }
        wMha.set(name, dst);
      }
    }
    const outShared = runCausal(shared, wShared, IDS);
    const outMha = runCausal(mha, wMha, IDS);
    assertClose(outShared.logits, outMha.logits, 1e-5, 'logits');
    assert.equal(outShared.keys[0].length, IDS.length * shared.numKvHeads * D);
    assert.equal(outMha.keys[0].length, IDS.length * mha.numKvHeads * D);
  });
}

test('tied word embeddings use embed_tokens as the LM head', () => {
  const untied = tinyConfig();
  const w = randomWeights(untied, 8);
  const tied = tinyConfig({ tieWordEmbeddings: true });
  const wTied = new Map(w);
  wTied.delete('lm_head.weight');
  const wUntied = new Map(w).set('lm_head.weight', w.get('model.embed_tokens.weight')!);
  assertClose(runCausal(tied, wTied, IDS).logits, runCausal(untied, wUntied, IDS).logits, 0, 'logits');
});

test('a mask row that attends to nothing throws', () => {
  const c = tinyConfig();
  const w = randomWeights(c, 9);
  assert.throws(
    () => naiveForward(c, w, { embeds: embedTokens(c, w, [1, 2]), positions: [0, 1], mask: [[true, false], [false, false]] }),
    /attends to nothing/,
  );
});
