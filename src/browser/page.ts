/**
 * ppd's browser page (main thread): the controls, the loading bar and the output; the engine
 * itself runs in a Web Worker (worker.ts), so the page stays responsive while a forward runs.
 *
 * Query parameters preset the controls (for links, tests and bench:browser): provider
 * (auto|wasm|webgpu), threads, ppd (0|1), prompt_tokens (0|1), lookup; eos=0 runs every generation to max tokens,
 * past end-of-sequence (bench:browser times generations of one length, as bench:ppd does).
 */
import type { ExecutionProvider, FromWorker, ModelInfo, ModelSource, ToWorker, TreesInfo } from './protocol.ts';

const $ = <T extends HTMLElement = HTMLInputElement>(id: string) => document.getElementById(id) as T;
const log = $<HTMLElement>('log');
const input = $<HTMLTextAreaElement>('input');
const ppdSwitch = $('ppd');
const params = new URLSearchParams(location.search);

let worker: Worker | undefined;
let model: ModelInfo | undefined;
/** The output of the running generation, while one runs. */
let bubble: HTMLElement | undefined;
let live = { tokens: 0, steps: 0, start: 0, first: 0 };

const isolated = globalThis.crossOriginIsolated === true;
const cores = navigator.hardwareConcurrency || 1;

function presetControls(): void {
  $<HTMLSelectElement>('provider').value = params.get('provider') ?? 'auto';
  $('threads').value = params.get('threads') ?? String(isolated ? Math.min(cores, 8) : 1);
  $('threads').max = String(isolated ? Math.max(cores, 1) : 1);
  $('threads').disabled = !isolated;
  if (params.has('ppd')) ppdSwitch.checked = params.get('ppd') === '1';
  if (params.has('lookup')) $('lookup').value = params.get('lookup')!;
  if (params.has('prompt_tokens')) $('prompt-tokens').checked = params.get('prompt_tokens') === '1';
}

/** WebGPU when the browser has it and gives an adapter; WebAssembly otherwise. */
async function chosenProvider(): Promise<{ provider: ExecutionProvider; why: string }> {
  const choice = $<HTMLSelectElement>('provider').value;
  if (choice === 'wasm' || choice === 'webgpu') return { provider: choice, why: 'chosen' };
  const gpu = (navigator as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  if (!gpu) return { provider: 'wasm', why: 'auto: this browser has no WebGPU' };
  const adapter = await gpu.requestAdapter().catch(() => null);
  return adapter ? { provider: 'webgpu', why: 'auto: WebGPU adapter found' } : { provider: 'wasm', why: 'auto: no WebGPU adapter' };
}

/** The model shown: the manifest's until the user picks files. */
let current: ModelSource = { kind: 'manifest', url: 'manifest.json' };

function open(source: ModelSource): void {
  current = source;
  void startWorker(source);
}

/** Starts a fresh worker on `source` (thread count and provider are fixed per worker). */
async function startWorker(source: ModelSource): Promise<void> {
  worker?.terminate();
  model = undefined;
  setState('loading', 'loading');
  $<HTMLButtonElement>('send').disabled = true;
  $('loading').hidden = false;
  const { provider, why } = await chosenProvider();
  const threads = provider === 'wasm' ? Math.max(1, Number($('threads').value) || 1) : 1;
  $('runtime').replaceChildren(`provider: ${provider === 'webgpu' ? 'WebGPU' : 'WebAssembly'} (${why})`);
  if (!isolated) {
    const warn = document.createElement('span');
    warn.className = 'warn';
    warn.textContent = ' · 1 thread: this page is not cross-origin isolated (its server sends no COOP/COEP headers), so WebAssembly cannot use threads';
    $('runtime').append(warn);
  }
  if (source.kind === 'manifest') {
    // A server started with --api-key wants it for the model's files: ask for it.
    const manifest = (await (await fetch(source.url)).json().catch(() => ({}))) as { auth?: boolean };
    $('key-label').hidden = manifest.auth !== true;
    source = { ...source, apiKey: $('key').value || undefined };
  }
  worker = new Worker(new URL('worker.js', location.href), { type: 'module' });
  worker.onmessage = (event: MessageEvent<FromWorker>) => onMessage(event.data);
  worker.onerror = (event) => showError(`the worker failed: ${event.message}`);
  send({ type: 'load', source, provider, threads, wasmPaths: new URL('ort/', location.href).href });
}

let logitsWaiting: ((logits: Float32Array) => void) | undefined;

/**
 * For parity checks (the browser test): the next-token logits after `ids`, computed in the
 * worker by the same prefill as generation. Not part of the page's UI.
 */
(globalThis as { ppdLogits?: (ids: number[]) => Promise<number[]> }).ppdLogits = (ids) =>
  new Promise((resolve) => {
    logitsWaiting = (logits) => resolve(Array.from(logits));
    send({ type: 'logits', ids });
  });

function send(message: ToWorker): void {
  worker?.postMessage(message);
}

function onMessage(message: FromWorker): void {
  switch (message.type) {
    case 'progress': {
      const bar = $<HTMLProgressElement>('progress');
      if (message.total > 1) bar.value = message.done / message.total;
      else bar.removeAttribute('value'); // a stage of unknown length
      $('stage').textContent = message.stage;
      break;
    }
    case 'ready':
      model = message.model;
      onReady(message.model);
      break;
    case 'piece':
      onPiece(message.text, message.ids);
      break;
    case 'done':
      onDone(message);
      break;
    case 'logits':
      logitsWaiting?.(message.logits);
      logitsWaiting = undefined;
      break;
    case 'error':
      showError(message.message);
      break;
  }
}

function onReady(info: ModelInfo): void {
  $('loading').hidden = true;
  $('model').textContent = `${info.name} (${info.summary})`;
  const graph = info.graph === 'cached' ? 'compiled graph from the cache' : 'graph compiled';
  $('runtime').prepend(`${info.runtime} · ${graph} · loaded in ${info.loadSeconds.toFixed(1)} s · ready ${(performance.now() / 1000).toFixed(1)} s after opening the page · `);
  $('runtime').dataset.graph = info.graph;
  $('runtime').dataset.readySeconds = String(performance.now() / 1000); // since the page was opened
  $('chat-label').hidden = !info.hasChatTemplate;
  ppdSwitch.disabled = info.ppd === undefined;
  $('prompt-tokens').disabled = info.ppd === undefined;
  $('ppd-label').title = info.ppd ? `${info.ppd.promptTokens} prompt tokens, trees ${info.ppd.trees}` : 'this model has no PPD adapter';
  if (!info.ppd) ppdSwitch.checked = false;
  else if (!params.has('lookup')) $('lookup').value = String(info.ppd.lookup);
  $<HTMLButtonElement>('send').disabled = false;
  setState('ready', 'ready');
}

function generate(prompt: string): void {
  if (!model || bubble) return;
  bubble = document.createElement('div');
  bubble.className = 'message assistant';
  bubble.dataset.state = 'streaming';
  const shown = document.createElement('span');
  shown.className = 'prompt';
  shown.textContent = prompt;
  bubble.append(shown);
  log.append(bubble);
  live = { tokens: 0, steps: 0, start: performance.now(), first: 0 };
  showStats();
  $<HTMLButtonElement>('send').disabled = true;
  $<HTMLButtonElement>('stop').disabled = false;
  setState('generating', 'generating…');
  send({
    type: 'generate',
    prompt,
    chat: $('chat').checked && !$('chat-label').hidden,
    maxTokens: Number($('max-tokens').value),
    ppd: ppdSwitch.checked && !ppdSwitch.disabled,
    promptTokens: $('prompt-tokens').checked,
    lookup: Number($('lookup').value),
    temperature: Number($('temperature').value),
    seed: 0,
    ignoreEos: params.get('eos') === '0',
  });
}

/** One decoding step's accepted tokens: counted now, drawn with the steps after it (drawPieces). */
function onPiece(text: string, ids: number[]): void {
  if (!bubble) return;
  if (ids.length > 0) {
    if (live.steps === 0) live.first = performance.now();
    live.tokens += ids.length;
    live.steps += 1;
  }
  if (text !== '') pending.push({ text, tokens: ids.length });
  if (!drawScheduled) {
    drawScheduled = true;
    setTimeout(drawPieces, DRAW_INTERVAL_MS);
  }
}

/**
 * The page draws the steps received at most every DRAW_INTERVAL_MS, not once per step: each draw
 * is a layout and a paint on the page's main thread, on a core the engine's threads want
 * (measured: docs/ARCHITECTURE.md, "In the browser").
 */
const DRAW_INTERVAL_MS = 100;
/** Steps received but not drawn yet. */
let pending: { text: string; tokens: number }[] = [];
let drawScheduled = false;

/** Draws the pending steps, each as one run coloured by its number of tokens (as the chat page does). */
function drawPieces(): void {
  drawScheduled = false;
  if (bubble && pending.length > 0) {
    const runs = pending.map(({ text, tokens }) => {
      const run = document.createElement('span');
      run.className = `run n${Math.min(Math.max(tokens, 1), 5)}`;
      run.dataset.tokens = String(tokens);
      run.title = `${tokens} token${tokens === 1 ? '' : 's'} in one step`;
      run.textContent = text;
      return run;
    });
    bubble.append(...runs);
    log.scrollTop = log.scrollHeight;
  }
  pending = [];
  showStats();
}

function onDone(done: Extract<FromWorker, { type: 'done' }>): void {
  if (!bubble) return;
  drawPieces(); // the last steps, before the summary
  const s = done.stats;
  const meta = document.createElement('span');
  meta.className = 'meta';
  meta.textContent = `${done.mode === 'ppd' ? `PPD${done.trees ? ` (${treesText(done.trees)})` : ''}` : 'plain'} · ${s.tokensPerSecond.toFixed(1)} tokens/s · ${s.tau.toFixed(2)} tokens/step · ${s.steps} steps · ${s.finishReason}`;
  bubble.append(meta);
  // The outcome as data, for whoever reads the page (the browser test, bench:browser).
  bubble.dataset.ids = JSON.stringify(done.ids);
  bubble.dataset.mode = done.mode;
  if (done.trees) bubble.dataset.trees = JSON.stringify(done.trees);
  bubble.dataset.stats = JSON.stringify({ ...s, firstTokenSeconds: live.first > 0 ? (live.first - live.start) / 1000 : null });
  bubble.dataset.state = 'done';
  finishRun(s.finishReason === 'aborted' ? 'stopped' : 'done');
}

/** How the trees of a PPD generation were chosen, in a few words. */
function treesText(trees: TreesInfo): string {
  const fastest = trees.fastest ? `; best predicted ${trees.fastest.speedup.toFixed(2)}× at ${trees.fastest.n} rows` : '';
  if (trees.source === 'file') return `trees of up to ${trees.rows} rows from the adapter`;
  return trees.rows === 1 ? `no prompt-token tree pays on this page${fastest}: context lookup alone` : `trees of up to ${trees.rows} rows sized for this page${fastest}`;
}

function finishRun(state: string): void {
  bubble = undefined;
  $<HTMLButtonElement>('send').disabled = model === undefined;
  $<HTMLButtonElement>('stop').disabled = true;
  setState(state, state);
}

function showStats(): void {
  const seconds = (performance.now() - live.start) / 1000;
  $('tokens').textContent = String(live.tokens);
  $('steps').textContent = String(live.steps);
  $('tps').textContent = live.tokens > 0 && seconds > 0 ? (live.tokens / seconds).toFixed(1) : '–';
  $('tau').textContent = live.steps > 0 ? (live.tokens / live.steps).toFixed(2) : '–';
  $('first').textContent = live.first > 0 ? ((live.first - live.start) / 1000).toFixed(2) : '–';
}

function showError(text: string): void {
  if (bubble) drawPieces(); // the steps that arrived before the error, as they would have been drawn
  const div = document.createElement('div');
  div.className = 'message error';
  div.textContent = `error: ${text}`;
  log.append(div);
  log.scrollTop = log.scrollHeight;
  $('loading').hidden = true;
  if (bubble) {
    bubble.dataset.state = 'done';
    finishRun('failed');
  } else setState(model ? 'ready' : 'error', model ? 'ready' : 'failed');
}

function setState(state: string, text: string): void {
  $('status').dataset.state = state;
  $('status').textContent = text;
}

// ---------------------------------------------------------------------------------------------

$('form').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = input.value;
  if (text.trim() === '') return;
  generate(text);
});
input.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey) {
    event.preventDefault();
    $<HTMLFormElement>('form').requestSubmit();
  }
});
$('stop').addEventListener('click', () => send({ type: 'stop' }));
$('clear').addEventListener('click', () => {
  if (!bubble) log.replaceChildren();
});
$('source').addEventListener('change', () => {
  const source = $<HTMLSelectElement>('source').value;
  if (source === 'folder') $('pick-folder').click();
  else if (source === 'gguf') $('pick-gguf').click();
  else open({ kind: 'manifest', url: 'manifest.json' });
});
$('pick-folder').addEventListener('change', () => {
  const files = [...($('pick-folder').files ?? [])];
  if (files.length > 0) open({ kind: 'folder', files });
});
$('pick-gguf').addEventListener('change', () => {
  const file = $('pick-gguf').files?.[0];
  if (file) open({ kind: 'gguf', file });
});
// Provider and threads are fixed per worker: reload the current model with the new ones.
$('provider').addEventListener('change', () => open(current));
$('threads').addEventListener('change', () => open(current));
$('key').addEventListener('change', () => open(current));

presetControls();
open(current);
