/**
 * `ppd serve`: loads the model (and adapter), serves the OpenAI-style API and the chat page
 * (server/app.ts) until SIGTERM or SIGINT, then stops taking requests, finishes the ones it has
 * and exits. A second signal exits at once.
 */
import { isIP } from 'node:net';
import { InputError } from '../errors.ts';
import { checkPpdOnlyFlags, ppdFlags } from './options.ts';
import { describeTable } from './ngram.ts';
import { loadModel } from '../checkpoint/load.ts';
import type { QuantizeMode } from '../format/quantize.ts';
import { loadPpdSetup, plainDecodingNote } from '../ppd/setup.ts';
import { promptHeadOf } from '../ppd/adapter-files.ts';
import { buildServer } from '../server/app.ts';
import { checkApiKey } from '../server/auth.ts';

export interface ServeFlags {
  model: string;
  ppd?: string;
  trees?: string;
  verification?: 'coupled' | 'typical' | 'rejection';
  lookup?: number;
  ngram?: string;
  ngramTokens?: number;
  host: string;
  port: number;
  apiKey?: string;
  allowedHosts?: string[];
  /** False with --no-batching (default true). */
  batching?: boolean;
  concurrency?: number;
  queue: number;
  timeout: number;
  maxTokens: number;
  bodyLimit: number;
  threads?: number;
  quantize?: QuantizeMode;
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '::1']);

function isLoopback(host: string): boolean {
  return LOOPBACK_NAMES.has(host) || (isIP(host) === 4 && host.startsWith('127.'));
}

export async function serveCommand(flags: ServeFlags): Promise<void> {
  checkPpdOnlyFlags(flags);
  if (flags.apiKey !== undefined) checkApiKey(flags.apiKey);
  const loaded = await loadModel(flags.model, { threads: flags.threads, quantize: flags.quantize, needsTokenizer: true, promptHead: flags.ppd ? promptHeadOf(flags.ppd) : undefined });
  const ppd = flags.ppd ? loadPpdSetup(loaded.config, flags.ppd, { ...ppdFlags(flags), threads: flags.threads, quantize: flags.quantize, modelDir: flags.model, tokenizer: loaded.tokenizer }) : undefined;
  const plainNote = ppd && plainDecodingNote(ppd, flags.ppd!, flags);
  if (plainNote) process.stderr.write(`${plainNote}\n`);
  const app = buildServer({
    loaded,
    ppd,
    adapterDir: flags.ppd,
    apiKey: flags.apiKey,
    // The name the server was told to listen on is one of its own.
    allowedHosts: [...(flags.allowedHosts ?? []), ...(isIP(flags.host) === 0 ? [flags.host] : [])],
    batching: flags.batching,
    concurrency: flags.concurrency,
    maxWaiting: flags.queue,
    timeoutSeconds: flags.timeout,
    defaultMaxTokens: flags.maxTokens,
    bodyLimitBytes: flags.bodyLimit,
  });

  let url: string;
  try {
    url = await app.listen({ host: flags.host, port: flags.port });
  } catch (error) {
    await loaded.model.release();
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'EADDRINUSE' ? 'the port is in use' : code === 'EADDRNOTAVAIL' ? 'no such local address' : code === 'EACCES' ? 'permission denied' : (error as Error).message;
    throw new InputError(`cannot listen on ${flags.host}:${flags.port}: ${why}`);
  }
  const decoding = `${ppd ? `PPD with ${flags.ppd}${ppd.ngram ? `, ${describeTable(ppd.ngram)}` : ''}` : 'plain decoding'}, ${flags.batching === false ? 'no batching' : 'batching'}`;
  process.stdout.write(`serving ${flags.model} (${decoding}) at ${url}; chat page at ${url}/, in-browser page at ${url}/browser/, API at ${url}/v1\n`);
  if (!isLoopback(flags.host) && !flags.apiKey) {
    process.stderr.write(`warning: listening on ${flags.host} without --api-key: anyone who can reach this port can use the model\n`);
  }

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const received = (name: NodeJS.Signals) => {
      process.off('SIGTERM', received);
      process.off('SIGINT', received);
      resolve(name);
    };
    process.on('SIGTERM', received);
    process.on('SIGINT', received);
  });
  process.stderr.write(`${signal}: not taking new requests; finishing the ones in progress (send it again to exit now)\n`);
  const exitNow = () => process.exit(1);
  process.once('SIGTERM', exitNow);
  process.once('SIGINT', exitNow);
  await app.close();
  await loaded.model.release();
  process.stderr.write('stopped\n');
  process.off('SIGTERM', exitNow);
  process.off('SIGINT', exitNow);
}
