/**
 * The server under load and trouble, on a tiny random model slowed to ~15 ms per forward so
 * that requests can be caught mid-generation: the bounded queue (429 when full, first come first
 * served), clients that disconnect (their generation stops and frees its slot, queued ones never
 * start), the per-request time limit, graceful close (in-flight requests finish, new ones are
 * refused) and errors inside the model (a 500, and the server goes on). Requests whose length
 * matters are greedy: sampled with a random seed, one could meet EOS at once.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel, type LoadedModel } from '../src/checkpoint/load.ts';
import type { PpdSetup } from '../src/ppd/setup.ts';
import type { ServerOptions } from '../src/server/app.ts';
import { metric, post, readEvents, slowDown, startServer, tinyPpdSetup, waitForMetrics, writeTinyModel, type RunningServer } from './helpers/tiny-server.ts';

const FORWARD_MS = 15;

let root: string;
let loaded: LoadedModel;
let ppd: PpdSetup;
const servers: RunningServer[] = [];

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'ppd-server-queue-'));
  loaded = await loadModel(writeTinyModel(join(root, 'tiny')), { cacheDir: false, threads: 1 });
  ppd = tinyPpdSetup(loaded);
  slowDown(loaded.model, FORWARD_MS);
});

after(async () => {
  await Promise.all(servers.map((s) => s.app.close()));
  await loaded.model.release();
  rmSync(root, { recursive: true, force: true });
});

async function serve(options: Partial<ServerOptions> = {}): Promise<RunningServer> {
  const server = await startServer({ loaded, ppd, ...options });
  servers.push(server);
  return server;
}

/** Starts a streaming completion and resolves once its first step has arrived. */
async function startStream(url: string, body: object, signal?: AbortSignal): Promise<{ response: Response; reader: ReadableStreamDefaultReader<Uint8Array>; first: string }> {
  const response = await post(`${url}/v1/completions`, { prompt: 'a long story', temperature: 0, ...body, stream: true }, {}, signal);
  assert.equal(response.status, 200);
  const reader = response.body!.getReader();
  let first = '';
  while (!first.includes('accepted_tokens')) {
    const { value, done } = await reader.read();
    if (done) throw new Error('the stream ended before its first step');
    first += new TextDecoder().decode(value);
  }
  return { response, reader, first };
}

/** Counts the model's forwards from now until stop(). */
function countForwards(): { stop: () => number } {
  const forward = loaded.model.forward;
  let calls = 0;
  loaded.model.forward = function (this: LoadedModel['model'], input) {
    calls++;
    return forward.call(this, input);
  };
  return {
    stop: () => {
      loaded.model.forward = forward;
      return calls;
    },
  };
}

/** Reads the rest of a stream as text. */
async function rest(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<string> {
  let text = '';
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return text;
    text += decoder.decode(value, { stream: true });
  }
}

describe('queue', () => {
  test('with one slot and one place in line, a third request gets 429 at once; the others are served', async () => {
    const { url } = await serve({ concurrency: 1, maxWaiting: 1 });
    const a = await startStream(url, { max_tokens: 60 });
    const b = post(`${url}/v1/completions`, { prompt: 'second', max_tokens: 3, temperature: 0 });
    await waitForMetrics(url, (m) => metric(m, 'ppd_queue_depth') === 1);
    const c = await post(`${url}/v1/completions`, { prompt: 'third', max_tokens: 3 });
    assert.equal(c.status, 429);
    const busy = await (await fetch(`${url}/health`)).json();
    assert.deepEqual(busy.queue, { active: 1, waiting: 1, concurrency: 1, max_waiting: 1 }, 'a full queue answers at once, not after a wait');
    const error = (await c.json()).error;
    assert.equal(error.type, 'rate_limit_error');
    assert.equal(error.code, 'queue_full');
    assert.match(a.first + (await rest(a.reader)), /data: \[DONE\]\n\n$/);
    assert.equal((await b).status, 200);
    const health = await (await fetch(`${url}/health`)).json();
    assert.deepEqual(health.queue, { active: 0, waiting: 0, concurrency: 1, max_waiting: 1 });
  });

  test('with maxWaiting 0, a busy server turns every other request away', async () => {
    const { url } = await serve({ concurrency: 1, maxWaiting: 0 });
    const a = await startStream(url, { max_tokens: 10 });
    assert.equal((await post(`${url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'hi' }] })).status, 429);
    await rest(a.reader);
  });

  test('two slots run two generations at once, each stream holding what its request gives alone', async () => {
    const { url } = await serve({ concurrency: 2, maxWaiting: 0 });
    const requests = [{ prompt: 'a long story', max_tokens: 20 }, { prompt: 'another tale', max_tokens: 20 }];
    const a = await startStream(url, requests[0]!);
    const b = await startStream(url, requests[1]!);
    await waitForMetrics(url, (m) => metric(m, 'ppd_requests_active') === 2);
    const streams = await Promise.all([a, b].map(async (s) => s.first + (await rest(s.reader))));
    for (const [i, raw] of streams.entries()) {
      const events = raw.split('\n\n').filter((e) => e !== '').map((e) => e.replace(/^data: /, ''));
      assert.equal(events.at(-1), '[DONE]', `stream ${i} ends with [DONE]`);
      const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
      const streamed = chunks.map((c) => c.choices[0].text).join('');
      // Greedy: the same request alone (no other generation running) gives the same text.
      const alone = await (await post(`${url}/v1/completions`, { ...requests[i], temperature: 0 })).json();
      assert.equal(streamed, alone.choices[0].text, `stream ${i}`);
      assert.ok(streamed.length > 0, `stream ${i} has text`);
      assert.equal(chunks.at(-1).choices[0].finish_reason, alone.choices[0].finish_reason);
    }
  });
});

describe('cancellation', () => {
  test('a client that leaves mid-stream stops its generation and frees the slot', async () => {
    const { url } = await serve();
    const controller = new AbortController();
    const stream = await startStream(url, { max_tokens: 200 }, controller.signal);
    controller.abort();
    await stream.reader.cancel().catch(() => {});
    const text = await waitForMetrics(url, (m) => metric(m, 'ppd_generations_total', 'mode="ppd",finish_reason="aborted"') === 1 && metric(m, 'ppd_requests_active') === 0);
    assert.ok(metric(text, 'ppd_generated_tokens_total', 'mode="ppd"')! < 50, 'stopped soon after the client left');
    assert.equal(metric(text, 'ppd_http_requests_total', 'route="/v1/completions",status="499"'), 1);
    const forwards = countForwards();
    await new Promise((resolve) => setTimeout(resolve, 10 * FORWARD_MS));
    assert.equal(forwards.stop(), 0, 'nothing runs on in the background');
    const next = await post(`${url}/v1/completions`, { prompt: 'next', max_tokens: 2 });
    assert.equal(next.status, 200);
  });

  test('a client that leaves a whole (non-streamed) request stops it too', async () => {
    const { url } = await serve();
    const controller = new AbortController();
    const pending = post(`${url}/v1/completions`, { prompt: 'whole', max_tokens: 200, temperature: 0 }, {}, controller.signal);
    await waitForMetrics(url, (m) => metric(m, 'ppd_requests_active') === 1);
    await new Promise((resolve) => setTimeout(resolve, 5 * FORWARD_MS));
    controller.abort();
    await assert.rejects(pending, { name: 'AbortError' });
    const text = await waitForMetrics(url, (m) => metric(m, 'ppd_generations_total', 'mode="ppd",finish_reason="aborted"') === 1 && metric(m, 'ppd_requests_active') === 0);
    assert.ok(metric(text, 'ppd_generated_tokens_total', 'mode="ppd"')! < 50);
  });

  test('a request whose client leaves while it waits in line leaves the line and never generates', async () => {
    const { url } = await serve({ concurrency: 1, maxWaiting: 4 });
    const a = await startStream(url, { max_tokens: 15 });
    const controller = new AbortController();
    const waiting = post(`${url}/v1/completions`, { prompt: 'queued', max_tokens: 5, temperature: 0 }, {}, controller.signal);
    await waitForMetrics(url, (m) => metric(m, 'ppd_queue_depth') === 1);
    controller.abort();
    await assert.rejects(waiting, { name: 'AbortError' });
    await waitForMetrics(url, (m) => metric(m, 'ppd_queue_depth') === 0);
    await rest(a.reader);
    const text = await waitForMetrics(url, (m) => metric(m, 'ppd_requests_active') === 0);
    assert.equal(metric(text, 'ppd_generations_total', 'mode="ppd",finish_reason="length"'), 1, 'only the first request generated');
    assert.equal(metric(text, 'ppd_generations_total', 'mode="ppd",finish_reason="aborted"'), undefined);
  });
});

describe('time limit', () => {
  test('past its time limit a request is cancelled: 504 whole, an error event streamed, 504 while queued', async () => {
    // A second: under a loaded machine, tokenizing and queueing can take a good part of a
    // shorter limit, and a request timed out before its generation starts counts no aborted
    // generation (the metric check below). The generations need 3 s and more (FORWARD_MS each).
    const { url } = await serve({ timeoutSeconds: 1, concurrency: 1, maxWaiting: 2 });
    const whole = await post(`${url}/v1/completions`, { prompt: 'slow', max_tokens: 200, temperature: 0 });
    assert.equal(whole.status, 504);
    assert.equal((await whole.json()).error.type, 'timeout_error');

    const streamed = post(`${url}/v1/completions`, { prompt: 'slow', max_tokens: 200, temperature: 0, stream: true });
    // Long enough that it cannot finish in the moment between the stream's time-out and its own.
    const queued = post(`${url}/v1/completions`, { prompt: 'queued', max_tokens: 150, temperature: 0 });
    const events = await readEvents(await streamed);
    assert.equal(events.at(-1), '[DONE]');
    const error = events.at(-2) as { error: { type: string; code: string } };
    assert.equal(error.error.type, 'timeout_error');
    assert.equal(error.error.code, 'timeout');
    assert.equal((await queued).status, 504);
    const text = await waitForMetrics(url, (m) => metric(m, 'ppd_requests_active') === 0);
    assert.ok(metric(text, 'ppd_generations_total', 'mode="ppd",finish_reason="aborted"')! >= 2);
    assert.equal(metric(text, 'ppd_generations_total', 'mode="ppd",finish_reason="length"'), undefined, 'nothing ran to its end');
  });
});

describe('shutdown', () => {
  test('close() turns readiness to 503, refuses new connections, finishes the streams and queued requests it has, then resolves', async () => {
    const server = await startServer({ loaded, ppd, concurrency: 1, maxWaiting: 2 });
    const ready = await fetch(`${server.url}/health/ready`);
    assert.equal(ready.status, 200);
    assert.equal((await ready.json()).status, 'ready');
    // A balancer's readiness check that reaches the server as close() begins sees 503, and a
    // generation that arrives then is refused with a 503 the balancer can retry elsewhere.
    const check = await halfSent(server.url, 'GET /health/ready');
    const lateGeneration = await halfSent(server.url, 'POST /v1/completions', { prompt: 'too late', max_tokens: 2 });
    const a = await startStream(server.url, { max_tokens: 25 });
    const b = post(`${server.url}/v1/completions`, { prompt: 'queued before close', max_tokens: 4, temperature: 0 });
    await waitForMetrics(server.url, (m) => metric(m, 'ppd_queue_depth') === 1);
    let closed = false;
    const closing = server.app.close().then(() => (closed = true));
    // Refused, or (if it got in before the listener stopped) answered 503.
    const late = await fetch(`${server.url}/health`, { headers: { connection: 'close' } }).then((r) => r.status, () => 'refused');
    assert.ok(late === 'refused' || late === 503, `a request after close() got ${late}`);
    const events = a.first + (await rest(a.reader));
    assert.match(events, /"finish_reason":"length"/);
    assert.match(events, /data: \[DONE\]\n\n$/);
    const queued = await b;
    assert.equal(queued.status, 200);
    assert.equal((await queued.json()).usage.completion_tokens, 4);
    assert.match(await check.finish(), /^HTTP\/1\.1 503 [^]*\r\n\r\n\{"status":"closing"/);
    const refused = await lateGeneration.finish();
    assert.match(refused, /^HTTP\/1\.1 503 [^]*"code":"shutting_down"/);
    await closing;
    assert.ok(closed);
  });
});

describe('failures inside the server', () => {
  test('an error in the model is a 500 (or an error event) reported to onBug, and the server goes on', async () => {
    const bugs: unknown[] = [];
    const { url } = await serve({ onBug: (error) => bugs.push(error) });
    const forward = loaded.model.forward;
    let calls = 0;
    loaded.model.forward = async function (this: typeof loaded.model, input) {
      if (++calls === 3) throw new Error('kernel exploded');
      return forward.call(this, input);
    };
    try {
      const whole = await post(`${url}/v1/completions`, { prompt: 'boom', max_tokens: 10, temperature: 0 });
      assert.equal(whole.status, 500);
      assert.deepEqual((await whole.json()).error, { message: 'internal server error (reported in the server log)', type: 'server_error', param: null, code: 'internal_error' });
      calls = 0;
      const events = await readEvents(await post(`${url}/v1/completions`, { prompt: 'boom', max_tokens: 10, temperature: 0, stream: true }));
      assert.equal(events.at(-1), '[DONE]');
      assert.equal((events.at(-2) as { error: { type: string } }).error.type, 'server_error');
    } finally {
      loaded.model.forward = forward;
    }
    assert.equal(bugs.length, 2);
    assert.match(String(bugs[0]), /kernel exploded/);
    assert.equal((await post(`${url}/v1/completions`, { prompt: 'fine', max_tokens: 3 })).status, 200);
    assert.equal((await waitForMetrics(url, (m) => metric(m, 'ppd_requests_active') === 0)).includes('ppd_requests_active 0'), true);
  });
});

/**
 * A request half sent on a connection of its own (headers not finished): `finish()` sends the
 * rest and resolves with everything the server answered.
 */
async function halfSent(url: string, requestLine: string, body?: object): Promise<{ finish: () => Promise<string> }> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  await new Promise((resolve) => socket.once('connect', resolve));
  let text = '';
  socket.on('data', (d) => (text += d));
  const answered = new Promise<string>((resolve) => socket.on('close', () => resolve(text)));
  socket.write(`${requestLine} HTTP/1.1\r\nHost: ${hostname}\r\n`);
  const payload = body === undefined ? '' : JSON.stringify(body);
  const rest = body === undefined ? '' : `Content-Type: application/json\r\nContent-Length: ${payload.length}\r\n`;
  return {
    finish: () => {
      socket.write(`${rest}Connection: close\r\n\r\n${payload}`);
      return answered;
    },
  };
}
