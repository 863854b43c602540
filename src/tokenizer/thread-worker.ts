/**
 * The tokenizer thread's body (thread.ts): builds the tokenizer from the source it is given and
 * answers each job with encodePrompt's ids, or the error it raised.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { encodePrompt } from './prompt.ts';
import type { EncodeAnswer, EncodeJob } from './thread.ts';
import { Tokenizer, type TokenizerSource } from './tokenizer.ts';

const tokenizer = Tokenizer.fromSource(workerData as TokenizerSource);

parentPort!.on('message', (job: EncodeJob) => {
  let answer: EncodeAnswer;
  try {
    answer = { id: job.id, ids: encodePrompt(tokenizer, job.prompt, job.options) };
  } catch (error) {
    const e = error as Error;
    answer = { id: job.id, error: { name: e?.name ?? 'Error', message: e?.message ?? String(error) } };
  }
  parentPort!.postMessage(answer);
});
