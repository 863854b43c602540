#!/usr/bin/env bash
# Builds the bundled adapter's static n-gram table (models/ppd-base/ppd/ngram.bin), which
# `generate --ppd` / `serve --ppd` then verify beside the trees: the model's own greedy
# continuations of prompts cut from its training text, counted as contexts of 1..4 tokens.
# 100k generated tokens: about 2 minutes on 2 idle cores for a 7.85M-parameter model (it decodes
# with the context lookup at ~960 tokens/s there), a larger model proportionally longer
# (docs/NGRAM.md); PPD_NGRAM_TOKENS=50000 halves it. Resumable: run it again after an
# interruption and it goes on from models/ppd-base/ppd/ngram.bin.partial.
# Settings: PPD_MODEL (models/ppd-base), PPD_NGRAM_DATA (the training text of the model's
# tokenizer's corpus), PPD_NGRAM_TOKENS (100000 generated tokens).
set -euo pipefail
cd "$(dirname "$0")/.."
model="${PPD_MODEL:-models/ppd-base}"
if [ -z "${PPD_NGRAM_DATA:-}" ]; then
  # The corpus whose tokenizer the model has: prompts in the text it was trained on.
  if cmp -s "$model/tokenizer.json" models/tokenizer-code-8k/tokenizer.json; then
    PPD_NGRAM_DATA=data/code-corpus/train.txt
    [ -f "$PPD_NGRAM_DATA" ] || { echo "error: $PPD_NGRAM_DATA: not found (it is not committed; make it with \`npm run corpus:code\`)" >&2; exit 1; }
  elif cmp -s "$model/tokenizer.json" models/tokenizer-prose-8k/tokenizer.json; then
    PPD_NGRAM_DATA=data/prose-corpus/train.txt
    [ -f "$PPD_NGRAM_DATA" ] || { echo "error: $PPD_NGRAM_DATA: not found (it is not committed; make it with \`npm run corpus:prose\`)" >&2; exit 1; }
  else
    PPD_NGRAM_DATA=data/corpus/train.txt
  fi
fi
npx tsx src/cli/main.ts ngram build --model "$model" --ppd "$model/ppd" --data "$PPD_NGRAM_DATA" \
  --generate "${PPD_NGRAM_TOKENS:-100000}" --length 128 --prompt-tokens 64 --seed 0 \
  --max-ngram 4 --min-count 2 --top 4
npx tsx src/cli/main.ts ngram info --table "$model/ppd/ngram.bin"
