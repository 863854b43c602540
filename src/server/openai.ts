/**
 * The OpenAI wire format the server speaks: request schemas (zod) that turn a JSON body into a
 * checked `TextRequest`, the response and stream-chunk objects, and the error object
 * `{error: {message, type, param, code}}` every failure is reported as.
 *
 * Extensions to OpenAI's shapes, all optional for clients that do not know them:
 * - request `ppd: false` decodes one token per forward on a server that has an adapter;
 *   `top_k` (0 = off) as in most local servers;
 * - every stream chunk carries `accepted_tokens`: the tokens the decoding step it comes from
 *   accepted (a chunk may hold no text while a character or a possible stop string is pending);
 * - the final object (whole response, or the last stream chunk) carries `decoding`: mode, steps,
 *   accepted tokens per step, tokens per second.
 *
 * OpenAI fields this server does not implement (logprobs, logit_bias, penalties, tools,
 * response_format, ...: `UNSUPPORTED`) are accepted only with the value that means "off", and
 * fields OpenAI does not define are refused: either way a 400 names the field, so a client never
 * gets text produced without what it asked for.
 *
 * Not here: routing, queueing, HTTP (app.ts).
 */
import { randomInt, randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { FinishReason, GenerationResult } from '../generate/generate.ts';
import type { TextRequest } from '../generate/request.ts';
import type { ChatMessage } from '../tokenizer/chat-template.ts';

// ---------------------------------------------------------------------------------------------
// Errors.

export type ErrorType = 'invalid_request_error' | 'authentication_error' | 'not_found_error' | 'rate_limit_error' | 'timeout_error' | 'server_error';

/** A failure reported to the client as an OpenAI error object with an HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ErrorType = 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  get body(): ErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export interface ErrorBody {
  error: { message: string; type: ErrorType; param: string | null; code: string | null };
}

// ---------------------------------------------------------------------------------------------
// Requests.

/** What the schemas depend on: the served model. */
export interface ModelLimits {
  /** The model's context (prompt + new tokens). */
  contextLength: number;
  vocabSize: number;
}

/** OpenAI's temperature range; above 2 the output is noise. */
const MAX_TEMPERATURE = 2;
/** OpenAI allows up to 4 stop sequences. */
const MAX_STOPS = 4;

const message = (text: string) => ({ error: text });

function intIn(min: number, max: number) {
  const m = message(`must be an integer from ${min} to ${max}`);
  return z.number(m).int(m).min(min, m).max(max, m);
}

/** A number in min..max, or in (min, max] with `exclusiveMin`. */
function numberIn(min: number, max: number, exclusiveMin = false) {
  const m = message(exclusiveMin ? `must be a number in (${min}, ${max}]` : `must be a number from ${min} to ${max}`);
  const number = z.number(m);
  return (exclusiveMin ? number.gt(min, m) : number.min(min, m)).max(max, m);
}

function samplingFields(limits: ModelLimits) {
  const stops = message(`must be a non-empty string or 1 to ${MAX_STOPS} non-empty strings`);
  return {
    model: z.string(message('must be a string')).optional(),
    max_tokens: intIn(1, limits.contextLength).nullish(),
    temperature: numberIn(0, MAX_TEMPERATURE).nullish(),
    top_p: numberIn(0, 1, true).nullish(),
    top_k: intIn(0, limits.vocabSize).nullish(),
    seed: z.number(message('must be a safe integer (|seed| < 2^53)')).int(message('must be a safe integer (|seed| < 2^53)')).nullish(),
    stop: z.union([z.string(stops).min(1, stops), z.array(z.string(stops).min(1, stops), stops).min(1, stops).max(MAX_STOPS, stops)], stops).nullish(),
    n: z.literal(1, message('only n = 1 is supported')).nullish(),
    stream: z.boolean(message('must be true or false')).nullish(),
    stream_options: strictObject({ include_usage: z.boolean(message('must be true or false')).optional() }, 'must be an object').nullish(),
    ppd: z.boolean(message('must be true or false (false: plain decoding on a PPD server)')).nullish(),
    // An end user's id, for the operator's abuse tracking in OpenAI's API; it changes no output.
    user: z.string(message('must be a string')).nullish(),
    ...offOnly(UNSUPPORTED.common),
  };
}

/**
 * OpenAI request fields that are not implemented here, each with the values that mean "off"
 * (what OpenAI does when the field is left out); any other value is refused by name.
 */
const UNSUPPORTED = {
  common: {
    logprobs: [null, false, 0],
    logit_bias: [null, {}],
    frequency_penalty: [null, 0],
    presence_penalty: [null, 0],
  },
  completion: {
    echo: [null, false],
    best_of: [null, 1],
    suffix: [null, ''],
  },
  chat: {
    top_logprobs: [null, 0],
    tools: [null, []],
    tool_choice: [null, 'none'],
    parallel_tool_calls: [null, true, false],
    functions: [null, []],
    function_call: [null, 'none'],
    response_format: [null, { type: 'text' }],
    modalities: [null, ['text']],
    audio: [null],
    prediction: [null],
    store: [null, false],
    metadata: [null, {}],
    service_tier: [null, 'auto', 'default'],
    reasoning_effort: [null],
    web_search_options: [null],
  },
} as const satisfies Record<string, Record<string, readonly unknown[]>>;

/** Schemas accepting only the listed "off" values of each field; absent is off too. */
function offOnly(fields: Record<string, readonly unknown[]>) {
  return Object.fromEntries(
    Object.entries(fields).map(([name, offs]) => {
      const allowed = offs.map((v) => JSON.stringify(v));
      const m = `is not supported by this server; leave it out${allowed.length > 1 ? ` or send ${allowed.slice(1).join(' or ')}` : ''}`;
      return [name, z.unknown().refine((v) => allowed.includes(boundedJson(v, 64)), message(m)).optional()];
    }),
  );
}

/** Errors for fields the schema does not define (strict objects): a 400 naming the field. */
const UNKNOWN_FIELD = 'unknown field: not part of the OpenAI API this server implements';

/** A strict object: a key it does not define is an `unrecognized_keys` issue (UNKNOWN_FIELD). */
function strictObject<T extends z.core.$ZodLooseShape>(shape: T, notAnObject: string) {
  return z.strictObject(shape, { error: (issue) => (issue.code === 'unrecognized_keys' ? UNKNOWN_FIELD : notAnObject) });
}

const textPart = strictObject({ type: z.literal('text', message('only text content parts are supported')), text: z.string(message('must be a string')) }, 'must be a text part object');

const chatMessage = strictObject(
  {
    // "developer" is what OpenAI's newer models call the system message.
    role: z.enum(['system', 'developer', 'user', 'assistant'], message('must be "system", "developer", "user" or "assistant"')),
    content: z.union([z.string(), z.array(textPart).min(1)], message('must be a string or an array of text parts')),
    // A participant's name: OpenAI passes it to the model; templates here have no place for it.
    name: z.unknown().refine(() => false, message('is not supported by this server (chat templates have no participant names); leave it out')).optional(),
  },
  'must be an object with "role" and "content"',
);

export function completionSchema(limits: ModelLimits) {
  return strictObject(
    {
      ...samplingFields(limits),
      ...offOnly(UNSUPPORTED.completion),
      prompt: z.string(message('must be a string (token arrays and batches of prompts are not supported)')).min(1, message('must not be empty')),
    },
    'the body must be a JSON object',
  );
}

export function chatSchema(limits: ModelLimits) {
  return strictObject(
    {
      ...samplingFields(limits),
      ...offOnly(UNSUPPORTED.chat),
      max_completion_tokens: intIn(1, limits.contextLength).nullish(),
      messages: z.array(chatMessage, message('must be an array of messages')).min(1, message('must hold at least one message')),
    },
    'the body must be a JSON object',
  );
}

export type CompletionBody = z.infer<ReturnType<typeof completionSchema>>;
export type ChatBody = z.infer<ReturnType<typeof chatSchema>>;

/** Parses `body` with `schema`, or throws a 400 ApiError naming the first bad field and its value. */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const path = issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys[0]!] : issue.path;
  const param = path.length > 0 ? path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('') : null;
  const value = valueAt(body, path);
  const got = issue.code === 'unrecognized_keys' ? '' : value === undefined ? (param === null ? '' : ', got nothing') : `, got ${preview(value)}`;
  const code = issue.code === 'unrecognized_keys' ? 'unknown_field' : UNSUPPORTED_NAMES.has(String(path.at(-1))) ? 'unsupported_field' : 'invalid_value';
  throw new ApiError(400, `${param ?? 'body'}: ${issue.message}${got}`, 'invalid_request_error', param, code);
}

const UNSUPPORTED_NAMES = new Set(['name', ...Object.values(UNSUPPORTED).flatMap((fields) => Object.keys(fields))]);

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let value = root;
  for (const key of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

/** A value as the error message shows it: JSON, cut to 60 characters. */
export function preview(value: unknown, limit = 60): string {
  const text = boundedJson(value, limit + 1);
  return text.length > limit ? `${text.slice(0, limit - 3)}...` : text;
}

/**
 * JSON of `value`, stopping once `budget` characters are written: a body may nest thousands of
 * levels deep, where JSON.stringify would overflow the stack. Each level writes at least one
 * character, so the recursion is as deep as the budget at most.
 */
function boundedJson(value: unknown, budget: number): string {
  let out = '';
  const emit = (v: unknown): void => {
    if (out.length >= budget) return;
    if (v === null || typeof v !== 'object') {
      out += JSON.stringify(v) ?? String(v);
      return;
    }
    const array = Array.isArray(v);
    out += array ? '[' : '{';
    let first = true;
    for (const [k, item] of Object.entries(v)) {
      if (out.length >= budget) return;
      if (!first) out += ',';
      first = false;
      if (!array) out += `${JSON.stringify(k)}:`;
      emit(item);
    }
    out += array ? ']' : '}';
  };
  emit(value);
  return out;
}

/** Server-side settings a request's defaults come from. */
export interface RequestDefaults {
  /** Used when the request gives no max_tokens (capped by the model's context). */
  maxTokens: number;
}

/** The generation a completion or chat body asks for (decoder choice excluded: see app.ts). */
export function toTextRequest(body: CompletionBody | ChatBody, defaults: RequestDefaults): Omit<TextRequest, 'ppd' | 'signal'> {
  const prompt = 'messages' in body ? body.messages.map(flattenMessage) : body.prompt;
  const maxTokens = ('max_completion_tokens' in body ? body.max_completion_tokens : undefined) ?? body.max_tokens ?? defaults.maxTokens;
  const stop = body.stop == null ? undefined : typeof body.stop === 'string' ? [body.stop] : body.stop;
  return {
    prompt,
    maxTokens,
    stop,
    sampling: {
      temperature: body.temperature ?? 1,
      topP: body.top_p ?? 1,
      topK: body.top_k ?? 0,
      // Without a seed, each request samples differently, as OpenAI's API does.
      seed: body.seed ?? randomInt(2 ** 47),
    },
  };
}

function flattenMessage(m: z.infer<typeof chatMessage>): ChatMessage {
  return { role: m.role === 'developer' ? 'system' : m.role, content: typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join('') };
}

// ---------------------------------------------------------------------------------------------
// Responses.

export type Endpoint = 'completion' | 'chat';
export type DecodingMode = 'ppd' | 'plain';

/** Identity shared by every object of one response. */
export interface ResponseHeader {
  id: string;
  created: number;
  model: string;
}

export function newResponseHeader(endpoint: Endpoint, model: string): ResponseHeader {
  return { id: `${endpoint === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID()}`, created: Math.floor(Date.now() / 1000), model };
}

/** OpenAI's finish reasons: the model's end and stop strings are both "stop"; both limits are "length". */
export function finishReason(reason: FinishReason): 'stop' | 'length' {
  return reason === 'eos' || reason === 'stop' ? 'stop' : 'length';
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usage(result: GenerationResult): Usage {
  const { promptTokens, newTokens } = result.stats;
  return { prompt_tokens: promptTokens, completion_tokens: newTokens, total_tokens: promptTokens + newTokens };
}

/** The `decoding` extension: how the text was produced. */
export interface DecodingStats {
  mode: DecodingMode;
  steps: number;
  accepted_per_step: number;
  tokens_per_second: number;
  seconds: number;
  prefill_seconds: number;
}

export function decodingStats(mode: DecodingMode, result: GenerationResult): DecodingStats {
  const s = result.stats;
  return { mode, steps: s.steps, accepted_per_step: s.tau, tokens_per_second: s.tokensPerSecond, seconds: s.seconds, prefill_seconds: s.prefillSeconds };
}

/** The whole (non-streamed) response. */
export function responseBody(endpoint: Endpoint, header: ResponseHeader, mode: DecodingMode, result: GenerationResult): object {
  const choice =
    endpoint === 'chat'
      ? { index: 0, message: { role: 'assistant', content: result.text }, logprobs: null, finish_reason: finishReason(result.stats.finishReason) }
      : { index: 0, text: result.text, logprobs: null, finish_reason: finishReason(result.stats.finishReason) };
  const object = endpoint === 'chat' ? 'chat.completion' : 'text_completion';
  return { ...header, object, choices: [choice], usage: usage(result), decoding: decodingStats(mode, result) };
}

const chunkObject = (endpoint: Endpoint) => (endpoint === 'chat' ? 'chat.completion.chunk' : 'text_completion');

/** The first chunk of a chat stream announces the assistant's role, as OpenAI's does. */
export function roleChunk(header: ResponseHeader): object {
  return { ...header, object: chunkObject('chat'), choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] };
}

/** One decoding step's text and how many tokens the step accepted. */
export function stepChunk(endpoint: Endpoint, header: ResponseHeader, text: string, acceptedTokens: number): object {
  const choice = endpoint === 'chat' ? { index: 0, delta: { content: text }, logprobs: null, finish_reason: null } : { index: 0, text, logprobs: null, finish_reason: null };
  return { ...header, object: chunkObject(endpoint), choices: [choice], accepted_tokens: acceptedTokens };
}

/** The last chunk with choices: the finish reason and the run's decoding statistics. */
export function finalChunk(endpoint: Endpoint, header: ResponseHeader, mode: DecodingMode, result: GenerationResult): object {
  const reason = finishReason(result.stats.finishReason);
  const choice = endpoint === 'chat' ? { index: 0, delta: {}, logprobs: null, finish_reason: reason } : { index: 0, text: '', logprobs: null, finish_reason: reason };
  return { ...header, object: chunkObject(endpoint), choices: [choice], accepted_tokens: 0, decoding: decodingStats(mode, result) };
}

/** With `stream_options.include_usage`: a chunk with no choices and the usage, before [DONE]. */
export function usageChunk(endpoint: Endpoint, header: ResponseHeader, result: GenerationResult): object {
  return { ...header, object: chunkObject(endpoint), choices: [], usage: usage(result) };
}

/** One server-sent event carrying a JSON object (or the final `[DONE]`). */
export function sseEvent(data: object | '[DONE]'): string {
  return `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
}
