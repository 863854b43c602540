#!/usr/bin/env bash
# Reproduces the bundled default model (models/ppd-base) from scratch on this machine: the
# JavaScript/TypeScript corpus from npm (data/code-corpus, chosen in docs/corpora.md), its 8k BPE
# tokenizer (models/tokenizer-code-8k), pretraining, held-out perplexity. 14000 steps of 4 x 512
# tokens (28.7M tokens): about 3 h 40 min on 2 quiet cores (1.07 steps/s on an AMD EPYC).
# Interrupted? Run it again: pretraining resumes from runs/ppd-base; PPD_BASE_STEPS=N on a resume
# changes the plan (the cosine schedule follows it from there). The bundled model was trained over
# several sessions and its plan changed seven times (the `reschedules` in models/ppd-base/training.json,
# listed in its model card), so a straight 14000-step run gives a model like it, not the same bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
ppd() { npx tsx src/cli/main.ts "$@"; }

[ -f data/code-corpus/train.txt ] || npx tsx scripts/build-code-corpus.ts
[ -f models/tokenizer-code-8k/tokenizer.json ] ||
  npx tsx scripts/train-tokenizer.ts data/code-corpus/train.txt --out models/tokenizer-code-8k --vocab-size 8000
resume=()
[ -f runs/ppd-base/latest.json ] && resume=(--resume)
ppd pretrain --train data/code-corpus/train.txt --valid data/code-corpus/valid.txt --config configs/ppd-base.json \
  --tokenizer models/tokenizer-code-8k --run runs/ppd-base --out models/ppd-base \
  --steps ${PPD_BASE_STEPS:-14000} --seq-len 512 --batch 4 --accum 1 --lr 3e-3 --warmup 150 --eval-every 250 --eval-windows 16 \
  --seed 0 --dtype f16 ${THREADS:+--threads $THREADS} "${resume[@]}"
ppd perplexity --model models/ppd-base --file data/code-corpus/test.txt --json | tee models/ppd-base/perplexity-test.json
