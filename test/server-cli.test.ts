/**
 * `ppd serve` as a process: it prints where it listens, loads a PPD adapter folder, takes its
 * API key from PPD_API_KEY, answers, and on SIGTERM finishes the stream in progress before it exits 0 (one spawn of the
 * real CLI on a tiny random model: slow to start, so only one); a port in use is an InputError,
 * which the CLI prints as one `error:` line, and so is an unusable API key or --allowed-hosts.
 */
import { saveAdapter } from '../src/ppd/adapter-files.ts';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InputError } from '../src/errors.ts';
import { serveCommand } from '../src/cli/serve.ts';
import { loadModel } from '../src/checkpoint/load.ts';
import { TREES_FILE } from '../src/ppd/setup.ts';
import { saveTreeSet } from '../src/ppd/tree-files.ts';
import { assertUserError } from './helpers/cli.ts';
import { post, tinyPpdSetup, writeTinyModel } from './helpers/tiny-server.ts';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
let work: string;
let modelDir: string;

let adapterDir: string;

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'ppd-serve-cli-'));
  modelDir = writeTinyModel(join(work, 'tiny'));
  // An untrained adapter folder with its trees, as `ppd train-prompts` would leave one.
  const loaded = await loadModel(modelDir, { cacheDir: false, threads: 1 });
  const setup = tinyPpdSetup(loaded);
  adapterDir = join(work, 'adapter');
  saveAdapter(setup.adapter, adapterDir);
  saveTreeSet(join(adapterDir, TREES_FILE), setup.trees);
  await loaded.model.release();
});

after(() => rmSync(work, { recursive: true, force: true }));

interface Served {
  child: ChildProcessWithoutNullStreams;
  url: string;
  stderr: () => string;
  exit: Promise<number | null>;
}

/** Spawns `ppd serve` and resolves once it says where it listens. */
function serve(args: string[], env: Record<string, string> = {}): Promise<Served> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--model', modelDir, '--threads', '1', ...args], {
    cwd: REPO,
    env: { ...process.env, PPD_CACHE_DIR: join(work, 'cache'), ...env },
  });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      stdout += d;
      const match = /at (http:\/\/\S+);/.exec(stdout);
      if (match) resolve({ child, url: match[1]!, stderr: () => stderr, exit });
    });
    exit.then((code) => reject(new Error(`ppd serve exited with ${code} before listening: ${stderr}`)));
  });
}

test('ppd serve --ppd answers (key from PPD_API_KEY), and on SIGTERM finishes the stream in progress, then exits 0', async () => {
  const served = await serve(['--port', '0', '--ppd', adapterDir], { PPD_API_KEY: 'from-env' });
  const auth = { authorization: 'Bearer from-env' };
  assert.match(served.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const health = await (await fetch(`${served.url}/health`)).json();
  assert.equal(health.status, 'ok');
  assert.equal(health.ppd, true);
  assert.equal((await fetch(`${served.url}/v1/models`)).status, 401);
  assert.equal((await fetch(`${served.url}/v1/models`, { headers: auth })).status, 200);

  const response = await post(`${served.url}/v1/completions`, { prompt: 'Go on', max_tokens: 200, temperature: 0, stream: true }, auth);
  const reader = response.body!.getReader();
  let text = new TextDecoder().decode((await reader.read()).value);
  served.child.kill('SIGTERM');
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  assert.match(text, /"finish_reason":"length"/);
  assert.match(text, /"decoding":\{"mode":"ppd"/);
  assert.match(text, /data: \[DONE\]\n\n$/);
  assert.equal(await served.exit, 0);
  assert.match(served.stderr(), /SIGTERM: not taking new requests/);
  assert.match(served.stderr(), /stopped\n$/);
});

test('a port in use is an InputError naming the address (one error line from the CLI)', async () => {
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const { port } = blocker.address() as AddressInfo;
  try {
    const flags = { model: modelDir, host: '127.0.0.1', port, concurrency: 1, queue: 1, timeout: 10, maxTokens: 8, bodyLimit: 1 << 20, threads: 1 };
    await assert.rejects(serveCommand(flags), (error: Error) => error instanceof InputError && error.message === `cannot listen on 127.0.0.1:${port}: the port is in use`);
  } finally {
    blocker.close();
  }
});

test('an API key no client could send, or a bad --allowed-hosts, is one error line before the model loads', async () => {
  await assertUserError(join(work, 'cache'), ['serve', '--model', modelDir, '--api-key', ''], ['API key', 'empty']);
  await assertUserError(join(work, 'cache'), ['serve', '--model', modelDir, '--allowed-hosts', 'a b'], ['--allowed-hosts', 'a b']);
});
