#!/usr/bin/env bash
# Trains the bundled PPD adapter (models/ppd-base/ppd) for the default model by self-distillation
# on teacher sequences from the code corpus, with a prompt head that also reads the row the prompt
# tokens follow (--head residual-parent: 39.6 / 23.2 / 22.4 % top-1 against 32.5 / 20.3 / 17.3 % for
# --head residual on the 28.7M-token model at 1600 sequences and 1200 steps, docs/PROMPT-TOKENS.md),
# measures its accuracy table on held-out text and builds its dynamic trees. About an hour on 2
# cores (tokenizing the corpus 6 min, teacher sequences 20 min, training 36 min).
# PPD_MODEL=models/ppd-draft trains the draft model's adapter the same way; PPD_SEQUENCES and
# PPD_STEPS shrink the budget (defaults 3200 and 2400: 41.0 / 27.7 / 25.2 % top-1 against
# 39.6 / 23.2 / 22.4 % at 1600 and 1200, docs/PROMPT-TOKENS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
model="${PPD_MODEL:-models/ppd-base}"
mkdir -p "$model/ppd/cache"
cp -n runs/*/tokens-*.i32 "$model/ppd/cache/" 2>/dev/null || true # token streams already made by pretraining
npx tsx src/cli/main.ts train-prompts --model "$model" \
  --train data/code-corpus/train.txt --valid data/code-corpus/valid.txt --out "$model/ppd" \
  --prompt-tokens 3 --virtual-tokens 1 --attention ensemble --head residual-parent \
  --sequences ${PPD_SEQUENCES:-3200} --valid-sequences 48 --prefix-length 64 --generated 128 --top-k 32 \
  --steps ${PPD_STEPS:-2400} --batch 4 --lr 1e-2 --seed 0 --budget "${PPD_BUDGET:-8}"
