#!/usr/bin/env bash
# The whole GPU check of issue #13 in one run of under 10 minutes, on a machine with no network:
#   1. install the carried wheels this Python lacks (scripts/gpu_install.py; .gpu/wheels from
#      `make gpu-wheels`) and record the environment (OUT/environment.json);
#   2. `kositp bench gpu`: plain TRL vs kositp (backend trl) vs kositp (backend unsloth), LoRA and
#      QLoRA, on random-weight Llama-3.1-8B / Llama-3.2-1B / Gemma-3-1B shapes with the tiny Korean
#      tokenizer and the demo corpus (.gpu/assets from `make gpu-assets`), then SFT QLoRA -> one DPO
#      step -> export merge through the real commands. Each case has a time cap and the report is
#      rewritten after each one, so a run stopped early still leaves its figures.
# Outputs in $OUT: bench_gpu.json, bench_gpu.md, environment.json, gpu_check.log and logs.tar.gz (the
# per-case logs in one file: a device machine's output folder may bring back only a few files).
# Bulky files (random models, 16 GB for the 8B shape; run directories; the export) go to $WORK.
#
#   OUT=/tmp/out scripts/gpu_check.sh [more `kositp bench gpu` options, e.g. --steps 4]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check}
WORK=${WORK:-${TMPDIR:-/tmp}/kositp-gpu-work}
BUDGET=${GPU_CHECK_BUDGET:-560}   # seconds for this whole script (the device allows 600 per command)
PY=${PYTHON:-python3}
started=$SECONDS
mkdir -p "$OUT" "$WORK"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1

# Offline: nothing may wait on a network that is not there (huggingface_hub, transformers and
# datasets look-ups; Unsloth's statistics download). `kositp` sets the same itself; the pip step
# and anything run before it need them too.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export UNSLOTH_DISABLE_STATISTICS=1 UNSLOTH_OFFLINE=1
export UNSLOTH_ENABLE_LOGGING=1   # Unsloth says what it compiles and patches, in each case's log
export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"   # kositp from this tree, without an install
export KOSITP_HOME="$WORK/kositp-home"

echo "== gpu_check: $(date -u +%FT%TZ), budget ${BUDGET}s, out $OUT, work $WORK"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

for need in .gpu/assets/tiny/tokenizer.json .gpu/assets/data/train.jsonl; do
  [ -f "$need" ] || { echo "error: $need is missing: run 'make gpu-assets' and carry .gpu/assets"; exit 2; }
done

echo "== 1. wheels"
"$PY" scripts/gpu_install.py --wheels .gpu/wheels .gpu/wheels-arrow --report "$OUT/environment.json"
install_status=$?
if [ $install_status -ne 0 ]; then
  echo "error: required packages are missing (see $OUT/environment.json); nothing can train"
  exit $install_status
fi

echo "== 2. kositp bench gpu ($((SECONDS - started))s used)"
left=$((BUDGET - (SECONDS - started) - 10))
# dtype=bfloat16: the kositp variants load the base in bf16 like plain TRL does (TrainConfig's
# default dtype is float32, the CPU default; Unsloth picks bf16 itself).
timeout --kill-after=5 $((left + 5)) "$PY" -m kositp.cli bench gpu --out "$OUT" --work "$WORK" \
  --budget "$left" --data .gpu/assets/data --tokenizer .gpu/assets/tiny --set dtype=bfloat16 "$@"
bench_status=$?
tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$OUT/logs"
echo "== done in $((SECONDS - started))s (bench exit $bench_status); report: $OUT/bench_gpu.md"
exit $bench_status
