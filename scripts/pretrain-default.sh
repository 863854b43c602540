#!/usr/bin/env bash
# Reproduces the bundled default model (models/ppd-base) from scratch on this machine:
# corpus from Debian/npm packages, an 8k BPE tokenizer, pretraining, held-out perplexity.
# About 1.5 hours on 2 cores. Interrupted? Run it again: pretraining resumes from runs/ppd-base.
set -euo pipefail
cd "$(dirname "$0")/.."
ppd() { npx tsx src/cli/main.ts "$@"; }

scripts/install-corpus.sh
npx tsx scripts/build-corpus.ts
[ -f models/tokenizer-8k/tokenizer.json ] ||
  npx tsx scripts/train-tokenizer.ts data/corpus/train.txt --out models/tokenizer-8k --vocab-size 8000
resume=()
[ -f runs/ppd-base/latest.json ] && resume=(--resume)
ppd pretrain --train data/corpus/train.txt --valid data/corpus/valid.txt --config configs/ppd-base.json \
  --tokenizer models/tokenizer-8k --run runs/ppd-base --out models/ppd-base \
  --steps 5500 --seq-len 512 --batch 4 --accum 1 --lr 3e-3 --warmup 150 --eval-every 250 --eval-windows 16 \
  --seed 0 --dtype f16 "${resume[@]}"
ppd perplexity --model models/ppd-base --file data/corpus/test.txt --json | tee models/ppd-base/perplexity-test.json
