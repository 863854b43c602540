/**
 * Writes models/<name>/README.md, the model card, from the files the pipeline produced: the
 * config, training.json (ppd pretrain), perplexity-test.json (ppd perplexity) and the corpus
 * manifest. Every figure on the card comes from one of those files.
 *
 *   npx tsx scripts/model-card.ts models/ppd-base
 */
import { join } from 'node:path';
import { writeFileAtomic } from '../src/format/atomic.ts';
import { readJsonObject } from '../src/format/text-file.ts';
import { parameterCount, parseLlamaConfig } from '../src/model/config.ts';

const dir = process.argv[2] ?? 'models/ppd-base';
const config = parseLlamaConfig(readJsonObject(join(dir, 'config.json')));
const training = readJsonObject(join(dir, 'training.json')) as Record<string, any>;
const ppl = readJsonObject(join(dir, 'perplexity-test.json')) as Record<string, any>;
const manifest = readJsonObject('data/corpus/manifest.json') as Record<string, any>;
const s = training.settings;
const evals = (training.history as { step: number; validLoss?: number }[]).filter((h) => h.validLoss !== undefined);
const last = evals.at(-1);

const card = `# ppd-base

A small LLaMA-architecture language model trained from scratch by ppd on this project's machine,
so that ppd has a real model to decode with (no model can be downloaded here). It is the base
model of the bundled PPD adapter in \`ppd/\`.

| | |
| --- | --- |
| architecture | LLaMA (\`model_type\` llama), ${config.numLayers} layers, hidden ${config.hiddenSize}, MLP ${config.intermediateSize}, ${config.numHeads} query heads / ${config.numKvHeads} key-value heads (grouped-query attention), head dim ${config.headDim}, RoPE θ ${config.ropeTheta}, tied embeddings |
| parameters | ${(parameterCount(config) / 1e6).toFixed(2)}M (stored as F16 in \`model.safetensors\`; ppd computes in F32) |
| vocabulary | ${config.vocabSize} tokens: LLaMA-style BPE with byte fallback, trained by \`scripts/train-tokenizer.ts\` on the training split |
| context | ${config.maxPositionEmbeddings} tokens (trained on windows of ${s.seqLen}) |
| data | ${manifest.sources.map((x: any) => x.title).join('; ')} — public domain; see \`data/corpus/README.md\` |
| training tokens | ${training.trainTokens} in the training split; ${training.tokensSeen} seen (${(training.tokensSeen / training.trainTokens).toFixed(2)} epochs) |
| steps | ${training.stepsDone} of ${s.steps} planned${training.finished ? '' : ' (stopped early by its time budget; resumable)'}, ${s.seqLen * s.batchWindows * s.accumulation} tokens per step |
| optimiser | AdamW (β 0.9/0.95, weight decay ${s.weightDecay}), peak lr ${s.schedule.peakLr}, ${s.schedule.warmupSteps} warm-up steps, cosine to ${s.schedule.minLrRatio}× peak, clipping at ${s.clipNorm} |
| wall time | ${(training.wallSeconds / 60).toFixed(0)} min on 2 CPU cores (ONNX Runtime, ppd's own autodiff) |
| held-out loss | ${last ? `${last.validLoss!.toFixed(3)} nats/token on the validation split at step ${last.step}` : 'n/a'} |
| test perplexity | **${ppl.perplexity.toFixed(2)}** (${ppl.nll.toFixed(4)} nats/token) over ${ppl.tokens} tokens of \`data/corpus/test.txt\`, window ${ppl.window}, stride ${ppl.stride} |

## Reproduce

\`\`\`sh
npm run pretrain:default   # corpus, tokenizer, pretraining (resumable), test perplexity
npx tsx scripts/model-card.ts models/ppd-base
\`\`\`

Exact pretraining command: \`ppd pretrain --train data/corpus/train.txt --valid data/corpus/valid.txt
--config configs/ppd-base.json --tokenizer models/tokenizer-8k --run runs/ppd-base --out models/ppd-base
--steps ${s.steps} --seq-len ${s.seqLen} --batch ${s.batchWindows} --accum ${s.accumulation} --lr ${s.schedule.peakLr}
--warmup ${s.schedule.warmupSteps} --eval-every ${s.evalEvery} --eval-windows ${s.evalWindows} --seed ${s.seed} --dtype f16\`.

## Held-out loss during training

| step | validation loss |
| --- | --- |
${evals.map((h) => `| ${h.step} | ${h.validLoss!.toFixed(3)} |`).join('\n')}

## Limits

A few million parameters trained for about an hour on two CPU cores: it writes text in the
style of its corpus (the King James Bible dominates its sense of style) with local fluency and no
knowledge worth trusting. It exists to make decoding speed measurable on a real model.
`;
writeFileAtomic(join(dir, 'README.md'), card);
process.stdout.write(`wrote ${join(dir, 'README.md')}\n`);
