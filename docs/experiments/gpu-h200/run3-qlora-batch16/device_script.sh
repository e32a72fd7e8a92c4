#!/usr/bin/env bash
# Session 11's device check, one call: (A) kositp's TRL QLoRA without PEFT's fp32 upcast against plain
# TRL's QLoRA (8B shape); (B) SFT QLoRA -> DPO step (base now 4-bit) -> export on the 1B shape, with
# the DPO step's peak memory; (C) longer 8B LoRA steps (batch 16): plain TRL vs kositp+Unsloth.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export UNSLOTH_DISABLE_STATISTICS=1 UNSLOTH_OFFLINE=1 UNSLOTH_ENABLE_LOGGING=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src" KOSITP_HOME=/tmp/w/kositp-home
WORK=/tmp/w; mkdir -p $WORK
T0=$SECONDS; BUDGET=${BUDGET:-520}
left() { echo $((BUDGET - (SECONDS - T0))); }
exec > >(tee -a "$OUT/session11.log") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 scripts/gpu_install.py --wheels .gpu/wheels --report "$OUT/environment.json" || exit 3
B="python3 -m kositp.cli bench gpu --work $WORK --data .gpu/assets/data --tokenizer .gpu/assets/tiny --set dtype=bfloat16"
echo "== A ($(left)s left)"
$B --out $WORK/A --budget 150 --shapes llama-3.1-8b --adapters qlora --variants trl-plain,kositp-trl --no-extras
echo "== B ($(left)s left)"
$B --out $WORK/B --budget 210 --shapes llama-3.2-1b --adapters qlora --variants kositp-trl
for s in sft dpo; do echo "-- $s summary"; cat $WORK/extras/$s/summary.json; echo; cp $WORK/extras/$s/summary.json "$OUT/extras_${s}_summary.json"; done
echo "== C ($(left)s left)"
L=$(left); [ $L -gt 60 ] && $B --out $WORK/C --budget $((L - 15)) --shapes llama-3.1-8b --adapters lora --variants trl-plain,kositp-unsloth --batch-size 16 --steps 12 --no-extras
for p in A B C; do cp $WORK/$p/bench_gpu.json "$OUT/bench_$p.json" 2>/dev/null; done
tar -czf "$OUT/logs.tar.gz" -C $WORK A/logs B/logs C/logs 2>/dev/null
echo "== done in $((SECONDS - T0))s"
