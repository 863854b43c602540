/**
 * ppd in the browser (/browser/), end to end in headless Debian Chromium driven by playwright-core:
 * the page loads the bundled model and its adapter in a Web Worker on onnxruntime-web, its greedy
 * ids equal Node's engine for the same prompts (computed here, at test time), PPD output equals
 * plain decoding, the second visit finds the compiled graph in the browser's cache, a bad file
 * picked from disk gives one readable error line on the page, and `npm run build:browser`'s
 * static files run from a plain static server (one thread: no COOP/COEP there). WebGPU (SwiftShader's software
 * adapter, --enable-unsafe-webgpu): the next-token logits equal Node's within float tolerance;
 * skipped with a note where Chromium offers no WebGPU adapter.
 *
 * Needs /usr/bin/chromium (scripts/install-browser.sh); skipped without it on a developer's
 * machine, required in CI (CI set), like the chat page's test.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TreesInfo } from '../src/browser/protocol.ts';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { promisify } from 'node:util';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { DEFAULT_ADAPTER, DEFAULT_MODEL } from '../src/cli/demo.ts';
import { promptHeadOf } from '../src/ppd/adapter-files.ts';
import { newCache, prefill } from '../src/decode/autoregressive.ts';
import { promptIds, startGeneration } from '../src/generate/request.ts';
import { loadModel, type LoadedModel } from '../src/checkpoint/load.ts';
import { loadPpdSetup, TREES_FILE, type PpdSetup } from '../src/ppd/setup.ts';
import { startServer, type RunningServer } from './helpers/tiny-server.ts';

const CHROMIUM = '/usr/bin/chromium';
const skip = !existsSync(CHROMIUM) && !process.env.CI ? `${CHROMIUM} is missing; run scripts/install-browser.sh to run this test` : false;
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--enable-unsafe-webgpu'];

const PROMPTS = ['import { readFileSync } from "node:fs";\n', 'export function parse(text: string): string[] {\n'];
const MAX_TOKENS = 32;

let root: string;
let loaded: LoadedModel;
let ppd: PpdSetup;
let server: RunningServer;
let browser: BrowserContext | undefined;

before(async () => {
  if (skip) return;
  root = mkdtempSync(join(tmpdir(), 'ppd-browser-page-'));
  loaded = await loadModel(DEFAULT_MODEL, { threads: 1, needsTokenizer: true, promptHead: promptHeadOf(DEFAULT_ADAPTER) });
  // The adapter's own trees (not this machine's calibration) and the default context lookup.
  ppd = loadPpdSetup(loaded.config, DEFAULT_ADAPTER, { trees: join(DEFAULT_ADAPTER, TREES_FILE) });
  server = await startServer({ loaded, ppd, adapterDir: DEFAULT_ADAPTER });
  browser = await chromium.launchPersistentContext(join(root, 'profile'), { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
});

after(async () => {
  if (skip) return;
  await browser?.close();
  await server.app.close();
  await loaded.model.release();
  rmSync(root, { recursive: true, force: true });
});

/**
 * How long the page may take to load a model or finish a generation before the test calls it
 * stuck: generous, since a shared machine under load (or SwiftShader compiling WebGPU shaders)
 * is slow; this catches a page that never answers, it does not time anything.
 */
const STUCK_MS = 300_000;

/** Opens the page (at `url`, default the server's) and waits until its model is ready (or it failed). */
async function openPage(query: string, url = `${server.url}/browser/`): Promise<{ page: Page; problems: string[] }> {
  const page = await browser!.newPage();
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(error.message));
  await page.goto(`${url}?${query}`);
  await page.locator('#status[data-state="ready"], #status[data-state="error"]').waitFor({ timeout: STUCK_MS });
  return { page, problems };
}

/** Generates from `prompt` on the page; the ids, mode and stats it reports. */
async function generate(page: Page, prompt: string, usePpd: boolean): Promise<{ ids: number[]; mode: string; tau: number; runs: number[]; trees: TreesInfo | null }> {
  if ((await page.isChecked('#ppd')) !== usePpd) await page.click('#ppd');
  await page.fill('#max-tokens', String(MAX_TOKENS));
  const before = await page.locator('.message.assistant').count();
  await page.fill('#input', prompt);
  await page.click('#send');
  const reply = page.locator('.message.assistant').nth(before);
  await reply.and(page.locator('[data-state="done"]')).waitFor({ timeout: STUCK_MS });
  const stats = JSON.parse((await reply.getAttribute('data-stats'))!);
  const runs = await reply.locator('.run').evaluateAll((spans) => spans.map((s) => Number((s as HTMLElement).dataset.tokens)));
  const trees = await reply.getAttribute('data-trees');
  return { ids: JSON.parse((await reply.getAttribute('data-ids'))!), mode: (await reply.getAttribute('data-mode'))!, tau: stats.tau, runs, trees: trees === null ? null : JSON.parse(trees) };
}

test('the page runs the bundled model in the browser: greedy ids equal Node, PPD equals plain, the graph is cached', { skip }, async () => {
  const { page, problems } = await openPage('provider=wasm');
  assert.equal(await page.locator('#status').getAttribute('data-state'), 'ready', await page.locator('#log').textContent() ?? '');
  assert.match((await page.locator('#model').textContent())!, /ppd-base/);
  const runtime = (await page.locator('#runtime').textContent())!;
  assert.match(runtime, /onnxruntime-web 1\.30\.\d+, wasm, 2 threads/, 'COOP/COEP make the page cross-origin isolated, so WebAssembly gets threads');
  assert.equal(await page.isEnabled('#ppd'), true, 'the served adapter is offered');

  for (const prompt of PROMPTS) {
    const node = await startGeneration(loaded, { prompt, maxTokens: MAX_TOKENS }).complete();
    const plain = await generate(page, prompt, false);
    assert.equal(plain.mode, 'plain');
    assert.deepEqual(plain.ids, node.ids, `browser greedy ids differ from Node's for ${JSON.stringify(prompt)}`);
    assert.ok(plain.runs.every((n) => n === 1), 'plain decoding accepts one token per step');
    const withPpd = await generate(page, prompt, true);
    assert.equal(withPpd.mode, 'ppd');
    assert.deepEqual(withPpd.ids, node.ids, `browser PPD ids differ from plain for ${JSON.stringify(prompt)}`);
    assert.equal(withPpd.runs.reduce((a, b) => a + b, 0), withPpd.ids.length);
    // The served adapter has an accuracy table: the page sized its trees from its own forward latencies.
    assert.equal(withPpd.trees?.source, 'page');
    assert.ok(withPpd.trees.rows >= 1 && withPpd.trees.fastest!.speedup > 0);
  }
  assert.deepEqual(problems, []);
  await page.close();

  // A second visit finds the compiled graph in Cache Storage instead of compiling it again.
  const again = await openPage('provider=wasm&threads=1');
  assert.equal(await again.page.locator('#runtime').getAttribute('data-graph'), 'cached');
  assert.match((await again.page.locator('#runtime').textContent())!, /wasm, 1 thread/);
  const node = await startGeneration(loaded, { prompt: PROMPTS[0]!, maxTokens: MAX_TOKENS }).complete();
  assert.deepEqual((await generate(again.page, PROMPTS[0]!, false)).ids, node.ids, 'the cached graph gives the same ids (1 thread)');
  await again.page.close();
});

test('a bad file picked from disk is one readable error on the page', { skip }, async () => {
  const { page } = await openPage('provider=wasm&threads=1');
  const bad = join(root, 'bad.gguf');
  writeFileSync(bad, 'this is not a GGUF file');
  await page.setInputFiles('#pick-gguf', bad);
  const error = page.locator('.message.error').last();
  await error.waitFor({ timeout: STUCK_MS });
  assert.match((await error.textContent())!, /^error: bad\.gguf: not a GGUF file/);
  assert.equal(await page.locator('#status').getAttribute('data-state'), 'error');

  // A folder without config.json: the error names the missing file.
  const folder = join(root, 'no-config');
  mkdirSync(folder);
  writeFileSync(join(folder, 'tokenizer.json'), '{}');
  await page.setInputFiles('#pick-folder', folder);
  await page.locator('.message.error').nth(1).waitFor({ timeout: STUCK_MS });
  assert.match((await page.locator('.message.error').nth(1).textContent())!, /^error: no-config\/config\.json: file not found/);
  await page.close();
});

test('WebGPU: next-token logits equal Node engine\'s within float tolerance', { skip }, async (t) => {
  const probe = await browser!.newPage();
  await probe.goto(`${server.url}/browser/manifest.json`);
  const adapter = await probe.evaluate(async () => {
    const gpu = (navigator as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
    return gpu ? (await gpu.requestAdapter()) !== null : false;
  });
  await probe.close();
  if (!adapter) return t.skip('this Chromium offers no WebGPU adapter here');

  const { page, problems } = await openPage('provider=webgpu');
  assert.equal(await page.locator('#status').getAttribute('data-state'), 'ready', await page.locator('#log').textContent() ?? '');
  assert.match((await page.locator('#runtime').textContent())!, /webgpu/);
  const ids = promptIds(loaded, PROMPTS[0]!);
  const browserLogits = await page.evaluate((ids) => (globalThis as unknown as { ppdLogits(ids: number[]): Promise<number[]> }).ppdLogits(ids), ids);
  const nodeLogits = await prefill(loaded.model, ids, newCache(loaded.model));
  assert.equal(browserLogits.length, nodeLogits.length);
  // f32 on another device sums in another order: measured 0.00102 on logits up to 11.7 (8.7e-5 of
  // the largest) with the 20.5M-token bundled model, 1e-3 held before its logits grew. The bound,
  // 2e-4 of the largest logit, is twice that; a wrong op or layout is off by the logits' own size.
  let worst = 0;
  let largest = 1;
  for (let i = 0; i < nodeLogits.length; i++) {
    worst = Math.max(worst, Math.abs(browserLogits[i]! - nodeLogits[i]!));
    largest = Math.max(largest, Math.abs(nodeLogits[i]!));
  }
  assert.ok(worst < 2e-4 * largest, `largest logit difference ${worst} (largest logit ${largest})`);
  assert.deepEqual(problems, []);
  await page.close();
});

test('npm run build:browser writes static files that run the model from any static server', { skip }, async () => {
  const out = join(root, 'static');
  await promisify(execFile)(process.execPath, ['--import', 'tsx', 'scripts/build-browser.ts', '--out', out], { cwd: join(DEFAULT_MODEL, '..', '..') });
  // A plain static server: files as they are, no COOP/COEP headers.
  const files = createServer((request, response) => {
    let path = join(out, decodeURIComponent(new URL(request.url!, 'http://x').pathname));
    if (existsSync(path) && statSync(path).isDirectory()) path = join(path, 'index.html');
    if (!existsSync(path)) return void response.writeHead(404).end();
    const type = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm' }[extname(path)];
    response.writeHead(200, type ? { 'content-type': type } : {}).end(readFileSync(path));
  });
  await new Promise<void>((resolve) => files.listen(0, '127.0.0.1', resolve));
  try {
    const { page, problems } = await openPage('provider=wasm', `http://127.0.0.1:${(files.address() as AddressInfo).port}/`);
    assert.equal(await page.locator('#status').getAttribute('data-state'), 'ready', await page.locator('#log').textContent() ?? '');
    assert.match((await page.locator('#runtime').textContent())!, /wasm, 1 thread.*not cross-origin isolated/);
    const node = await startGeneration(loaded, { prompt: PROMPTS[1]!, maxTokens: MAX_TOKENS }).complete();
    assert.deepEqual((await generate(page, PROMPTS[1]!, true)).ids, node.ids);
    assert.deepEqual(problems, []);
    await page.close();
  } finally {
    files.close();
  }
});
