/**
 * `ppd pretrain`: trains a model from scratch on a text corpus with a given tokenizer, and exports
 * it as a Hugging Face folder with a training record. Interrupted runs continue with --resume.
 */
import { copyFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { cachedTokenStream, noteTextFile } from '../data/tokenize.ts';
import { writeJsonAtomic } from '../format/atomic.ts';
import { openForReading } from '../format/file-io.ts';
import { readJsonObject, readTextFile } from '../format/text-file.ts';
import { parameterCount, parseLlamaConfig } from '../model/config.ts';
import { Progress } from '../report/progress.ts';
import { Tokenizer } from '../tokenizer/tokenizer.ts';
import { exportModel, pretrain, type PretrainSettings } from '../train/pretrain.ts';
import { InputError } from '../errors.ts';

export interface PretrainFlags {
  train: string;
  valid: string;
  config: string;
  tokenizer: string;
  run: string;
  out: string;
  steps: number;
  seqLen: number;
  batch: number;
  accum: number;
  lr: number;
  warmup: number;
  minLrRatio: number;
  weightDecay: number;
  clip: number;
  seed: number;
  evalEvery: number;
  evalWindows: number;
  minutes?: number;
  stopAt?: number;
  resume?: boolean;
  dtype: 'f32' | 'f16' | 'bf16';
  threads?: number;
}


function tokenStream(tokenizer: Tokenizer, tokenizerKey: string, file: string, cacheDir: string): Int32Array {
  const text = readTextFile(file);
  noteTextFile(file, text);
  let bar: Progress | undefined;
  const ids = cachedTokenStream(tokenizer, tokenizerKey, text, cacheDir, (done, total) => {
    bar ??= new Progress(`tokenising ${file}`, total, 'docs');
    bar.update(done);
  });
  bar?.stop();
  return ids;
}

export async function pretrainCommand(flags: PretrainFlags): Promise<void> {
  const modelConfig = readJsonObject(flags.config);
  const config = parseLlamaConfig(modelConfig, flags.config);
  const tokenizerFile = join(flags.tokenizer, 'tokenizer.json');
  const tokenizerConfigFile = join(flags.tokenizer, 'tokenizer_config.json');
  const tokenizer = Tokenizer.fromFile(openForReading(tokenizerFile), readJsonObject(tokenizerConfigFile));
  if (tokenizer.vocabSize !== config.vocabSize) {
    throw new InputError(`${flags.config}: vocab_size ${config.vocabSize} differs from the tokenizer's ${tokenizer.vocabSize} tokens`);
  }
  const tokenizerKey = readTextFile(tokenizerFile);
  const train = tokenStream(tokenizer, tokenizerKey, flags.train, flags.run);
  const valid = tokenStream(tokenizer, tokenizerKey, flags.valid, flags.run);
  const settings: PretrainSettings = {
    modelConfig,
    seqLen: flags.seqLen,
    batchWindows: flags.batch,
    accumulation: flags.accum,
    steps: flags.steps,
    schedule: { peakLr: flags.lr, warmupSteps: flags.warmup, minLrRatio: flags.minLrRatio },
    weightDecay: flags.weightDecay,
    clipNorm: flags.clip,
    seed: flags.seed,
    evalEvery: flags.evalEvery,
    evalWindows: flags.evalWindows,
  };
  const tokensPerStep = flags.seqLen * flags.batch * flags.accum;
  process.stderr.write(
    `pretraining ${(parameterCount(config) / 1e6).toFixed(2)}M parameters on ${train.length} tokens ` +
      `(${valid.length} held out), ${flags.steps} steps of ${tokensPerStep} tokens\n`,
  );
  const alreadyDone = flags.resume && existsSync(join(flags.run, 'latest.json')) ? Number(readJsonObject(join(flags.run, 'latest.json')).step) : 0;
  const bar = new Progress('pretrain', flags.steps, 'steps', ['loss', 'valid', 'lr', 'tok/s'], alreadyDone);
  let lastValid = '-';
  // Ctrl-C or SIGTERM: finish the current step, save a checkpoint and export; a second one quits.
  let stopRequested = false;
  const onSignal = () => {
    if (stopRequested) process.exit(130);
    stopRequested = true;
    process.stderr.write('\nstopping after this step (checkpoint and export follow; signal again to quit at once)\n');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const result = await pretrain({
    shouldStop: () => stopRequested,
    settings,
    train,
    valid,
    runDir: flags.run,
    resume: flags.resume ?? false,
    threads: flags.threads,
    timeBudgetSeconds: flags.minutes === undefined ? undefined : flags.minutes * 60,
    stopAfterStep: flags.stopAt,
    onProgress: (p) => {
      if (p.validLoss !== undefined) lastValid = p.validLoss.toFixed(3);
      bar.update(p.step, { loss: p.loss.toFixed(3), valid: lastValid, lr: p.lr.toExponential(2), 'tok/s': p.tokensPerSecond.toFixed(0) });
    },
  });
  bar.stop();

  exportModel(flags.out, modelConfig, result, flags.dtype.toUpperCase() as 'F32' | 'F16' | 'BF16');
  copyFileSync(tokenizerFile, join(flags.out, 'tokenizer.json'));
  copyFileSync(tokenizerConfigFile, join(flags.out, 'tokenizer_config.json'));
  writeJsonAtomic(join(flags.out, 'training.json'), {
    settings,
    stepsDone: result.step,
    finished: result.finished,
    tokensSeen: result.step * tokensPerStep,
    trainTokens: train.length,
    validTokens: valid.length,
    wallSeconds: result.seconds,
    parameters: parameterCount(config),
    history: result.history,
    reschedules: result.reschedules,
  });
  process.stderr.write(
    `${result.finished ? 'finished' : 'stopped'} at step ${result.step}/${flags.steps} after ${(result.seconds / 60).toFixed(1)} min; ` +
      `wrote ${flags.out}${result.finished ? '' : ` (continue with --resume; checkpoints in ${flags.run})`}\n`,
  );
}
