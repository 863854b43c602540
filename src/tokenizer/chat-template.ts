/**
 * Chat prompts: renders a list of messages with the model's Jinja chat template, as Hugging
 * Face's apply_chat_template does, via @huggingface/jinja.
 *
 * The result is text. Encode it with `addBos: false`, as apply_chat_template encodes with
 * add_special_tokens=False: templates write bos_token themselves where the model wants it.
 * Not tokenization (tokenizer.ts).
 */
import { Template } from '@huggingface/jinja';
import { FormatError, InputError } from '../errors.ts';

export interface ChatMessage {
  role: string; // "system" | "user" | "assistant" in practice; templates decide what they accept
  content: string;
}

export interface RenderChatOptions {
  bosToken?: string | null;
  eosToken?: string | null;
  /** End with the header of an assistant turn, so the model writes the reply. Default true. */
  addGenerationPrompt?: boolean;
  /** Where the template came from (e.g. "tokenizer_config.json"), named in errors. */
  source?: string;
}

/** Parses a template once; FormatError (naming `source`) if it is not valid Jinja. */
export function parseChatTemplate(template: string, source = 'chat template'): Template {
  try {
    return new Template(template);
  } catch (e) {
    throw new FormatError(source, `chat_template does not parse: ${(e as Error).message}`);
  }
}

/** The prompt text for `messages`; InputError when there is no template or it rejects them. */
export function renderChat(
  template: string | Template | null | undefined,
  messages: readonly ChatMessage[],
  options: RenderChatOptions = {},
): string {
  if (template === null || template === undefined || template === '') {
    throw new InputError(
      'this model has no chat template (no chat_template in tokenizer_config.json); give a raw prompt instead',
    );
  }
  if (messages.length === 0) throw new InputError('a chat needs at least one message');
  messages.forEach((m, i) => {
    if (typeof m?.role !== 'string' || typeof m.content !== 'string') {
      throw new InputError(`chat message ${i} must have string "role" and "content", got ${JSON.stringify(m)}`);
    }
  });
  const parsed = typeof template === 'string' ? parseChatTemplate(template, options.source) : template;
  try {
    return parsed.render({
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      bos_token: options.bosToken ?? '',
      eos_token: options.eosToken ?? '',
      add_generation_prompt: options.addGenerationPrompt ?? true,
    });
  } catch (e) {
    // Templates reject chats with raise_exception (e.g. roles that do not alternate).
    const from = options.source === undefined ? '' : ` from ${options.source}`;
    throw new InputError(`the chat template${from} rejected the messages: ${(e as Error).message}`);
  }
}
