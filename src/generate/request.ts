/**
 * From a user's request (a raw prompt or chat messages, limits, sampling options) to a running
 * Generation on a loaded model: tokenisation, the chat template, the choice of decoder. The
 * CLI and the server both start generations here, so they behave the same.
 */
import { InputError } from '../errors.ts';
import { requireTokenizer, type LoadedModel } from '../checkpoint/loaded-model.ts';
import { Sampler, type SamplingOptions } from '../sampling/sampler.ts';
import { encodePrompt, type Prompt } from '../tokenizer/prompt.ts';
import { autoregressive } from '../decode/autoregressive.ts';
import { ppdDecode, type PpdOptions } from '../ppd/decode.ts';
import type { PpdSetup } from '../ppd/setup.ts';
import { guessesNothing } from '../ppd/adapter-folder.ts';
import type { DraftSetup } from '../spec/setup.ts';
import { speculativeDecode } from '../spec/speculative.ts';
import { Generation } from './generate.ts';
import type { BatchScheduler } from './scheduler.ts';

export interface TextRequest {
  /** A raw prompt, or chat messages rendered through the model's chat template. */
  prompt: Prompt;
  maxTokens: number;
  /** temperature 0 = greedy. */
  sampling?: Partial<SamplingOptions>;
  stop?: readonly string[];
  signal?: AbortSignal;
  /** Decode with Parallel Prompt Decoding instead of one token per forward. */
  ppd?: PpdSetup;
  /** Speculative decoding: this draft model proposes, the model verifies (`draft.ppd`: the draft drafts with PPD). */
  draft?: DraftSetup;
  /** Called after each decoding step with the number of tokens it produced (not with `batch`). */
  onStep?: (tokens: number) => void;
  /** Decode in this scheduler's batch, sharing forwards with the other generations in it (not with `draft`). */
  batch?: BatchScheduler;
  /** With `ppd`: called after each step whose drafted chain (context lookup, n-gram table) was verified, with how it fared. */
  onDraft?: PpdOptions['onDraft'];
}

/** The prompt's token ids: BOS as the tokenizer adds it for raw text, as the template writes it for chat. */
export function promptIds(loaded: LoadedModel, prompt: TextRequest['prompt']): number[] {
  return encodePrompt(requireTokenizer(loaded), prompt);
}

export function startGeneration(loaded: LoadedModel, request: TextRequest): Generation {
  return generationFromIds(loaded, promptIds(loaded, request.prompt), request);
}

/** A generation from prompt ids already encoded (the server encodes on a thread of its own). */
export function generationFromIds(loaded: LoadedModel, ids: number[], request: Omit<TextRequest, 'prompt'>): Generation {
  const sampler = new Sampler(request.sampling ?? { temperature: 0 });
  if (request.ppd && request.draft) throw new InputError('PPD on the target and a draft model cannot be combined; give the draft its own PPD adapter instead');
  const onStep = request.onStep;
  // A setup with nothing to guess with (a calibration that chose plain decoding here) decodes
  // plainly, without PPD's bookkeeping; the stats say which decoder ran.
  const ppd = request.ppd && !guessesNothing(request.ppd) ? request.ppd : undefined;
  if (request.batch && request.draft) throw new InputError('speculative decoding does not run in a batch');
  const stream = request.batch
    ? request.batch.stream({ ids, sampler, ppd })
    : request.draft
      ? speculativeDecode(loaded.model, ids, { draft: request.draft, sampler, onStep: onStep && ((step) => onStep(step.tokens)) })
      : ppd
        ? ppdDecode(loaded.model, ids, { ...ppd, sampler, onStep, onDraft: request.onDraft })
        : autoregressive(loaded.model, ids, sampler);
  const limits = {
    context: ids.slice(-4),
    maxTokens: request.maxTokens,
    contextLength: loaded.config.maxPositionEmbeddings,
    eosIds: loaded.eosIds,
    stop: request.stop,
    signal: request.signal,
  };
  return new Generation(stream, requireTokenizer(loaded), ids.length, limits, request.draft ? 'speculative' : ppd ? 'ppd' : 'plain');
}
