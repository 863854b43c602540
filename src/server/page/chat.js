// ppd's chat page: streams /v1/chat/completions and colours the text by decoding step.
//
// Each stream chunk carries `accepted_tokens`, the tokens its decoding step accepted; its text
// becomes one <span class="run nK" data-tokens="K"> (K capped at 5 for the colour). The live
// figures are measured here from the chunks' arrival; the last chunk's `decoding` object gives
// the server's own figures, shown under the reply when it ends. Plain browser JavaScript.

const $ = (id) => document.getElementById(id);
const log = $('log');
const form = $('form');
const input = $('input');
const ppdSwitch = $('ppd');
const keyInput = $('key');

/** The conversation so far, as the API wants it. */
const history = [];
/** The running request's AbortController, while one runs. */
let running = null;

keyInput.value = sessionStorage.getItem('ppd-api-key') ?? '';
keyInput.addEventListener('change', () => sessionStorage.setItem('ppd-api-key', keyInput.value));

async function init() {
  try {
    const health = await (await fetch('/health')).json();
    $('model').textContent = health.model;
    $('key-label').hidden = !health.auth;
    if (!health.ppd) {
      ppdSwitch.checked = false;
      ppdSwitch.disabled = true;
      $('ppd-label').title = 'this server was started without a PPD adapter';
    }
    setStatus('ready');
  } catch (error) {
    setStatus(`cannot reach the server: ${error.message}`);
  }
}

function setStatus(text) {
  $('status').textContent = text;
}

function addMessage(role, text = '') {
  const div = document.createElement('div');
  div.className = `message ${role}`;
  div.textContent = text;
  log.append(div);
  log.scrollTop = log.scrollHeight;
  return div;
}

function showStats(tokens, steps, seconds) {
  $('tokens').textContent = String(tokens);
  $('steps').textContent = String(steps);
  $('tps').textContent = seconds > 0 ? (tokens / seconds).toFixed(1) : '–';
  $('tau').textContent = steps > 0 ? (tokens / steps).toFixed(2) : '–';
}

/**
 * Draws a reply's steps into `bubble`, each as one coloured run, at most every DRAW_INTERVAL_MS
 * rather than at every step: each draw is a layout and a paint on the page's main thread, which
 * on a small machine shares the cores with the server's engine (measured: docs/ARCHITECTURE.md,
 * "In the browser"). `flush` draws what is pending now.
 */
const DRAW_INTERVAL_MS = 100;
function stepDrawer(bubble, afterDraw) {
  let pending = [];
  let timer = 0;
  const flush = () => {
    clearTimeout(timer);
    timer = 0;
    if (pending.length > 0) {
      bubble.append(...pending.map(({ piece, accepted }) => {
        const run = document.createElement('span');
        run.className = `run n${Math.min(Math.max(accepted, 1), 5)}`;
        run.dataset.tokens = String(accepted);
        run.title = `${accepted} token${accepted === 1 ? '' : 's'} in one step`;
        run.textContent = piece;
        return run;
      }));
      pending = [];
      log.scrollTop = log.scrollHeight;
    }
    afterDraw();
  };
  const add = (piece, accepted) => {
    if (piece !== '') pending.push({ piece, accepted });
    if (timer === 0) timer = setTimeout(flush, DRAW_INTERVAL_MS);
  };
  return { add, flush };
}

/** Yields the JSON objects of a server-sent event stream until `[DONE]`. */
async function* events(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split('\n')) {
        if (!line.startsWith('data: ')) continue;
        const data = line.slice(6);
        if (data === '[DONE]') return;
        yield JSON.parse(data);
      }
    }
  }
}

async function send(text) {
  history.push({ role: 'user', content: text });
  addMessage('user', text);
  const bubble = addMessage('assistant');
  bubble.dataset.state = 'streaming';
  const controller = new AbortController();
  running = controller;
  $('send').disabled = true;
  $('stop').disabled = false;
  setStatus('waiting for the model…');
  showStats(0, 0, 0);

  const headers = { 'content-type': 'application/json' };
  if (keyInput.value) headers.authorization = `Bearer ${keyInput.value}`;
  const body = {
    messages: history,
    stream: true,
    temperature: Number($('temperature').value),
    max_tokens: Number($('max-tokens').value),
    ppd: ppdSwitch.checked,
  };
  const start = performance.now();
  let tokens = 0;
  let steps = 0;
  let reply = '';
  const drawer = stepDrawer(bubble, () => showStats(tokens, steps, (performance.now() - start) / 1000));
  try {
    const response = await fetch('/v1/chat/completions', { method: 'POST', headers, body: JSON.stringify(body), signal: controller.signal });
    if (!response.ok) {
      const error = await response.json().catch(() => ({ error: { message: response.statusText } }));
      throw new Error(`${response.status}: ${error.error?.message ?? response.statusText}`);
    }
    setStatus('generating…');
    for await (const chunk of events(response.body)) {
      if (chunk.error) throw new Error(chunk.error.message);
      const choice = chunk.choices?.[0];
      const piece = choice?.delta?.content ?? '';
      const accepted = chunk.accepted_tokens ?? 0;
      if (accepted > 0) {
        tokens += accepted;
        steps += 1;
      }
      reply += piece;
      drawer.add(piece, accepted);
      if (chunk.decoding) {
        drawer.flush();
        const d = chunk.decoding;
        const meta = document.createElement('span');
        meta.className = 'meta';
        meta.textContent = `${d.mode === 'ppd' ? 'PPD' : 'plain'} · ${d.tokens_per_second.toFixed(1)} tokens/s · ${d.accepted_per_step.toFixed(2)} tokens/step · ${d.steps} steps · ${choice.finish_reason}`;
        bubble.append(meta);
      }
    }
    drawer.flush();
    history.push({ role: 'assistant', content: reply });
    setStatus('done');
  } catch (error) {
    drawer.flush(); // what arrived before the stop or the error
    history.pop(); // the user's turn got no reply; it can be sent again
    if (error.name === 'AbortError') {
      const meta = document.createElement('span');
      meta.className = 'meta';
      meta.textContent = 'stopped';
      bubble.append(meta);
      setStatus('stopped');
    }
    else {
      if (bubble.childElementCount === 0) bubble.remove();
      addMessage('error', error.message);
      setStatus('failed');
    }
  } finally {
    bubble.dataset.state = 'done';
    running = null;
    $('send').disabled = false;
    $('stop').disabled = true;
  }
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (text === '' || running) return;
  input.value = '';
  send(text);
});
input.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey) {
    event.preventDefault();
    form.requestSubmit();
  }
});
$('stop').addEventListener('click', () => running?.abort());
$('clear').addEventListener('click', () => {
  running?.abort();
  history.length = 0;
  log.replaceChildren();
  showStats(0, 0, 0);
  setStatus('ready');
});

init();
