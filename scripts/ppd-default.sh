#!/usr/bin/env bash
# Trains the bundled PPD adapter (models/ppd-base/ppd) for the default model by self-distillation,
# measures its accuracy table on held-out text and builds its dynamic trees. A few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsx src/cli/main.ts train-prompts --model models/ppd-base \
  --train data/corpus/train.txt --valid data/corpus/valid.txt --out models/ppd-base/ppd \
  --prompt-tokens 3 --virtual-tokens 1 --attention ensemble \
  --examples 3000 --valid-examples 300 --prefix-length 64 --top-k 32 \
  --steps 800 --batch 8 --lr 1e-2 --seed 0 --budget "${PPD_BUDGET:-24}"
