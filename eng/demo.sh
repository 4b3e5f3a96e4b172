#!/usr/bin/env bash
# The main job: builds the finetune CLI, writes the embedded default model (tiny preset, GPT-2 tokenizer),
# inspects it, evaluates it on the sample data and generates from it. Usage: eng/demo.sh [work-dir]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
work="${1:-.work/demo}"
dotnet build src/FineTuning.Cli -c Release -nologo -v:q
finetune() { dotnet src/FineTuning.Cli/bin/Release/net10.0/finetune.dll "$@"; }

echo "== init"; finetune init "$work/model" --preset tiny --seed 1
echo "== inspect"; finetune inspect "$work/model"
echo "== eval"; finetune eval "$work/model" --data docs/samples/eval.jsonl --json
echo "== generate"; finetune generate "$work/model" --prompt "The capital of France is" --max-new-tokens 16 --temperature 0.8 --top-p 0.9 --seed 7
