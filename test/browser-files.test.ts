/**
 * What `ppd serve` hands the in-browser page (/browser/), without a browser: the page, its
 * bundle and ORT's files under COOP/COEP; a manifest naming the served model's and adapter's
 * files (its accuracy table among them) and the tree set and lookup the server decodes with; only those files, revalidated by
 * ETag; and, with an API key, the model's files behind it as /v1 is (the page and manifest not).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserManifest } from '../src/browser/protocol.ts';
import { loadModel, type LoadedModel } from '../src/checkpoint/load.ts';
import { saveAdapter } from '../src/ppd/adapter-files.ts';
import { writeAccuracyFile } from '../src/ppd/accuracy-files.ts';
import { ACCURACY_FILE } from '../src/ppd/adapter-folder.ts';
import { TREES_FILE } from '../src/ppd/setup.ts';
import { saveTreeSet } from '../src/ppd/tree-files.ts';
import { buildServer } from '../src/server/app.ts';
import { tinyPpdSetup, writeTinyModel } from './helpers/tiny-server.ts';

let root: string;
let loaded: LoadedModel;
let adapterDir: string;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'ppd-browser-files-'));
  loaded = await loadModel(writeTinyModel(join(root, 'tiny')), { cacheDir: false, threads: 1 });
  adapterDir = join(root, 'adapter');
  const setup = tinyPpdSetup(loaded);
  saveAdapter(setup.adapter, adapterDir);
  saveTreeSet(join(adapterDir, TREES_FILE), setup.trees);
  writeAccuracyFile(join(adapterDir, ACCURACY_FILE), [[0.5, 0.1]], 10, 'test');
});

after(async () => {
  await loaded.model.release();
  rmSync(root, { recursive: true, force: true });
});

const ISOLATED = { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' };

test('the page, its bundle, ORT and the model files, cross-origin isolated', async () => {
  const setup = { ...tinyPpdSetup(loaded), treesFile: join(adapterDir, TREES_FILE), lookup: 5 };
  const app = buildServer({ loaded, ppd: setup, adapterDir });
  try {
    const page = await app.inject({ url: '/browser/' });
    assert.equal(page.statusCode, 200);
    assert.match(page.headers['content-type'] as string, /text\/html/);
    assert.match(page.body, /<script type="module" src="page.js">/);
    for (const [name, value] of Object.entries(ISOLATED)) assert.equal(page.headers[name], value, name);
    assert.match(page.headers['content-security-policy'] as string, /'wasm-unsafe-eval'/);
    for (const file of ['page.js', 'worker.js', 'page.css']) {
      const response = await app.inject({ url: `/browser/${file}` });
      assert.equal(response.statusCode, 200, file);
      assert.equal(response.headers['cross-origin-embedder-policy'], 'require-corp', file);
    }
    const wasm = await app.inject({ url: '/browser/ort/ort-wasm-simd-threaded.wasm' });
    assert.equal(wasm.statusCode, 200);
    assert.equal(wasm.headers['content-type'], 'application/wasm');

    const manifest = (await app.inject({ url: '/browser/manifest.json' })).json() as BrowserManifest;
    assert.equal(manifest.auth, false);
    assert.equal(manifest.model.name, 'tiny');
    assert.deepEqual(manifest.model.files.sort(), ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    // The accuracy table too: the page sizes its own trees from it (ppd/quick-calibration.ts).
    assert.deepEqual(manifest.adapter, { path: 'adapter/', files: ['adapter_config.json', 'adapter.safetensors', ACCURACY_FILE, TREES_FILE], trees: TREES_FILE, lookup: 5 });

    const weights = await app.inject({ url: '/browser/model/model.safetensors' });
    assert.equal(weights.statusCode, 200);
    const etag = weights.headers.etag as string;
    assert.ok(etag);
    assert.equal((await app.inject({ url: '/browser/model/model.safetensors', headers: { 'if-none-match': etag } })).statusCode, 304);
    assert.equal((await app.inject({ url: `/browser/adapter/${TREES_FILE}` })).statusCode, 200);
    assert.deepEqual((await app.inject({ url: `/browser/adapter/${ACCURACY_FILE}` })).json().accuracy, [[0.5, 0.1]]);
    for (const url of ['/browser/model/../../etc/passwd', '/browser/model/training.json', '/browser/ort/ort.node.min.js', '/browser/nothing.js']) {
      assert.equal((await app.inject({ url })).statusCode, 404, url);
    }
  } finally {
    await app.close();
  }
});

test('with an API key the model files need it; the page and the manifest do not', async () => {
  const app = buildServer({ loaded, apiKey: 'sesame' });
  try {
    assert.equal((await app.inject({ url: '/browser/' })).statusCode, 200);
    const manifest = (await app.inject({ url: '/browser/manifest.json' })).json() as BrowserManifest;
    assert.equal(manifest.auth, true);
    assert.equal(manifest.adapter, undefined, 'no adapter folder: the page decodes plainly');
    assert.equal((await app.inject({ url: '/browser/model/config.json' })).statusCode, 401);
    assert.equal((await app.inject({ url: '/browser/model/config.json', headers: { authorization: 'Bearer sesame' } })).statusCode, 200);
  } finally {
    await app.close();
  }
});
