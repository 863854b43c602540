#!/usr/bin/env bash
# Trains the bundled PPD adapter (models/ppd-base/ppd) for the default model by self-distillation
# on teacher sequences from the code corpus, with a prompt head that also reads the row the prompt
# tokens follow (--head residual-parent: 39.6 / 23.2 / 22.4 % top-1 against 32.5 / 20.3 / 17.3 % for
# --head residual on the 28.7M-token model, docs/PROMPT-TOKENS.md), measures
# its accuracy table on held-out text and builds its dynamic trees. About 30 minutes on 2 cores.
# PPD_MODEL=models/ppd-draft trains the draft model's adapter the same way; PPD_SEQUENCES and
# PPD_STEPS shrink the budget (defaults 1600 and 1200: twice 800 and 600 gave 33.1/16.8/13.9 % top-1
# against 30.2/14.7/12.0 % on the 20.5M-token model, docs/PROMPT-TOKENS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
model="${PPD_MODEL:-models/ppd-base}"
mkdir -p "$model/ppd/cache"
cp -n runs/*/tokens-*.i32 "$model/ppd/cache/" 2>/dev/null || true # token streams already made by pretraining
npx tsx src/cli/main.ts train-prompts --model "$model" \
  --train data/code-corpus/train.txt --valid data/code-corpus/valid.txt --out "$model/ppd" \
  --prompt-tokens 3 --virtual-tokens 1 --attention ensemble --head residual-parent \
  --sequences ${PPD_SEQUENCES:-1600} --valid-sequences 48 --prefix-length 64 --generated 128 --top-k 32 \
  --steps ${PPD_STEPS:-1200} --batch 4 --lr 1e-2 --seed 0 --budget "${PPD_BUDGET:-8}"
