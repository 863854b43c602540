import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FormatError, InputError } from '../src/errors.ts';
import { byteFallbackTokenizerConfig, byteFallbackTokenizerJson } from '../src/tokenizer/byte-tokenizer.ts';
import { parseChatTemplate, renderChat } from '../src/tokenizer/chat-template.ts';
import { Tokenizer } from '../src/tokenizer/tokenizer.ts';

// Llama-2-chat's template as shipped in its tokenizer_config.json.
const LLAMA2 =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}" +
  '{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}' +
  "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}" +
  "{% else %}{% set content = message['content'] %}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}" +
  "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

// ChatML, as used by many fine-tunes (OpenHermes, Qwen).
const CHATML =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const chat = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Hi' },
  { role: 'assistant', content: 'Hello!' },
  { role: 'user', content: 'Bye' },
];

test('renders a LLaMA-2 chat with system prompt, BOS and EOS', () => {
  const text = renderChat(LLAMA2, chat, { bosToken: '<s>', eosToken: '</s>' });
  assert.equal(text, '<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Bye [/INST]');
});

test('renders ChatML with and without the generation prompt', () => {
  const two = chat.slice(0, 2);
  const base = '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n';
  assert.equal(renderChat(CHATML, two), base + '<|im_start|>assistant\n');
  assert.equal(renderChat(CHATML, two, { addGenerationPrompt: false }), base);
  assert.equal(renderChat(parseChatTemplate(CHATML), two), base + '<|im_start|>assistant\n');
});

test('the byte tokenizer ships a template that renders and encodes', () => {
  const tok = Tokenizer.fromJson(byteFallbackTokenizerJson(), byteFallbackTokenizerConfig());
  const text = renderChat(tok.chatTemplate, chat.slice(1, 2), { bosToken: tok.bosToken, eosToken: tok.eosToken });
  assert.equal(text, '<s><|user|>\nHi</s>\n<|assistant|>\n');
  const ids = tok.encode(text, { addBos: false });
  assert.equal(ids[0], tok.bosId);
  assert.equal(ids[1], tok.tokenToId('▁')); // <s> splits the text; what follows gets its "▁"
  assert.equal(ids.filter((id) => id === tok.bosId).length, 1);
  assert.ok(ids.includes(tok.eosId!));
});

test('no template is an InputError; a template that does not parse is a FormatError naming its file', () => {
  for (const missing of [null, undefined, '']) {
    assert.throws(() => renderChat(missing, chat), (e: unknown) => e instanceof InputError && /no chat template/.test(e.message));
  }
  assert.throws(
    () => renderChat('{% for m in %}', chat, { source: 'models/x/tokenizer_config.json' }),
    (e: unknown) => e instanceof FormatError && e.message.startsWith('models/x/tokenizer_config.json:'),
  );
});

test('a template that rejects the messages, or malformed messages, give InputError', () => {
  assert.throws(
    () => renderChat(LLAMA2, [{ role: 'assistant', content: 'first' }]),
    (e: unknown) => e instanceof InputError && /alternate/.test(e.message),
  );
  assert.throws(() => renderChat(CHATML, []), InputError);
  assert.throws(() => renderChat(CHATML, [{ role: 'user' } as never]), InputError);
});
