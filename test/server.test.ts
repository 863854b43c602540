/**
 * The server's API contract on a tiny random model with an untrained PPD adapter: response and
 * stream shapes (OpenAI's, plus `accepted_tokens` and `decoding`), outputs equal to the same
 * generation run directly, `ppd: false`, stop strings and seeds; every kind of bad request as a
 * 4xx with an OpenAI error object; the API key; the metrics; the chat page's files.
 * Queueing, cancellation, timeouts and shutdown: server-queue.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGeneration } from '../src/generate/request.ts';
import { loadModel, type LoadedModel } from '../src/checkpoint/load.ts';
import type { PpdSetup } from '../src/ppd/setup.ts';
import { BYTE_MODEL_SHAPE } from './helpers/byte-model.ts';
import { metric, post, readEvents, startServer, tinyPpdSetup, writeTinyModel, type RunningServer } from './helpers/tiny-server.ts';

let root: string;
let loaded: LoadedModel;
let ppd: PpdSetup;
let server: RunningServer; // with the adapter
let plainServer: RunningServer; // without
let keyServer: RunningServer; // with an API key

const KEY = 'sk-test-0123456789';
const MODEL_ID = 'tiny';

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'ppd-server-'));
  loaded = await loadModel(writeTinyModel(join(root, MODEL_ID)), { cacheDir: false, threads: 1 });
  ppd = tinyPpdSetup(loaded);
  server = await startServer({ loaded, ppd, bodyLimitBytes: 64 * 1024 });
  plainServer = await startServer({ loaded });
  keyServer = await startServer({ loaded, apiKey: KEY });
});

after(async () => {
  await Promise.all([server.app.close(), plainServer.app.close(), keyServer.app.close()]);
  await loaded.model.release();
  rmSync(root, { recursive: true, force: true });
});

const direct = (prompt: string | { role: string; content: string }[], maxTokens: number, usePpd = true, extra = {}) =>
  startGeneration(loaded, { prompt, maxTokens, sampling: { temperature: 0 }, ppd: usePpd ? ppd : undefined, ...extra }).complete();

/** The error object's exact shape; returns it for further checks. */
async function expectError(response: Response, status: number): Promise<{ message: string; type: string; param: string | null; code: string | null }> {
  const text = await response.text();
  assert.equal(response.status, status, text);
  const body = JSON.parse(text);
  assert.deepEqual(Object.keys(body), ['error']);
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(typeof body.error.message, 'string');
  return body.error;
}

describe('models and health', () => {
  test('GET /v1/models lists the one served model', async () => {
    const body = await (await fetch(`${server.url}/v1/models`)).json();
    assert.equal(body.object, 'list');
    assert.equal(body.data.length, 1);
    assert.deepEqual({ ...body.data[0], created: 0 }, { id: MODEL_ID, object: 'model', created: 0, owned_by: 'ppd', context_length: BYTE_MODEL_SHAPE.max_position_embeddings, ppd: true });
    assert.equal((await (await fetch(`${server.url}/v1/models/${MODEL_ID}`)).json()).id, MODEL_ID);
    assert.equal((await expectError(await fetch(`${server.url}/v1/models/gpt-4`), 404)).code, 'model_not_found');
  });

  test('GET /health reports the model, the decoder and the queue; /health/ready that it takes requests', async () => {
    const body = await (await fetch(`${server.url}/health`)).json();
    // Batching by default: 8 sequences share forwards, 8 more may wait.
    assert.deepEqual(body, { status: 'ok', model: MODEL_ID, ppd: true, auth: false, batching: true, queue: { active: 0, waiting: 0, concurrency: 8, max_waiting: 8 } });
    assert.equal((await (await fetch(`${plainServer.url}/health`)).json()).ppd, false);
    const ready = await fetch(`${server.url}/health/ready`);
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { ...body, status: 'ready' });
  });
});

describe('completions', () => {
  test('a whole completion equals the same generation run directly, with usage and decoding stats', async () => {
    const expected = await direct('The cat sat', 24);
    const response = await post(`${server.url}/v1/completions`, { model: MODEL_ID, prompt: 'The cat sat', max_tokens: 24, temperature: 0 });
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type')!, /^application\/json/);
    const body = await response.json();
    assert.match(body.id, /^cmpl-/);
    assert.equal(body.object, 'text_completion');
    assert.equal(body.model, MODEL_ID);
    assert.ok(Math.abs(body.created - Date.now() / 1000) < 60);
    assert.deepEqual(body.choices, [{ index: 0, text: expected.text, logprobs: null, finish_reason: 'length' }]);
    assert.deepEqual(body.usage, { prompt_tokens: expected.stats.promptTokens, completion_tokens: 24, total_tokens: expected.stats.promptTokens + 24 });
    assert.equal(body.decoding.mode, 'ppd');
    assert.equal(body.decoding.steps, expected.stats.steps);
    assert.ok(body.decoding.accepted_per_step >= 1 && body.decoding.tokens_per_second > 0);
  });

  test('ppd: false decodes plainly with the same greedy text; a server without an adapter refuses ppd: true', async () => {
    const withPpd = await (await post(`${server.url}/v1/completions`, { prompt: 'Hello there', max_tokens: 30, temperature: 0 })).json();
    const plain = await (await post(`${server.url}/v1/completions`, { prompt: 'Hello there', max_tokens: 30, temperature: 0, ppd: false })).json();
    assert.equal(plain.decoding.mode, 'plain');
    assert.equal(plain.decoding.accepted_per_step, 1);
    assert.equal(plain.decoding.steps, 30);
    assert.equal(plain.choices[0].text, withPpd.choices[0].text);
    const refused = await expectError(await post(`${plainServer.url}/v1/completions`, { prompt: 'Hi', ppd: true }), 400);
    assert.equal(refused.param, 'ppd');
    assert.equal((await (await post(`${plainServer.url}/v1/completions`, { prompt: 'Hi', max_tokens: 3 })).json()).decoding.mode, 'plain');
  });

  test('a streamed completion: SSE chunks whose texts and accepted tokens add up to the whole response', async () => {
    const request = { prompt: 'Stream this', max_tokens: 40, temperature: 0 };
    const whole = await (await post(`${server.url}/v1/completions`, request)).json();
    const response = await post(`${server.url}/v1/completions`, { ...request, stream: true });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    const events = await readEvents(response);
    assert.equal(events.at(-1), '[DONE]');
    const chunks = events.slice(0, -1) as Record<string, any>[];
    const last = chunks.at(-1)!;
    const steps = chunks.slice(0, -1);
    for (const c of chunks) {
      assert.equal(c.object, 'text_completion');
      assert.equal(c.id, chunks[0]!.id);
      assert.equal(c.choices.length, 1);
    }
    assert.ok(steps.every((c) => c.choices[0].finish_reason === null && Number.isInteger(c.accepted_tokens) && c.accepted_tokens >= 0));
    assert.equal(steps.map((c) => c.choices[0].text).join(''), whole.choices[0].text);
    assert.equal(steps.reduce((n, c) => n + c.accepted_tokens, 0), whole.usage.completion_tokens);
    assert.equal(last.choices[0].finish_reason, 'length');
    assert.deepEqual({ ...last.decoding, seconds: 0, prefill_seconds: 0, tokens_per_second: 0 }, { ...whole.decoding, seconds: 0, prefill_seconds: 0, tokens_per_second: 0 });
    assert.equal(last.usage, undefined, 'usage only with stream_options.include_usage');
  });

  test('a stop string ends the text before it with finish_reason stop; seeds make sampling reproducible', async () => {
    const reference = await direct('abc', 30);
    const stop = reference.text.slice(4, 6);
    const body = await (await post(`${server.url}/v1/completions`, { prompt: 'abc', max_tokens: 30, temperature: 0, stop })).json();
    assert.equal(body.choices[0].text, reference.text.slice(0, reference.text.indexOf(stop)));
    assert.equal(body.choices[0].finish_reason, 'stop');
    const sample = async (seed: number) => (await (await post(`${server.url}/v1/completions`, { prompt: 'Sample', max_tokens: 20, temperature: 1.5, seed })).json()).choices[0].text;
    assert.equal(await sample(7), await sample(7));
    assert.notEqual(await sample(7), await sample(8));
  });
});

describe('chat completions', () => {
  const messages = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi!' },
  ];

  test('a whole chat completion equals the templated generation run directly', async () => {
    const expected = await direct(messages, 16);
    const body = await (await post(`${server.url}/v1/chat/completions`, { model: MODEL_ID, messages, max_tokens: 16, temperature: 0 })).json();
    assert.match(body.id, /^chatcmpl-/);
    assert.equal(body.object, 'chat.completion');
    assert.deepEqual(body.choices, [{ index: 0, message: { role: 'assistant', content: expected.text }, logprobs: null, finish_reason: 'length' }]);
    assert.equal(body.usage.prompt_tokens, expected.stats.promptTokens);
    // Content given as text parts is the same message; max_completion_tokens is max_tokens.
    const parts = [messages[0], { role: 'user', content: [{ type: 'text', text: 'Hi' }, { type: 'text', text: '!' }] }];
    const same = await (await post(`${server.url}/v1/chat/completions`, { messages: parts, max_completion_tokens: 16, temperature: 0 })).json();
    assert.equal(same.choices[0].message.content, expected.text);
  });

  test('a streamed chat: role first, then content deltas, the finish chunk, usage when asked, [DONE]', async () => {
    const whole = await (await post(`${server.url}/v1/chat/completions`, { messages, max_tokens: 25, temperature: 0 })).json();
    const events = await readEvents(await post(`${server.url}/v1/chat/completions`, { messages, max_tokens: 25, temperature: 0, stream: true, stream_options: { include_usage: true } }));
    assert.equal(events.at(-1), '[DONE]');
    const chunks = events.slice(0, -1) as Record<string, any>[];
    assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
    assert.deepEqual(chunks[0]!.choices[0].delta, { role: 'assistant', content: '' });
    const usageChunk = chunks.at(-1)!;
    assert.deepEqual(usageChunk.choices, []);
    assert.deepEqual(usageChunk.usage, whole.usage);
    const finish = chunks.at(-2)!;
    assert.deepEqual(finish.choices[0].delta, {});
    assert.equal(finish.choices[0].finish_reason, 'length');
    const deltas = chunks.slice(1, -2);
    assert.equal(deltas.map((c) => c.choices[0].delta.content).join(''), whole.choices[0].message.content);
    assert.equal(deltas.reduce((n, c) => n + c.accepted_tokens, 0), 25);
  });
});

describe('bad requests', () => {
  const completion = (body: unknown, server_ = server) => post(`${server_.url}/v1/completions`, body);
  const chat = (body: unknown) => post(`${server.url}/v1/chat/completions`, body);
  const cases: [string, () => Promise<Response>, number, string | null, RegExp][] = [
    ['malformed JSON', () => completion('{"prompt": "a", '), 400, null, /not valid JSON/],
    ['a JSON array body', () => completion([1, 2]), 400, null, /JSON object/],
    ['an empty body', () => completion(''), 400, null, /empty/],
    ['no prompt', () => completion({ max_tokens: 4 }), 400, 'prompt', /must be a string/],
    ['a prompt of the wrong type', () => completion({ prompt: 42 }), 400, 'prompt', /got 42/],
    ['an empty prompt', () => completion({ prompt: '' }), 400, 'prompt', /must not be empty/],
    ['a batch of prompts', () => completion({ prompt: ['a', 'b'] }), 400, 'prompt', /not supported/],
    ['max_tokens 0', () => completion({ prompt: 'a', max_tokens: 0 }), 400, 'max_tokens', /from 1 to 256/],
    ['fractional max_tokens', () => completion({ prompt: 'a', max_tokens: 2.5 }), 400, 'max_tokens', /integer/],
    ['absurd max_tokens', () => completion({ prompt: 'a', max_tokens: 1e12 }), 400, 'max_tokens', /got 1000000000000/],
    ['max_tokens as a string', () => completion({ prompt: 'a', max_tokens: '10' }), 400, 'max_tokens', /got "10"/],
    ['negative temperature', () => completion({ prompt: 'a', temperature: -0.5 }), 400, 'temperature', /from 0 to 2/],
    ['absurd temperature', () => completion({ prompt: 'a', temperature: 1e308 }), 400, 'temperature', /from 0 to 2/],
    ['temperature as a string', () => completion({ prompt: 'a', temperature: 'hot' }), 400, 'temperature', /"hot"/],
    ['top_p 0', () => completion({ prompt: 'a', top_p: 0 }), 400, 'top_p', /\(0, 1\]/],
    ['negative top_k', () => completion({ prompt: 'a', top_k: -1 }), 400, 'top_k', /integer/],
    ['an unsafe seed', () => completion({ prompt: 'a', seed: 2 ** 60 }), 400, 'seed', /integer/],
    ['an empty stop string', () => completion({ prompt: 'a', stop: '' }), 400, 'stop', /non-empty/],
    ['five stop strings', () => completion({ prompt: 'a', stop: ['a', 'b', 'c', 'd', 'e'] }), 400, 'stop', /1 to 4/],
    ['n = 2', () => completion({ prompt: 'a', n: 2 }), 400, 'n', /n = 1/],
    ['stream as a string', () => completion({ prompt: 'a', stream: 'yes' }), 400, 'stream', /true or false/],
    ['ppd as a string', () => completion({ prompt: 'a', ppd: 'no' }), 400, 'ppd', /true or false/],
    ['a prompt longer than the context', () => completion({ prompt: 'x'.repeat(300) }), 400, null, /context is 256/],
    ['an unknown model', () => completion({ model: 'gpt-4', prompt: 'a' }), 404, 'model', /serves "tiny"/],
    ['no messages', () => chat({ max_tokens: 4 }), 400, 'messages', /array of messages/],
    ['an empty chat', () => chat({ messages: [] }), 400, 'messages', /at least one/],
    ['an unknown role', () => chat({ messages: [{ role: 'robot', content: 'a' }] }), 400, 'messages[0].role', /"system", "developer", "user" or "assistant"/],
    ['content of the wrong type', () => chat({ messages: [{ role: 'user', content: 5 }] }), 400, 'messages[0].content', /got 5/],
    ['an image part', () => chat({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }] }), 400, 'messages[0].content', /text parts/],
    ['max_completion_tokens 0', () => chat({ messages: [{ role: 'user', content: 'a' }], max_completion_tokens: 0 }), 400, 'max_completion_tokens', /from 1 to 256/],
    ['fractional max_completion_tokens', () => chat({ messages: [{ role: 'user', content: 'a' }], max_completion_tokens: 1.5 }), 400, 'max_completion_tokens', /integer/],
    ['max_completion_tokens as a string', () => chat({ messages: [{ role: 'user', content: 'a' }], max_completion_tokens: '8' }), 400, 'max_completion_tokens', /got "8"/],
    ['a body over the size limit', () => completion({ prompt: 'a'.repeat(100_000) }), 413, null, /larger than/],
    ['a body that is not JSON', () => fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hi' }), 415, null, /must be JSON/],
    ['a __proto__ key', () => completion('{"prompt": "a", "__proto__": {"polluted": 1}}'), 400, null, /not valid JSON/],
  ];
  for (const [what, send, status, param, message] of cases) {
    test(`${what} → ${status}`, async () => {
      const error = await expectError(await send(), status);
      assert.equal(error.param, param);
      assert.match(error.message, message);
      assert.equal(error.type, status === 404 ? 'not_found_error' : 'invalid_request_error');
    });
  }

  test('unknown routes are 404 error objects, and the server still answers afterwards', async () => {
    assert.equal((await expectError(await fetch(`${server.url}/v1/engines`), 404)).type, 'not_found_error');
    assert.equal((await expectError(await fetch(`${server.url}/v1/completions`), 404)).type, 'not_found_error');
    assert.equal((await post(`${server.url}/v1/completions`, { prompt: 'still here', max_tokens: 2 })).status, 200);
  });
});

describe('API key', () => {
  const auth = (key: string) => ({ authorization: `Bearer ${key}` });

  test('/v1/* and /metrics need the bearer key; /health and the page do not', async () => {
    for (const headers of [{}, auth('wrong'), auth(KEY + 'x'), { authorization: KEY }, { authorization: `Basic ${KEY}` }]) {
      const response = await post(`${keyServer.url}/v1/completions`, { prompt: 'a', max_tokens: 2 }, headers);
      const error = await expectError(response, 401);
      assert.equal(error.type, 'authentication_error');
      assert.equal(error.code, 'invalid_api_key');
      assert.equal(response.headers.get('www-authenticate'), 'Bearer');
    }
    await expectError(await fetch(`${keyServer.url}/v1/models`), 401);
    await expectError(await fetch(`${keyServer.url}/metrics`), 401);
    assert.equal((await post(`${keyServer.url}/v1/completions`, { prompt: 'a', max_tokens: 2 }, auth(KEY))).status, 200);
    assert.equal((await fetch(`${keyServer.url}/v1/models`, { headers: { authorization: `bearer ${KEY}` } })).status, 200);
    assert.equal((await fetch(`${keyServer.url}/metrics`, { headers: auth(KEY) })).status, 200);
    assert.equal((await (await fetch(`${keyServer.url}/health`)).json()).auth, true);
    assert.equal((await fetch(`${keyServer.url}/`)).status, 200);
  });

  test('the key is checked before the body: a bad body without the key is still 401', async () => {
    await expectError(await post(`${keyServer.url}/v1/completions`, '{not json'), 401);
  });
});

describe('batching', () => {
  test('concurrent requests share forwards and each gets the text it gets alone; the metrics count sequences and rows per forward', async () => {
    const batched = await startServer({ loaded, ppd });
    const alone = await startServer({ loaded, ppd, batching: false });
    try {
      const requests = Array.from({ length: 8 }, (_, i) => ({
        prompt: ['The cat sat', 'Hello there', 'abab abab abab', 'Once upon a time'][i % 4]! + ' '.repeat(i),
        max_tokens: 16 + i,
        temperature: i < 6 ? 0 : 1,
        seed: i,
        ppd: i % 3 !== 0,
        stream: i % 2 === 0,
      }));
      const text = async (url: string, body: (typeof requests)[number]) => {
        const response = await post(`${url}/v1/completions`, body);
        assert.equal(response.status, 200);
        if (!body.stream) return (await response.json()).choices[0].text as string;
        const events = await readEvents(response);
        return events.slice(0, -1).map((e) => (e as Record<string, any>).choices[0]?.text ?? '').join('');
      };
      const expected = [];
      for (const body of requests) expected.push(await text(alone.url, body));
      const got = await Promise.all(requests.map((body) => text(batched.url, body)));
      assert.deepEqual(got, expected);
      const metrics = await (await fetch(`${batched.url}/metrics`)).text();
      const forwards = metric(metrics, 'ppd_batch_sequences_count')!;
      assert.ok(forwards > 0 && metric(metrics, 'ppd_batch_sequences_sum')! > forwards, 'some forwards carried several sequences');
      assert.ok(metric(metrics, 'ppd_forward_rows_sum')! >= metric(metrics, 'ppd_batch_sequences_sum')!);
      assert.equal(metric(metrics, 'ppd_batch_sequences_count'), metric(metrics, 'ppd_forward_rows_count'));
      assert.equal(metric(await (await fetch(`${alone.url}/metrics`)).text(), 'ppd_batch_sequences_count'), 0, 'no batch without batching');
    } finally {
      await Promise.all([batched.app.close(), alone.app.close()]);
    }
  });
});

describe('metrics', () => {
  test('/metrics counts requests, tokens, steps, accepted tokens per step and the queue, in Prometheus text', async () => {
    const metricsServer = await startServer({ loaded, ppd });
    try {
      const url = metricsServer.url;
      const a = await (await post(`${url}/v1/completions`, { prompt: 'one', max_tokens: 12, temperature: 0 })).json();
      const b = await (await post(`${url}/v1/completions`, { prompt: 'two', max_tokens: 9, temperature: 0, ppd: false })).json();
      await post(`${url}/v1/completions`, { prompt: 42 });
      const response = await fetch(`${url}/metrics`);
      assert.match(response.headers.get('content-type')!, /^text\/plain; version=0\.0\.4/);
      const text = await response.text();
      assert.match(text, /# TYPE ppd_generated_tokens_total counter/);
      assert.equal(metric(text, 'ppd_http_requests_total', 'route="/v1/completions",status="200"'), 2);
      assert.equal(metric(text, 'ppd_http_requests_total', 'route="/v1/completions",status="400"'), 1);
      assert.equal(metric(text, 'ppd_generated_tokens_total', 'mode="ppd"'), 12);
      assert.equal(metric(text, 'ppd_generated_tokens_total', 'mode="plain"'), 9);
      assert.equal(metric(text, 'ppd_prompt_tokens_total', 'mode="ppd"'), a.usage.prompt_tokens);
      assert.equal(metric(text, 'ppd_decoding_steps_total', 'mode="ppd"'), a.decoding.steps);
      assert.equal(metric(text, 'ppd_decoding_steps_total', 'mode="plain"'), b.decoding.steps);
      assert.equal(metric(text, 'ppd_generations_total', 'mode="ppd",finish_reason="length"'), 1);
      assert.ok(Math.abs(metric(text, 'ppd_accepted_tokens_per_step', 'mode="ppd"')! - 12 / a.decoding.steps) < 1e-9);
      assert.equal(metric(text, 'ppd_accepted_tokens_per_step', 'mode="plain"'), 1);
      assert.ok(metric(text, 'ppd_tokens_per_second', 'mode="ppd"')! > 0);
      assert.equal(metric(text, 'ppd_queue_depth'), 0);
      assert.equal(metric(text, 'ppd_requests_active'), 0);
      assert.equal(metric(text, 'ppd_prompts_encoded_total', 'where="inline"'), 2, 'short prompts are encoded where they arrive');
      assert.equal(metric(text, 'ppd_prompts_encoded_total', 'where="thread"'), undefined);
      assert.ok(metric(text, 'process_resident_memory_bytes')! > 0);
    } finally {
      await metricsServer.app.close();
    }
  });
});

describe('chat page', () => {
  test('/, /chat.js and /chat.css are served with a same-origin content security policy', async () => {
    const page = await fetch(`${server.url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type')!, /^text\/html/);
    assert.match(page.headers.get('content-security-policy')!, /default-src 'self'/);
    const html = await page.text();
    assert.match(html, /<script type="module" src="\/chat.js">/);
    assert.match((await fetch(`${server.url}/chat.js`)).headers.get('content-type')!, /javascript/);
    assert.match((await fetch(`${server.url}/chat.css`)).headers.get('content-type')!, /text\/css/);
  });

  test('the page fetches nothing from elsewhere', () => {
    const dir = join(import.meta.dirname, '..', 'src', 'server', 'page');
    for (const name of readdirSync(dir)) {
      assert.doesNotMatch(readFileSync(join(dir, name), 'utf8'), /(https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}/i, name);
    }
  });
});
