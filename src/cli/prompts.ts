/**
 * `ppd train-prompts`, `ppd eval-prompts`, `ppd tree build` and `ppd tree convert`: the PPD
 * training pipeline from a base model and text to an adapter folder holding the prompt tokens,
 * their accuracy table and a dynamic tree set (or one converted from the reference's trees).
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { cachedTokenStream } from '../data/tokenize.ts';
import { FormatError, InputError } from '../errors.ts';
import { readTextFile } from '../format/text-file.ts';
import { pickReferenceTrees, readReferenceTreeFile, treeSetFromReference } from '../ppd/reference-trees.ts';
import { openModelDir } from '../checkpoint/model-dir.ts';
import { loadModel, requireTokenizer, type LoadedModel } from '../checkpoint/load.ts';
import { ADAPTER_CONFIG, PromptAdapter } from '../ppd/adapter.ts';
import { loadAdapter, loadAdapterShape, saveAdapter } from '../ppd/adapter-files.ts';
import type { AttentionVariant } from '../ppd/prompt-mask.ts';
import { buildDistillSet, loadDistillSet, saveDistillSet, type DistillSet } from '../train/distill.ts';
import { readAccuracyTable, writeAccuracyFile } from '../ppd/accuracy.ts';
import { ACCURACY_FILE } from '../ppd/adapter-folder.ts';
import { TREES_FILE } from '../ppd/setup.ts';
import { accuracyTable, heldOutKl, PrefixCaches, PromptSession, trainPrompts } from '../train/train-prompts.ts';
import { saveTreeSet } from '../ppd/tree-files.ts';
import { buildTreeSet } from '../ppd/tree-builder.ts';
import { Progress } from '../report/progress.ts';
import { configHash } from '../ppd/adapter.ts';

export interface TrainPromptsFlags {
  model: string;
  train: string;
  valid: string;
  out: string;
  promptTokens: number;
  virtualTokens: number;
  attention: AttentionVariant;
  initText: string;
  examples: number;
  validExamples: number;
  prefixLength: number;
  /** Up to this many of each prefix's last tokens are the model's own greedy text (train/distill.ts). */
  selfGenerated: number;
  topK: number;
  steps: number;
  batch: number;
  lr: number;
  seed: number;
  budget: number;
  threads?: number;
}


/** The teacher set for `file`, from the adapter folder's cache when the same one was built before. */
async function distillSet(
  loaded: LoadedModel,
  file: string,
  out: string,
  name: string,
  o: { count: number; prefixLength: number; promptTokens: number; topK: number; seed: number; selfGenerated: number },
): Promise<DistillSet> {
  const tokenizer = requireTokenizer(loaded);
  // A .gguf file holds weights and tokenizer both; a folder keeps them in two files.
  const gguf = statSync(loaded.dir).isFile();
  const weights = gguf ? loaded.dir : join(loaded.dir, 'model.safetensors');
  const key = `${configHash(loaded.config)}-${existsSync(weights) ? statSync(weights).mtimeMs : 0}-M${o.count}-L${o.prefixLength}-N${o.promptTokens}-K${o.topK}-s${o.seed}${o.selfGenerated > 0 ? `-G${o.selfGenerated}` : ''}`;
  const path = join(out, 'cache', `distill-${name}-${key}.safetensors`);
  const cached = loadDistillSet(path);
  if (cached) return cached;
  const tokenizerKey = gguf ? `${weights}:${statSync(weights).size}:${statSync(weights).mtimeMs}` : readTextFile(join(loaded.dir, 'tokenizer.json'));
  const stream = cachedTokenStream(tokenizer, tokenizerKey, readTextFile(file), join(out, 'cache'));
  const started = performance.now();
  const bar = new Progress(`teacher (${name})`, o.count, 'examples');
  const set = await buildDistillSet(loaded.model, stream, { ...o, onProgress: (done) => bar.update(done) });
  bar.stop();
  saveDistillSet(path, set);
  process.stderr.write(`${name} teacher set: ${o.count} examples in ${((performance.now() - started) / 1000).toFixed(1)} s, ${(statSync(path).size / 1e6).toFixed(2)} MB\n`);
  return set;
}

function printTable(acc: number[][]): void {
  const ranks = acc[0]?.length ?? 0;
  process.stdout.write(`prompt token | ${Array.from({ length: ranks }, (_, k) => `top-${k + 1}`.padStart(6)).join(' ')}\n`);
  acc.forEach((row, i) => {
    let cumulative = 0;
    const cells = row.map((a) => (cumulative += a).toFixed(3).padStart(6));
    process.stdout.write(`${String(i).padStart(12)} | ${cells.join(' ')}\n`);
  });
}

export async function trainPromptsCommand(f: TrainPromptsFlags): Promise<void> {
  const started = performance.now();
  const loaded = await loadModel(f.model, { threads: f.threads, needsTokenizer: true });
  const tokenizer = requireTokenizer(loaded);
  const shape = { promptTokens: f.promptTokens, virtualTokens: f.virtualTokens, prefixLength: f.prefixLength, topK: f.topK };
  const train = await distillSet(loaded, f.train, f.out, 'train', { count: f.examples, ...shape, seed: f.seed, selfGenerated: f.selfGenerated });
  const valid = await distillSet(loaded, f.valid, f.out, 'valid', { count: f.validExamples, ...shape, seed: f.seed + 1, selfGenerated: f.selfGenerated });

  const files = openModelDir(f.model);
  const session = await PromptSession.create(loaded.config, files.tensors, shape, { threads: f.threads });
  files.tensors.close();
  const adapter = PromptAdapter.initialise(loaded.config, (ids) => loaded.model.embed(ids), tokenizer.encode(f.initText, { addBos: false }), {
    promptTokens: f.promptTokens,
    virtualTokens: f.virtualTokens,
    attention: f.attention,
    initText: f.initText,
  });
  const trainCaches = new PrefixCaches(loaded.model, train);
  const validCaches = new PrefixCaches(loaded.model, valid);
  // All prefix caches first, so the two ORT sessions do not alternate (their idle threads spin).
  const warm = new Progress('prefix caches', train.count + valid.count, 'examples');
  let warmed = 0;
  for (const [caches, set] of [[trainCaches, train], [validCaches, valid]] as const) {
    for (let m = 0; m < set.count; m++) {
      await caches.get(m);
      warm.update(++warmed);
    }
  }
  warm.stop();
  const initialKl = await heldOutKl(session, adapter, valid, validCaches);
  const bar = new Progress('train-prompts', f.steps, 'steps', ['kl', 'valid kl', 'lr']);
  let lastValid = initialKl.toFixed(4);
  const trainStart = performance.now();
  const history = await trainPrompts(
    session,
    adapter,
    { set: train, caches: trainCaches },
    { set: valid, caches: validCaches, limit: valid.count },
    { steps: f.steps, batch: f.batch, schedule: { peakLr: f.lr, warmupSteps: Math.ceil(f.steps / 20), minLrRatio: 0 }, seed: f.seed, evalEvery: Math.max(1, Math.floor(f.steps / 10)) },
    (p) => {
      if (p.validKl !== undefined) lastValid = p.validKl.toFixed(4);
      bar.update(p.step, { kl: p.kl.toFixed(4), 'valid kl': lastValid, lr: p.lr.toExponential(2) });
    },
  );
  bar.stop();
  const trainSeconds = (performance.now() - trainStart) / 1000;
  const acc = await accuracyTable(session, adapter, valid, validCaches);
  await session.release();

  const { parameters, share } = adapter.parameterShare(loaded.config);
  adapter.config.training = {
    base: f.model,
    trainText: f.train,
    examples: f.examples,
    validExamples: f.validExamples,
    prefixLength: f.prefixLength,
    selfGenerated: f.selfGenerated,
    teacherTopK: f.topK,
    steps: f.steps,
    batch: f.batch,
    lr: f.lr,
    seed: f.seed,
    heldOutKlBefore: initialKl,
    heldOutKlAfter: history.at(-1)?.validKl,
    trainSeconds,
    wallSeconds: (performance.now() - started) / 1000,
    trainableParameters: parameters,
    shareOfBase: share,
    history,
  };
  saveAdapter(adapter, f.out);
  writeAccuracyFile(join(f.out, ACCURACY_FILE), acc, valid.count, f.valid);
  const trees = buildTreeSet(acc, { budget: f.budget, promptTokens: f.promptTokens, virtualTokens: f.virtualTokens, attention: f.attention, accuracySource: join(f.out, ACCURACY_FILE) });
  saveTreeSet(join(f.out, TREES_FILE), trees);
  printTable(acc);
  process.stderr.write(
    `held-out KL ${initialKl.toFixed(4)} -> ${history.at(-1)?.validKl?.toFixed(4)}; ${parameters} trainable parameters ` +
      `(${(share * 100).toPrecision(2)} % of the base model); training ${trainSeconds.toFixed(0)} s; ` +
      `trees for budget ${f.budget}: expected ${trees.expectedTokensPerStep.toFixed(2)} tokens/step; wrote ${f.out}\n`,
  );
  await loaded.model.release();
}

export async function evalPromptsCommand(f: {
  model: string;
  ppd: string;
  data: string;
  examples: number;
  prefixLength: number;
  selfGenerated: number;
  seed: number;
  json?: boolean;
  threads?: number;
}): Promise<void> {
  const loaded = await loadModel(f.model, { threads: f.threads, needsTokenizer: true });
  const adapter = loadAdapter(f.ppd, loaded.config);
  const shape = { promptTokens: adapter.promptTokens, virtualTokens: adapter.virtualTokens, prefixLength: f.prefixLength, topK: 10 };
  const set = await distillSet(loaded, f.data, f.ppd, 'eval', { count: f.examples, ...shape, seed: f.seed, selfGenerated: f.selfGenerated });
  const files = openModelDir(f.model);
  const session = await PromptSession.create(loaded.config, files.tensors, shape, { threads: f.threads });
  files.tensors.close();
  const acc = await accuracyTable(session, adapter, set, new PrefixCaches(loaded.model, set));
  await session.release();
  await loaded.model.release();
  writeAccuracyFile(join(f.ppd, ACCURACY_FILE), acc, set.count, f.data);
  if (f.json) process.stdout.write(JSON.stringify({ examples: set.count, accuracy: acc }) + '\n');
  else printTable(acc);
}

export function treeBuildCommand(f: { accuracies: string; budget: number; out?: string; maxRank?: number }): void {
  const acc = readAccuracyTable(f.accuracies);
  const adapterDir = join(f.accuracies, '..');
  const adapter = existsSync(join(adapterDir, ADAPTER_CONFIG)) ? loadAdapterShape(adapterDir) : undefined;
  if (f.budget < 1) throw new InputError('--budget must be at least 1');
  const trees = buildTreeSet(acc, {
    budget: f.budget,
    promptTokens: acc.length,
    virtualTokens: adapter?.virtualTokens ?? 1,
    attention: adapter?.attention ?? 'ensemble',
    maxRank: f.maxRank,
    accuracySource: f.accuracies,
  });
  const out = f.out ?? join(f.accuracies, '..', TREES_FILE);
  saveTreeSet(out, trees);
  trees.trees.forEach((tree, d) =>
    process.stdout.write(`d=${d}: ${tree.candidates.length} candidates, expected accepted length ${trees.expectedAcceptedLength[d]!.toFixed(3)}\n`),
  );
  process.stdout.write(`expected tokens per step ${trees.expectedTokensPerStep.toFixed(3)}; wrote ${out}\n`);
}

export function treeConvertCommand(f: { from: string; name?: string; out?: string; adapter?: string; promptTokens?: number; virtualTokens?: number; attention?: AttentionVariant }): void {
  if (!existsSync(f.from)) throw new FormatError(f.from, 'not found');
  const reference = pickReferenceTrees(readReferenceTreeFile(readTextFile(f.from), f.from), f.from, f.name);
  const source = f.name === undefined ? f.from : `${f.from} (${f.name})`;
  // The adapter's own N, V and attention, unless the flags say otherwise.
  const shape = f.adapter === undefined ? undefined : loadAdapterShape(f.adapter);
  const out = f.out ?? (f.adapter === undefined ? undefined : join(f.adapter, TREES_FILE));
  if (out === undefined) throw new InputError('tree convert needs --out FILE or --adapter DIR (to write DIR/trees.json)');
  const trees = treeSetFromReference(reference, {
    promptTokens: f.promptTokens ?? shape?.promptTokens,
    virtualTokens: f.virtualTokens ?? shape?.virtualTokens,
    attention: f.attention ?? shape?.attention,
    source,
  });
  saveTreeSet(out, trees);
  trees.trees.forEach((tree, d) =>
    process.stdout.write(`d=${d}: ${tree.candidates.length} candidates, expected accepted length ${trees.expectedAcceptedLength[d]!.toFixed(3)}\n`),
  );
  process.stdout.write(`budget ${trees.budget} rows; expected tokens per step ${trees.expectedTokensPerStep.toFixed(3)}; wrote ${out}\n`);
}
