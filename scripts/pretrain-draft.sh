#!/usr/bin/env bash
# Reproduces the bundled draft model (models/ppd-draft, 1.75M parameters, same tokenizer as
# ppd-base) for speculative decoding. Run after scripts/pretrain-default.sh (it reuses the corpus
# and tokenizer). Resumable like the default model.
set -euo pipefail
cd "$(dirname "$0")/.."
ppd() { npx tsx src/cli/main.ts "$@"; }
resume=()
[ -f runs/ppd-draft/latest.json ] && resume=(--resume)
mkdir -p runs/ppd-draft
cp -n runs/ppd-base/tokens-*.i32 runs/ppd-draft/ 2>/dev/null || true
ppd pretrain --train data/code-corpus/train.txt --valid data/code-corpus/valid.txt --config configs/ppd-draft.json \
  --tokenizer models/tokenizer-code-8k --run runs/ppd-draft --out models/ppd-draft \
  --steps ${PPD_DRAFT_STEPS:-2500} --seq-len 512 --batch 1 --accum 2 --lr 5e-3 --warmup 100 --eval-every 250 --eval-windows 16 \
  --seed 1 --dtype f16 ${PPD_DRAFT_MINUTES:+--minutes "$PPD_DRAFT_MINUTES"} "${resume[@]}"
ppd perplexity --model models/ppd-draft --file data/code-corpus/test.txt --json | tee models/ppd-draft/perplexity-test.json
