#!/usr/bin/env bash
# The main job: a real fine-tune on the embedded default model (the tiny preset with the GPT-2 tokenizer).
#  1. init    a random tiny model;
#  2. train   full SFT on docs/samples/word-map/pretrain.jsonl (one word table) -> the base model;
#  3. train   LoRA on docs/samples/word-map/train.jsonl (a different table), validating on eval.jsonl (unseen triples);
#  4. eval    the base and the base + adapter on eval.jsonl (loss, token accuracy, exact match);
#  5. merge   the adapter into a plain Hugging Face folder, evaluate it and generate from it.
# Usage: eng/demo.sh [work-dir]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
work="${1:-.work/demo}"
data=docs/samples/word-map
dotnet build src/FineTuning.Cli -c Release -nologo -v:q
finetune() { dotnet src/FineTuning.Cli/bin/Release/net10.0/finetune.dll "$@"; }
rm -rf "$work"

echo "== init: random tiny model"
finetune init "$work/random" --preset tiny --seed 1
echo "== train (full SFT): the base learns the first word table"
finetune train "$work/random" --method sft --data "$data/pretrain.jsonl" --out "$work/base" \
  --lr 3e-3 --schedule constant --max-steps 200 --batch-size 16 --log-every 50 --seed 1
echo "== eval: the base on the new table (unseen prompts)"
finetune eval "$work/base" --data "$data/eval.jsonl" --completion-only
echo "== inspect: LoRA r=16 on every projection"
finetune inspect "$work/base" --method lora --r 16 --targets all-linear
echo "== train (LoRA): learn the new table"
finetune train "$work/base" --method lora --r 16 --targets all-linear --data "$data/train.jsonl" --eval "$data/eval.jsonl" \
  --out "$work/adapter" --lr 5e-3 --schedule constant --max-steps 150 --batch-size 16 --log-every 50 --seed 1
echo "== eval: base + adapter"
finetune eval "$work/base" --adapter "$work/adapter" --data "$data/eval.jsonl" --completion-only --json
echo "== merge: adapter folded into a plain model folder"
finetune merge "$work/base" --adapter "$work/adapter" --out "$work/merged"
finetune eval "$work/merged" --data "$data/eval.jsonl" --completion-only
echo "== generate: greedy, from the merged model"
finetune generate "$work/merged" --prompt "map gold gray red =" --max-new-tokens 3
