/**
 * Pretraining a LLaMA model from scratch on a token stream: the loop (batches, one graph call for
 * loss and gradients, embedding-gradient scatter, accumulation, clipping, AdamW with a cosine
 * schedule), periodic held-out loss, atomic checkpoints with bit-for-bit resume, a progress bar,
 * and export to a Hugging Face folder. The graph is training-graph.ts; the maths of the update
 * is optimizer.ts.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { writeJsonAtomic } from '../format/atomic.ts';
import { writeSafetensors } from '../format/safetensors-write.ts';
import { parseLlamaConfig, type LlamaConfig } from '../model/config.ts';
import { trainingWeightShapes, transpose } from '../model/llama-graph.ts';
import { gaussian } from '../checkpoint/random-init.ts';
import { EMBED_TOKENS, expectedTensors } from '../model/weights.ts';
import type { RngState } from '../sampling/rng.ts';
import { WindowSampler } from './batches.ts';
import { loadCheckpoint, saveCheckpoint } from './checkpoint.ts';
import { AdamW, clipScale, globalNorm, learningRate, type Schedule } from './optimizer.ts';
import { PretrainSession } from './training-graph.ts';

export interface PretrainSettings {
  /** config.json object of the model to train. */
  modelConfig: Record<string, unknown>;
  seqLen: number;
  /** Windows per micro-batch (rows per graph call = seqLen * batchWindows). */
  batchWindows: number;
  /** Micro-batches per optimiser step. */
  accumulation: number;
  steps: number;
  schedule: Omit<Schedule, 'totalSteps'>;
  weightDecay: number;
  clipNorm: number;
  seed: number;
  /** Steps between held-out evaluations and checkpoints. */
  evalEvery: number;
  /** Held-out windows per evaluation. */
  evalWindows: number;
}

export interface PretrainProgress {
  step: number;
  steps: number;
  loss: number;
  lr: number;
  tokensPerSecond: number;
  validLoss?: number;
}

export interface PretrainRun {
  settings: PretrainSettings;
  train: ArrayLike<number>;
  valid: ArrayLike<number>;
  /** Folder for checkpoints (resumed from when it holds one and `resume` is set). */
  runDir: string;
  resume: boolean;
  threads?: number;
  /** Stop (after saving a checkpoint) once this many seconds have passed; the run can resume. */
  timeBudgetSeconds?: number;
  /** Stop (after saving a checkpoint) after this step, as an interruption would. */
  stopAfterStep?: number;
  /** Asked after every step; true stops the run (after saving a checkpoint), e.g. on Ctrl-C. */
  shouldStop?: () => boolean;
  onProgress?: (p: PretrainProgress) => void;
}

export interface PretrainResult {
  config: LlamaConfig;
  /** Parameters in graph layout (linear [in, out]). */
  params: Map<string, Float32Array>;
  shapes: Map<string, number[]>;
  step: number;
  finished: boolean;
  history: { step: number; loss: number; validLoss?: number; seconds: number }[];
  /** Each resume that changed the planned step count (the cosine schedule follows the new plan from there). */
  reschedules: Reschedule[];
  seconds: number;
}

export interface Reschedule {
  atStep: number;
  fromSteps: number;
  toSteps: number;
}

/** GPT-2 style init: N(0, 0.02), residual output projections scaled by 1/sqrt(2 layers); norms 1. */
export function initialParams(config: LlamaConfig, seed: number): Map<string, Float32Array> {
  const params = new Map<string, Float32Array>();
  const shapes = graphShapes(config);
  let index = 0;
  for (const [name, shape] of shapes) {
    const count = shape.reduce((a, b) => a * b, 1);
    const residual = name.endsWith('o_proj.weight') || name.endsWith('down_proj.weight');
    const std = residual ? 0.02 / Math.sqrt(2 * config.numLayers) : 0.02;
    params.set(name, shape.length === 1 ? new Float32Array(count).fill(1) : gaussian(count, seed * 1000 + index, 0, std));
    index++;
  }
  return params;
}

/** Every trained parameter with its graph-layout shape: the graph's weights plus the embedding table. */
export function graphShapes(config: LlamaConfig): Map<string, number[]> {
  return new Map([[EMBED_TOKENS, [config.vocabSize, config.hiddenSize]], ...trainingWeightShapes(config)]);
}

/** The ids and next-token targets [W*Tw] of the windows starting at `starts`, window after window. */
function windowTokens(tokens: ArrayLike<number>, starts: readonly number[], seqLen: number): { ids: Int32Array; targets: Int32Array } {
  const ids = new Int32Array(starts.length * seqLen);
  const targets = new Int32Array(starts.length * seqLen);
  starts.forEach((start, w) => {
    if (start < 0 || start + seqLen >= tokens.length) throw new InputError(`window at ${start} runs past the ${tokens.length} tokens`);
    for (let t = 0; t < seqLen; t++) {
      ids[w * seqLen + t] = tokens[start + t]!;
      targets[w * seqLen + t] = tokens[start + t + 1]!;
    }
  });
  return { ids, targets };
}

/** One graph call: loss, gradients and their global norm over the windows starting at `starts`. */
function microStep(session: PretrainSession, params: Map<string, Float32Array>, tokens: ArrayLike<number>, starts: number[]) {
  return session.step({ ...windowTokens(tokens, starts, session.layout.windowTokens), weights: params });
}

/**
 * One optimiser step's loss and gradients: `accumulation` graph calls of `batchWindows` windows
 * each, drawn from `sampler`. The gradients are the calls' sum, to be multiplied by `scale` (one
 * over the calls, times the clipping factor of their mean's global norm), which the optimiser
 * folds into its update. Exported for bench/train.ts, which times it.
 */
export async function accumulatedGradients(
  session: PretrainSession,
  params: Map<string, Float32Array>,
  tokens: ArrayLike<number>,
  sampler: WindowSampler,
  s: Pick<PretrainSettings, 'batchWindows' | 'accumulation' | 'clipNorm'>,
): Promise<{ loss: number; grads: Map<string, Float32Array>; gradNorm: number; scale: number }> {
  let loss = 0;
  let sum: Map<string, Float32Array> | undefined;
  let gradNorm = 0;
  for (let micro = 0; micro < s.accumulation; micro++) {
    const out = await microStep(session, params, tokens, sampler.next(s.batchWindows));
    loss += out.loss / s.accumulation;
    gradNorm = out.gradNorm;
    if (!sum) sum = out.grads;
    else {
      for (const [name, g] of out.grads) {
        const acc = sum.get(name)!;
        for (let i = 0; i < g.length; i++) acc[i]! += g[i]!;
      }
    }
  }
  // One call's norm comes from the graph; a sum of several needs its own pass.
  if (s.accumulation > 1) gradNorm = globalNorm(sum!.values()) / s.accumulation;
  return { loss, grads: sum!, gradNorm, scale: clipScale(gradNorm, s.clipNorm) / s.accumulation };
}

/** Mean loss over fixed held-out windows (the same windows at every evaluation). */
async function heldOutLoss(session: PretrainSession, params: Map<string, Float32Array>, valid: ArrayLike<number>, s: PretrainSettings): Promise<number> {
  const sampler = new WindowSampler(valid.length, s.seqLen, s.seed + 1);
  let total = 0;
  const calls = Math.max(1, Math.ceil(s.evalWindows / s.batchWindows));
  for (let i = 0; i < calls; i++) total += (await microStep(session, params, valid, sampler.next(s.batchWindows))).loss;
  return total / calls;
}

export async function pretrain(run: PretrainRun): Promise<PretrainResult> {
  const s = run.settings;
  const config = parseLlamaConfig(s.modelConfig);
  if (!config.tieWordEmbeddings) throw new InputError('pretraining supports tie_word_embeddings: true models only');
  const shapes = graphShapes(config);
  const schedule: Schedule = { ...s.schedule, totalSteps: s.steps };
  const optimizer = new AdamW(
    { lr: s.schedule.peakLr, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: s.weightDecay },
    (name) => name.endsWith('norm.weight'),
  );

  let params = initialParams(config, s.seed);
  let step = 0;
  let samplerState: number | RngState = s.seed;
  let history: PretrainResult['history'] = [];
  let reschedules: Reschedule[] = [];
  let secondsBefore = 0;
  const resumed = run.resume ? loadCheckpoint(run.runDir, optimizer) : undefined;
  if (resumed) {
    // Only the planned length may change on resume (a run that must end sooner or go on longer).
    const saved = resumed.state.settings as PretrainSettings;
    if (JSON.stringify({ ...saved, steps: s.steps }) !== JSON.stringify(s)) {
      throw new InputError(`${run.runDir}: the checkpoint was made with other settings; resume with the same ones (only --steps may change) or use a new folder`);
    }
    reschedules = (resumed.state.reschedules as Reschedule[] | undefined) ?? [];
    if (saved.steps !== s.steps) reschedules.push({ atStep: Number(resumed.state.step), fromSteps: saved.steps, toSteps: s.steps });
    params = resumed.params;
    step = Number(resumed.state.step);
    samplerState = resumed.state.samplerState as RngState;
    history = resumed.state.history as PretrainResult['history'];
    secondsBefore = Number(resumed.state.seconds);
  }
  const sampler = new WindowSampler(run.train.length, s.seqLen, samplerState);
  const session = await PretrainSession.create(config, { windows: s.batchWindows, windowTokens: s.seqLen }, { threads: run.threads });
  const started = performance.now();
  const elapsed = () => secondsBefore + (performance.now() - started) / 1000;
  const save = () =>
    saveCheckpoint(run.runDir, step, {
      params,
      shapes,
      optimizer,
      state: { settings: s, step, samplerState: sampler.rng.state(), history, reschedules, seconds: elapsed() },
    });

  let finished = step >= s.steps;
  try {
    while (step < s.steps) {
      const stepStart = performance.now();
      const { loss, grads, scale } = await accumulatedGradients(session, params, run.train, sampler, s);
      const lr = learningRate(schedule, step);
      optimizer.update(params, grads, lr, scale);
      step++;
      const tokensPerSecond = (s.seqLen * s.batchWindows * s.accumulation) / ((performance.now() - stepStart) / 1000);
      const entry: PretrainResult['history'][number] = { step, loss, seconds: elapsed() };
      if (step % s.evalEvery === 0 || step === s.steps) {
        entry.validLoss = await heldOutLoss(session, params, run.valid, s);
      }
      history.push(entry);
      run.onProgress?.({ step, steps: s.steps, loss, lr, tokensPerSecond, validLoss: entry.validLoss });
      if (step % s.evalEvery === 0 && step < s.steps) save();
      if (run.timeBudgetSeconds !== undefined && elapsed() - secondsBefore >= run.timeBudgetSeconds) break;
      if (run.stopAfterStep !== undefined && step >= run.stopAfterStep) break;
      if (run.shouldStop?.()) break;
    }
    finished = step >= s.steps;
    save();
  } finally {
    await session.release();
  }
  return { config, params, shapes, step, finished, history, reschedules, seconds: elapsed() };
}

/**
 * Writes trained parameters as a Hugging Face model folder: config.json, generation_config.json,
 * model.safetensors (linear weights back in [out, in]), in `dtype`. Tokenizer files are the
 * caller's to copy.
 */
export function exportModel(outDir: string, configJson: Record<string, unknown>, result: Pick<PretrainResult, 'config' | 'params'>, dtype: 'F32' | 'F16' | 'BF16'): void {
  mkdirSync(outDir, { recursive: true });
  const { config, params } = result;
  const entries = [...expectedTensors(config)].map(([name, shape]) => ({
    name,
    dtype,
    shape,
    data: () => {
      const p = params.get(name)!;
      // Graph layout holds linear weights [in, out]; checkpoints store [out, in].
      return shape.length === 2 && name !== EMBED_TOKENS ? transpose(p, shape[1]!, shape[0]!) : p;
    },
  }));
  writeSafetensors(join(outDir, 'model.safetensors'), entries, { metadata: { format: 'pt' } });
  writeJsonAtomic(join(outDir, 'config.json'), configJson);
  const generation: Record<string, unknown> = { bos_token_id: config.bosTokenId, eos_token_id: config.eosTokenIds[0] };
  writeJsonAtomic(join(outDir, 'generation_config.json'), generation);
  if (!existsSync(join(outDir, '.gitattributes'))) writeFileSync(join(outDir, '.gitattributes'), '*.safetensors binary\n');
}
