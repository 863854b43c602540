/**
 * The chat page end to end, in headless Debian Chromium driven by playwright-core: a chat
 * message streams into the page as coloured runs (one per decoding step, sized by the tokens the
 * step accepted) whose text equals the API's greedy answer; the live figures match the stream;
 * the PPD/plain switch gives plain decoding (one token per run) and the same greedy text; Stop
 * cancels the generation on the server.
 *
 * Needs /usr/bin/chromium (scripts/install-browser.sh installs it). Without it the test is
 * skipped with a message on a developer's machine, and fails in CI (CI set), where it must run.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { loadModel, type LoadedModel } from '../src/checkpoint/load.ts';
import { metric, post, slowDown, startServer, tinyPpdSetup, waitForMetrics, writeTinyModel, type RunningServer } from './helpers/tiny-server.ts';

const CHROMIUM = '/usr/bin/chromium';
const skip = !existsSync(CHROMIUM) && !process.env.CI ? `${CHROMIUM} is missing; run scripts/install-browser.sh to run this test` : false;

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let root: string;
let loaded: LoadedModel;
let server: RunningServer;
let browser: BrowserContext | undefined;

before(async () => {
  if (skip) return;
  root = mkdtempSync(join(tmpdir(), 'ppd-server-page-'));
  loaded = await loadModel(writeTinyModel(join(root, 'tiny')), { cacheDir: false, threads: 1 });
  server = await startServer({ loaded, ppd: tinyPpdSetup(loaded) });
  // A fresh profile folder: launchPersistentContext passes it as --user-data-dir.
  browser = await chromium.launchPersistentContext(join(root, 'profile'), { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
});

after(async () => {
  if (skip) return;
  await browser?.close();
  await server.app.close();
  await loaded.model.release();
  rmSync(root, { recursive: true, force: true });
});

interface Run {
  text: string;
  tokens: number;
  colour: string;
}

/** Sends `text` from the page and waits until the reply has finished. */
async function chat(page: Page, text: string): Promise<{ runs: Run[]; meta: string }> {
  const replies = await page.locator('.message.assistant').count();
  await page.fill('#input', text);
  await page.press('#input', 'Enter');
  const reply = page.locator('.message.assistant').nth(replies);
  await reply.and(page.locator('[data-state="done"]')).waitFor({ timeout: 15_000 });
  const runs = await reply.locator('.run').evaluateAll((spans) =>
    spans.map((s) => ({ text: s.textContent ?? '', tokens: Number((s as HTMLElement).dataset.tokens), colour: s.className })),
  );
  return { runs, meta: (await reply.locator('.meta').textContent()) ?? '' };
}

test('the chat page streams coloured runs, live figures, the PPD/plain switch and Stop', { skip }, async () => {
  const page = await browser!.newPage();
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(error.message));
  page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
  await page.goto(server.url);
  await page.locator('#model', { hasText: 'tiny' }).waitFor();
  assert.equal(await page.isChecked('#ppd'), true);
  await page.fill('#max-tokens', '40');

  const expected = await (await post(`${server.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'Hello' }], max_tokens: 40, temperature: 0 })).json();
  const withPpd = await chat(page, 'Hello');
  assert.equal(withPpd.runs.map((r) => r.text).join(''), expected.choices[0].message.content);
  for (const run of withPpd.runs) assert.equal(run.colour, `run n${Math.min(Math.max(run.tokens, 1), 5)}`);
  assert.ok(withPpd.runs.some((r) => r.tokens >= 2), 'some PPD step accepted several tokens');
  assert.match(withPpd.meta, new RegExp(`^PPD · [\\d.]+ tokens/s · ${expected.decoding.accepted_per_step.toFixed(2)} tokens/step · ${expected.decoding.steps} steps · length$`));
  assert.equal(await page.textContent('#tokens'), '40');
  assert.equal(await page.textContent('#tau'), expected.decoding.accepted_per_step.toFixed(2));
  assert.match((await page.textContent('#tps'))!, /^\d+\.\d$/);

  // Plain decoding: one token per step, the same greedy text.
  await page.click('#clear');
  await page.uncheck('#ppd');
  const plain = await chat(page, 'Hello');
  assert.equal(plain.runs.map((r) => r.text).join(''), expected.choices[0].message.content);
  assert.ok(plain.runs.every((r) => r.tokens === 1 && r.colour === 'run n1'));
  assert.match(plain.meta, /^plain · .* 1\.00 tokens\/step · 40 steps/);

  // Stop: the browser drops the stream and the server cancels the generation. Each forward is
  // slowed so that the click lands long before the reply could end by itself: at 20 ms a forward,
  // one run of the suite saw the reply end by EOS before the Stop arrived (finish_reason "eos",
  // the request a 499), and the wait for "aborted" failed.
  const undo = slowDown(loaded.model, 100);
  try {
    await page.fill('#max-tokens', '200');
    await page.fill('#input', 'A long one');
    await page.press('#input', 'Enter');
    await page.locator('.message.assistant').nth(1).locator('.run').first().waitFor();
    await page.click('#stop');
    await page.locator('#status', { hasText: 'stopped' }).waitFor();
    const text = await waitForMetrics(server.url, (m) => metric(m, 'ppd_generations_total', 'mode="plain",finish_reason="aborted"') === 1);
    assert.equal(metric(text, 'ppd_requests_active'), 0);
  } finally {
    undo();
  }
  assert.deepEqual(problems, []);
  if (process.env.PPD_PAGE_SCREENSHOT) await page.screenshot({ path: process.env.PPD_PAGE_SCREENSHOT, fullPage: true });
});
