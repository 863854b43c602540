/**
 * The tokenizers and chat templates of the byte-level families (Llama 3.x, Qwen2.5, Qwen3,
 * SmolLM2), in their exact file formats (helpers/family-tokenizers.ts): ids and text round-trip,
 * BOS as each family wants it, the families' digit splits, their real chat templates rendered
 * through @huggingface/jinja (system prompts, the generation prompt, the helpers they call), the
 * stop ids of generation_config.json, and GGUF both ways with llama.cpp's pre-tokenizer names.
 * The last test reads the real Llama 3 and Qwen2 vocabularies that llama.cpp's converter wrote
 * (shipped in node-llama-cpp's llama.cpp source) and checks ppd tokenizes llama.cpp's own test
 * texts to llama.cpp's expected ids.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openGguf } from '../src/format/gguf/open.ts';
import type { GgufEntry, GgufValue } from '../src/format/gguf/types.ts';
import { openModelDir } from '../src/checkpoint/model-dir.ts';
import { writeRandomModel } from '../src/checkpoint/random-init.ts';
import { renderChat } from '../src/tokenizer/chat-template.ts';
import { tokenizerFromGguf } from '../src/tokenizer/gguf/from-gguf.ts';
import { ggufTokenizerEntries } from '../src/tokenizer/gguf/to-gguf.ts';
import { Tokenizer } from '../src/tokenizer/tokenizer.ts';
import { familyTokenizer, type TokenizerFamily } from './helpers/family-tokenizers.ts';

const FAMILIES: TokenizerFamily[] = ['llama3', 'qwen2', 'qwen3', 'smollm2'];

const TEXTS = [
  'The quick brown fox.',
  "It's 12345 o'clock, they're 3.14 late",
  '  two leading spaces, trailing  ',
  'new\nlines\n\n\nand\ttabs\r\n',
  'Café naïve über — déjà vu; 日本語のテキスト',
  'emoji 😀👍🏽👨‍👩‍👧 🦙',
  'def f(x):\n    return x ** 2\n',
  '',
];

function load(family: TokenizerFamily): Tokenizer {
  const t = familyTokenizer(family);
  return Tokenizer.fromJson(t.tokenizerJson, t.tokenizerConfig, t.chatTemplate, family);
}

const tokens = (tok: Tokenizer, text: string) => tok.encode(text, { addBos: false }).map((id) => tok.idToToken(id));

test('every family: text -> ids -> text is exact, and BOS is added only where the family adds it', () => {
  for (const family of FAMILIES) {
    const tok = load(family);
    for (const text of TEXTS) {
      const ids = tok.encode(text, { addBos: false });
      assert.equal(tok.decode(ids), text, `${family}: ${JSON.stringify(text)}`);
    }
    // Llama 3 adds <|begin_of_text|> through its post-processor; Qwen and SmolLM add nothing.
    assert.equal(tok.addBosByDefault, family === 'llama3', family);
    if (family === 'llama3') assert.equal(tok.idToToken(tok.encode('hi')[0]!), '<|begin_of_text|>');
  }
});

test('digit splits: Llama 3 groups digits by three, Qwen and SmolLM take them one at a time', () => {
  assert.deepEqual(tokens(load('llama3'), '123456'), ['123', '45', '6']);
  for (const family of ['qwen2', 'qwen3', 'smollm2'] as const) {
    assert.deepEqual(tokens(load(family), '123456'), ['1', '2', '3', '4', '5', '6'], family);
  }
  // Qwen normalizes to NFC: a decomposed é tokenizes as the composed one.
  const qwen = load('qwen2');
  assert.deepEqual(qwen.encode('Cafe\u0301', { addBos: false }), qwen.encode('Café', { addBos: false }));
});

/** "06 Dec 2026": strftime_now("%d %b %Y") as the Llama 3.2 template calls it. */
function today(): string {
  const d = new Date();
  const month = d.toLocaleString('en-US', { month: 'short' });
  return `${String(d.getDate()).padStart(2, '0')} ${month} ${d.getFullYear()}`;
}

test('the families\' real chat templates render: system prompts, defaults, turns and the generation prompt', () => {
  const chat = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello!' },
    { role: 'user', content: 'Bye' },
  ];
  const render = (family: TokenizerFamily, messages = chat, addGenerationPrompt = true) => {
    const tok = load(family);
    return renderChat(tok.chatTemplate, messages, { bosToken: tok.bosToken, eosToken: tok.eosToken, addGenerationPrompt });
  };
  const header = (role: string) => `<|start_header_id|>${role}<|end_header_id|>\n\n`;
  assert.equal(
    render('llama3'),
    `<|begin_of_text|>${header('system')}Cutting Knowledge Date: December 2023\nToday Date: ${today()}\n\nBe brief.<|eot_id|>` +
      `${header('user')}Hi<|eot_id|>${header('assistant')}Hello!<|eot_id|>${header('user')}Bye<|eot_id|>${header('assistant')}`,
  );
  const chatml = (turns: [string, string][]) => turns.map(([role, content]) => `<|im_start|>${role}\n${content}<|im_end|>\n`).join('');
  const turns: [string, string][] = [['system', 'Be brief.'], ['user', 'Hi'], ['assistant', 'Hello!'], ['user', 'Bye']];
  for (const family of ['qwen2', 'qwen3', 'smollm2'] as const) {
    assert.equal(render(family), `${chatml(turns)}<|im_start|>assistant\n`, family);
    assert.equal(render(family, chat, false), chatml(turns), `${family} without the generation prompt`);
  }
  // Without a system message, Qwen2.5 and SmolLM2 write their default one; Qwen3 none.
  const user = [{ role: 'user', content: 'Hi' }];
  assert.equal(render('qwen2', user), `${chatml([['system', 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.'], ['user', 'Hi']])}<|im_start|>assistant\n`);
  assert.equal(render('smollm2', user), `${chatml([['system', 'You are a helpful AI assistant named SmolLM, trained by Hugging Face'], ['user', 'Hi']])}<|im_start|>assistant\n`);
  assert.equal(render('qwen3', user), `${chatml([['user', 'Hi']])}<|im_start|>assistant\n`);
  // Qwen3 drops the reasoning of earlier assistant turns (its template's split('</think>')).
  const thought = [...user, { role: 'assistant', content: '<think>\nhm\n</think>\n\nHello!' }, { role: 'user', content: 'Bye' }];
  assert.equal(render('qwen3', thought), `${chatml([['user', 'Hi'], ['assistant', 'Hello!'], ['user', 'Bye']])}<|im_start|>assistant\n`);
});

test('a rendered chat encodes each special token of the template as its one id', () => {
  for (const family of FAMILIES) {
    const t = familyTokenizer(family);
    const tok = load(family);
    const text = renderChat(tok.chatTemplate, [{ role: 'user', content: 'Hi <|im_start|> there' }], { bosToken: tok.bosToken, eosToken: tok.eosToken });
    const ids = tok.encode(text, { addBos: false });
    const specials = family === 'llama3' ? ['<|begin_of_text|>', '<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>'] : ['<|im_start|>', '<|im_end|>'];
    for (const special of specials) assert.ok(ids.includes(t.ids[special]!), `${family}: ${special} is one id`);
    assert.equal(tok.decode(ids), text, family);
  }
});

test('generation_config.json stop ids join the model\'s end-of-generation ids', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ppd-tokenizer-families-'));
  try {
    for (const family of ['llama3', 'smollm2'] as const) {
      const t = familyTokenizer(family);
      const modelDir = join(dir, family);
      // Llama 3.2's config.json names one eos id; its generation_config.json all three.
      writeRandomModel(modelDir, { model_type: 'llama', vocab_size: t.size, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, eos_token_id: t.ids['<|end_of_text|>'] ?? t.ids['<|im_end|>'] }, { seed: 1 });
      writeFileSync(join(modelDir, 'tokenizer.json'), JSON.stringify(t.tokenizerJson));
      writeFileSync(join(modelDir, 'tokenizer_config.json'), JSON.stringify(t.tokenizerConfig));
      writeFileSync(join(modelDir, 'generation_config.json'), JSON.stringify(t.generationConfig));
      const opened = openModelDir(modelDir);
      opened.tensors.close();
      const expected = [t.generationConfig.eos_token_id].flat() as number[];
      for (const id of expected) assert.ok(opened.eosTokenIds.includes(id), `${family}: stop id ${id} from generation_config.json`);
      assert.equal(opened.chatTemplate, t.chatTemplate);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function asMetadata(entries: GgufEntry[]): Map<string, GgufValue> {
  return new Map(entries.map((e) => [e.key, e.type === 'array' ? [...e.value] : e.value]));
}

test('GGUF both ways: each family is written with llama.cpp\'s pre-tokenizer name and reads back the same', () => {
  const names: Record<TokenizerFamily, string> = { llama3: 'llama-bpe', qwen2: 'qwen2', qwen3: 'qwen2', smollm2: 'smollm' };
  for (const family of FAMILIES) {
    const t = familyTokenizer(family);
    const original = load(family);
    const entries = ggufTokenizerEntries(t.tokenizerJson, t.tokenizerConfig, t.chatTemplate, family);
    const meta = asMetadata(entries);
    assert.equal(meta.get('tokenizer.ggml.model'), 'gpt2');
    assert.equal(meta.get('tokenizer.ggml.pre'), names[family], family);
    assert.equal(meta.get('tokenizer.ggml.add_bos_token'), family === 'llama3', family);
    const back = tokenizerFromGguf(meta, `${family}.gguf`)!;
    const copy = Tokenizer.fromJson(back.tokenizerJson, back.tokenizerConfig, back.chatTemplate, `${family}.gguf`);
    for (const text of [...TEXTS, renderChat(t.chatTemplate, [{ role: 'user', content: 'Hi' }], { bosToken: original.bosToken })]) {
      const ids = original.encode(text, { addBos: false });
      assert.deepEqual(copy.encode(text, { addBos: false }), ids, `${family}: ${JSON.stringify(text)}`);
      assert.equal(copy.decode(ids), original.decode(ids), `${family}: decoding ${JSON.stringify(text)}`);
    }
    assert.equal(copy.addBosByDefault, original.addBosByDefault, family);
    assert.equal(copy.chatTemplate, t.chatTemplate, family);
    // Special added tokens stay special (skipped when asked), plain ones (Qwen's <tool_call>) stay text.
    const special = family === 'llama3' ? '<|eot_id|>' : '<|im_end|>';
    assert.equal(copy.decode([t.ids[special]!], { skipSpecial: true }), '', family);
    if (family.startsWith('qwen')) assert.equal(copy.decode([t.ids['<tool_call>']!], { skipSpecial: true }), '<tool_call>');
  }
});

/** Files of node-llama-cpp's llama.cpp source (a git bundle), or undefined where git or the bundle is missing. */
function llamaCppSourceFiles(paths: string[], into: string): string[] | undefined {
  const bundle = new URL('../node_modules/node-llama-cpp/llama/gitRelease.bundle', import.meta.url).pathname;
  if (!existsSync(bundle)) return undefined;
  try {
    const git = join(into, 'llama.git');
    execFileSync('git', ['init', '-q', '--bare', git]);
    execFileSync('git', ['-C', git, 'fetch', '-q', bundle], { stdio: 'ignore' });
    return paths.map((path) => {
      const out = join(into, path.replaceAll('/', '_'));
      writeFileSync(out, execFileSync('git', ['-C', git, 'show', `FETCH_HEAD:${path}`], { maxBuffer: 64 << 20 }));
      return out;
    });
  } catch {
    return undefined;
  }
}

test('the real Llama 3 and Qwen2 vocabularies llama.cpp\'s converter wrote: ppd reads them and tokenizes llama.cpp\'s test texts to its ids', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ppd-real-vocab-'));
  try {
    const vocabs = ['llama-bpe', 'qwen2'];
    const files = llamaCppSourceFiles(vocabs.flatMap((v) => [`models/ggml-vocab-${v}.gguf`, `models/ggml-vocab-${v}.gguf.inp`, `models/ggml-vocab-${v}.gguf.out`]), dir);
    if (files === undefined) {
      t.skip('node-llama-cpp\'s llama.cpp source bundle (or git) is not available');
      return;
    }
    vocabs.forEach((vocab, v) => {
      const [ggufPath, inputs, outputs] = files.slice(3 * v, 3 * v + 3) as [string, string, string];
      const file = openGguf(ggufPath);
      const back = tokenizerFromGguf(file.metadata, ggufPath)!;
      const tok = Tokenizer.fromJson(back.tokenizerJson, back.tokenizerConfig, back.chatTemplate, ggufPath);
      const texts = readFileSync(inputs, 'utf8').split('\n__ggml_vocab_test__\n');
      const expected = readFileSync(outputs, 'utf8').split('\n');
      assert.ok(texts.length > 40, `${vocab}: ${texts.length} test texts`);
      texts.forEach((text, i) => {
        const want = expected[i]!.trim() === '' ? [] : expected[i]!.trim().split(/\s+/).map(Number);
        assert.deepEqual(tok.encode(text, { addBos: false }), want, `${vocab}: ${JSON.stringify(text)}`);
      });
      // Written back, the entries are the converter's: same tokens, types and merges.
      const entries = asMetadata(ggufTokenizerEntries(back.tokenizerJson, back.tokenizerConfig, back.chatTemplate, vocab));
      for (const key of ['tokenizer.ggml.pre', 'tokenizer.ggml.tokens', 'tokenizer.ggml.token_type', 'tokenizer.ggml.merges']) {
        assert.deepEqual(entries.get(key), file.metadata.get(key), `${vocab}: ${key}`);
      }
      file.close();
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
