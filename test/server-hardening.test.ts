/**
 * The server against hostile or careless input, found by probing it on loopback: a prompt of
 * ~900 KB (refused as too long before it is encoded, while /health keeps answering), values
 * nested thousands of levels deep in a wrongly typed field (a 400, not a 500), `Host` headers
 * that do not name the server (DNS rebinding: 403), API keys no client could send (refused at
 * start), and OpenAI fields the server does not implement (a 400 naming each, unless sent with
 * the value that means "off").
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../src/errors.ts';
import { loadModel, type LoadedModel } from '../src/checkpoint/load.ts';
import { buildServer } from '../src/server/app.ts';
import { post, startServer, writeTinyModel, type RunningServer } from './helpers/tiny-server.ts';

let root: string;
let loaded: LoadedModel;
let server: RunningServer;
let openServer: RunningServer; // allowedHosts: ['*']
let namedServer: RunningServer; // allowedHosts: ['ppd.example']
const bugs: unknown[] = [];

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'ppd-server-hardening-'));
  loaded = await loadModel(writeTinyModel(join(root, 'tiny')), { cacheDir: false, threads: 1 });
  server = await startServer({ loaded, onBug: (e) => bugs.push(e) });
  openServer = await startServer({ loaded, allowedHosts: ['*'] });
  namedServer = await startServer({ loaded, allowedHosts: ['PPD.example.'] });
});

after(async () => {
  await Promise.all([server.app.close(), openServer.app.close(), namedServer.app.close()]);
  await loaded.model.release();
  rmSync(root, { recursive: true, force: true });
  assert.deepEqual(bugs, [], 'no request above may reach onBug');
});

async function errorOf(response: Response, status: number): Promise<{ message: string; param: string | null; code: string | null }> {
  const text = await response.text();
  assert.equal(response.status, status, text);
  return JSON.parse(text).error;
}

test('a ~900 KB prompt is refused as too long at once, and /health answers meanwhile', async () => {
  const huge = post(`${server.url}/v1/completions`, { prompt: 'hello world '.repeat(75_000), max_tokens: 4 }); // 900,000 characters
  const health = await fetch(`${server.url}/health`);
  assert.equal(health.status, 200);
  const error = await errorOf(await huge, 400);
  assert.equal(error.code, 'context_length_exceeded');
  assert.match(error.message, /at least \d+ tokens; the model's context is 256/);
  // The same as chat messages, where the template renders the text first.
  const chat = await errorOf(await post(`${server.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'x'.repeat(900_000) }] }), 400);
  assert.equal(chat.code, 'context_length_exceeded');
});

describe('deep nesting', () => {
  const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

  test('a value nested thousands of levels deep in a wrongly typed field is a 400 naming the field', async () => {
    const bodies: [string, string][] = [
      ['max_tokens', `{"prompt": "a", "max_tokens": ${nested(5_000)}}`],
      ['prompt', `{"prompt": ${nested(100_000)}, "max_tokens": 2}`],
      ['stop', `{"prompt": "a", "stop": ${nested(400_000)}, "max_tokens": 2}`], // 800 KB: as deep as the 1 MiB body allows
    ];
    for (const [field, body] of bodies) {
      const error = await errorOf(await post(`${server.url}/v1/completions`, body), 400);
      assert.equal(error.param, field);
      assert.ok(error.message.length < 300, 'the value is shown cut short');
    }
    const chat = await errorOf(await post(`${server.url}/v1/chat/completions`, `{"messages": [{"role": "user", "content": ${nested(5000)}}]}`), 400);
    assert.equal(chat.param, 'messages[0].content');
  });

  test('deep nesting in an unsupported or unknown field is a 400 too', async () => {
    assert.equal((await errorOf(await post(`${server.url}/v1/completions`, `{"prompt": "a", "logit_bias": {"1": ${nested(5000)}}}`), 400)).param, 'logit_bias');
    assert.equal((await errorOf(await post(`${server.url}/v1/completions`, `{"prompt": "a", "extra": ${nested(5000)}}`), 400)).param, 'extra');
  });
});

describe('Host header (DNS rebinding)', () => {
  /** A GET with a chosen Host header (fetch does not let a caller set one). */
  function getWithHost(url: string, path: string, host: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = httpRequest(`${url}${path}`, { headers: { host } }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  test('a name the server was not given gets 403 on every route; IP addresses and localhost pass', async () => {
    const port = new URL(server.url).port;
    for (const path of ['/v1/models', '/health', '/', '/metrics']) {
      const refused = await getWithHost(server.url, path, `attacker.example:${port}`);
      assert.equal(refused.status, 403, path);
      const error = JSON.parse(refused.body).error;
      assert.equal(error.code, 'host_not_allowed');
      assert.match(error.message, /--allowed-hosts attacker\.example/);
    }
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST.:${port}`, `app.localhost:${port}`, `[::1]:${port}`, '10.1.2.3', `192.168.0.7:${port}`]) {
      assert.equal((await getWithHost(server.url, '/health', host)).status, 200, host);
    }
    for (const host of ['ppd.example', 'localhost.attacker.example', '127.0.0.1.attacker.example', 'bad host', '[::1']) {
      assert.equal((await getWithHost(server.url, '/health', host)).status, 403, host);
    }
  });

  test('allowedHosts adds names (case and a final dot aside); "*" allows any', async () => {
    assert.equal((await getWithHost(namedServer.url, '/health', 'ppd.example:8080')).status, 200);
    assert.equal((await getWithHost(namedServer.url, '/health', 'Ppd.Example')).status, 200);
    assert.equal((await getWithHost(namedServer.url, '/health', 'other.example')).status, 403);
    assert.equal((await getWithHost(openServer.url, '/v1/models', 'anything.example')).status, 200);
  });
});

test('an API key that is empty, holds whitespace or is not visible ASCII is refused when the server is built', async () => {
  for (const apiKey of ['', ' ', 'two words', 'tab\tkey', ' padded', 'newline\n', 'clé']) {
    assert.throws(() => buildServer({ loaded, apiKey }), (e: Error) => e instanceof InputError && /API key/.test(e.message), JSON.stringify(apiKey));
  }
  return buildServer({ loaded, apiKey: 'sk-Only_visible.ASCII~1' }).close();
});

describe('OpenAI fields the server does not implement', () => {
  const completion = (extra: object) => post(`${server.url}/v1/completions`, { prompt: 'a', max_tokens: 2, ...extra });
  const chat = (extra: object) => post(`${server.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'a' }], max_tokens: 2, ...extra });

  test('each, with a value that asks for it, is a 400 naming the field', async () => {
    const cases: [(extra: object) => Promise<Response>, string, unknown][] = [
      [completion, 'logprobs', 2],
      [completion, 'logit_bias', { '65': 10 }],
      [completion, 'frequency_penalty', 0.5],
      [completion, 'presence_penalty', -1],
      [completion, 'echo', true],
      [completion, 'best_of', 3],
      [completion, 'suffix', 'end'],
      [chat, 'logprobs', true],
      [chat, 'top_logprobs', 3],
      [chat, 'tools', [{ type: 'function', function: { name: 'f' } }]],
      [chat, 'tool_choice', 'auto'],
      [chat, 'functions', [{ name: 'f' }]],
      [chat, 'response_format', { type: 'json_object' }],
      [chat, 'store', true],
      [chat, 'reasoning_effort', 'high'],
    ];
    for (const [send, field, value] of cases) {
      const error = await errorOf(await send({ [field]: value }), 400);
      assert.equal(error.param, field);
      assert.equal(error.code, 'unsupported_field');
      assert.match(error.message, /not supported by this server/);
    }
    const named = await errorOf(await post(`${server.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'a', name: 'bob' }] }), 400);
    assert.equal(named.param, 'messages[0].name');
  });

  test('sent with the value that means "off", they are accepted; user is accepted and ignored', async () => {
    const off = { logprobs: null, logit_bias: {}, frequency_penalty: 0, presence_penalty: 0, user: 'u-1' };
    assert.equal((await completion({ ...off, echo: false, best_of: 1, suffix: null })).status, 200);
    const chatOff = { ...off, logprobs: false, top_logprobs: 0, tools: [], tool_choice: 'none', response_format: { type: 'text' }, store: false, service_tier: 'auto' };
    assert.equal((await chat(chatOff)).status, 200);
  });

  test('fields OpenAI does not define are refused by name, at any level', async () => {
    assert.deepEqual(await errorOf(await completion({ repetition_penalty: 1.1 }), 400), {
      message: 'repetition_penalty: unknown field: not part of the OpenAI API this server implements',
      type: 'invalid_request_error',
      param: 'repetition_penalty',
      code: 'unknown_field',
    });
    assert.equal((await errorOf(await completion({ stream: true, stream_options: { include_usage: true, extra: 1 } }), 400)).param, 'stream_options.extra');
    assert.equal((await errorOf(await chat({ messages: [{ role: 'user', content: [{ type: 'text', text: 'a', cache: 1 }] }] }), 400)).param, 'messages[0].content[0].cache');
  });

  test('a "developer" message is the system message', async () => {
    const asSystem = await (await chat({ messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }], temperature: 0, max_tokens: 8 })).json();
    const asDeveloper = await (await chat({ messages: [{ role: 'developer', content: 'Be brief.' }, { role: 'user', content: 'Hi' }], temperature: 0, max_tokens: 8 })).json();
    assert.equal(asDeveloper.choices[0].message.content, asSystem.choices[0].message.content);
    assert.equal(asDeveloper.usage.prompt_tokens, asSystem.usage.prompt_tokens);
  });
});
