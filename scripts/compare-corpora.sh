#!/usr/bin/env bash
# Issue 18's corpus comparison: the same model (configs/ppd-base.json) pretrained on an equal
# token budget (1400 steps of 4 x 512 tokens = 2.87M tokens, about 20 minutes of a quiet 2-core
# machine) on each corpus with its own 8k tokenizer, then prompt tokens trained with equal
# settings, then scripts/corpus-report.ts writes docs/corpora.{md,json}: held-out loss (per token
# and per byte), greedy continuations (distinct 4-grams) and prompt-token accuracy.
#
#   default  data/corpus         (today's prose)           models/tokenizer-8k
#   prose    data/prose-corpus   (prose + four manuals)    models/tokenizer-prose-8k
#   code     data/code-corpus    (JS/TS from npm)          models/tokenizer-code-8k
#
# Resumable: a run that stops continues with its checkpoint. CORPORA="code prose" picks some.
# Smaller budgets on a busy machine: STOP_AT=400 stops every pretraining at that step (resumable;
# a later, larger STOP_AT continues it), PROMPT_SEQUENCES, PROMPT_VALID_SEQUENCES and PROMPT_STEPS
# shrink the prompt-token training (defaults 1000, 40 and 500).
set -euo pipefail
cd "$(dirname "$0")/.."
ppd() { npx tsx src/cli/main.ts "$@"; }
declare -A DATA=([default]=data/corpus [prose]=data/prose-corpus [code]=data/code-corpus)
declare -A TOKENIZER=([default]=models/tokenizer-8k [prose]=models/tokenizer-prose-8k [code]=models/tokenizer-code-8k)
for corpus in ${CORPORA:-default prose code}; do
  data=${DATA[$corpus]}
  run=runs/compare-$corpus
  [ -f "$data/train.txt" ] || { echo "error: $data/train.txt is missing: build it first (see $data/README.md)" >&2; exit 1; }
  target=${STOP_AT:-1400}
  trained=$(node -e "try { console.log(require('./$run/model/training.json').stepsDone) } catch { console.log(0) }")
  if [ "$trained" -lt "$target" ]; then
    rm -f "$run/model/ppd/accuracy.json"
    resume=()
    [ -f "$run/latest.json" ] && resume=(--resume)
    ppd pretrain --train "$data/train.txt" --valid "$data/valid.txt" --config configs/ppd-base.json \
      --tokenizer "${TOKENIZER[$corpus]}" --run "$run" --out "$run/model" \
      --steps 1400 --seq-len 512 --batch 4 --accum 1 --lr 3e-3 --warmup 100 --eval-every 200 --eval-windows 16 \
      --seed 0 --dtype f16 ${STOP_AT:+--stop-at $STOP_AT} ${THREADS:+--threads $THREADS} "${resume[@]}"
  fi
  if [ ! -f "$run/model/ppd/accuracy.json" ]; then
    mkdir -p "$run/model/ppd/cache"
    cp -n "$run"/tokens-*.i32 "$run/model/ppd/cache/" 2>/dev/null || true
    ppd train-prompts --model "$run/model" --train "$data/train.txt" --valid "$data/valid.txt" --out "$run/model/ppd" \
      --prompt-tokens 3 --virtual-tokens 1 --attention ensemble \
      --sequences ${PROMPT_SEQUENCES:-1000} --valid-sequences ${PROMPT_VALID_SEQUENCES:-40} --prefix-length 64 --generated 128 --top-k 32 \
      --steps ${PROMPT_STEPS:-500} --batch 4 --lr 1e-2 --seed 0 --budget 8 ${THREADS:+--threads $THREADS}
  fi
done
npx tsx scripts/corpus-report.ts
