/**
 * A user's prompt, a raw text or chat messages, as the model's token ids: BOS as the tokenizer
 * adds it for raw text, as the chat template writes it for chat. The CLI, the server and its
 * tokenizer thread (thread.ts) all encode prompts here, so they agree.
 */
import { InputError } from '../errors.ts';
import { renderChat, type ChatMessage } from './chat-template.ts';
import type { Tokenizer } from './tokenizer.ts';

export type Prompt = string | readonly ChatMessage[];

export interface EncodePromptOptions {
  /**
   * The model's context: a prompt certain to fill it (Tokenizer.minTokens) is refused before
   * it is encoded, which would take seconds for a long one.
   */
  contextLength?: number;
}

export function encodePrompt(tokenizer: Tokenizer, prompt: Prompt, options: EncodePromptOptions = {}): number[] {
  // An empty text still encodes to BOS alone, which the ids check (decode/rows.ts) lets through.
  if (typeof prompt === 'string' && prompt.length === 0) throw new InputError('the prompt is empty');
  const text = typeof prompt === 'string' ? prompt : renderChat(tokenizer.chatTemplate, prompt, { bosToken: tokenizer.bosToken, eosToken: tokenizer.eosToken });
  const { contextLength } = options;
  if (contextLength !== undefined) {
    const atLeast = tokenizer.minTokens(text);
    if (atLeast >= contextLength) throw new InputError(`the prompt has at least ${atLeast} tokens; the model's context is ${contextLength}`);
  }
  // The template writes BOS itself where the model wants it; adding another would double it.
  return typeof prompt === 'string' ? tokenizer.encode(text) : tokenizer.encode(text, { addBos: false });
}
