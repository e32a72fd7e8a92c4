#!/usr/bin/env bash
# The public-corpus experiment: base vs SFT vs DPO of the default model (gemma-3-270m) on the held-out
# test split of data/public, seed4 and KoBEST, with 95% intervals and paired differences.
#
#   scripts/experiment_public.sh            # the real run: hours on a 2-core CPU (docs/evaluation.md)
#   scripts/experiment_public.sh --quick    # the same stages on the tiny model with tiny limits (minutes)
#
# Stages: data build -> SFT (LoRA, time budget) -> preference pairs from the SFT model's own mistakes ->
# DPO (time budget) -> eval base / SFT / DPO -> `kositp eval compare` into $DOCS (comparison.md, .json, .png)
# plus stages.md, the commands and wall time of every stage. A stage whose output is complete is reused,
# so an interrupted run continues where it stopped (FRESH=1 redoes everything); inside an evaluation, the
# suites it finished are reused (`kositp eval --resume`).
#
# Environment: OUT (runs, default runs/public or runs/public-quick), DOCS (default docs/experiments/public,
# or $OUT/compare with --quick), KOSITP (the CLI), DATA_RECIPE, SFT_RECIPE, PREF_RECIPE, LIMIT (examples per
# benchmark and at most per held-out task), PAIRS_RECORDS, KOSITP_HOME and KOSITP_BENCHMARKS as for kositp.
# Another preference arm beside an existing run: PAIRS_RUN and PREF_RUN name its pairs and preference run
# folders in OUT (default pairs, dpo) and PAIRS_SET adds flags to `kositp data pairs`; data, SFT and the base
# and SFT evaluations are reused, e.g. the on-policy arm (docs/experiments/public/onpolicy):
#   DOCS=docs/experiments/public/onpolicy PAIRS_RUN=pairs-onpolicy PREF_RUN=dpo-onpolicy \
#   PAIRS_SET="--samples 4 --temperature 1.0 --tasks checkable --splits train" \
#   PREF_RECIPE=pref/public-dpo-onpolicy scripts/experiment_public.sh
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
case "${1:-}" in
  --quick) QUICK=1 ;;
  "") ;;
  *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac

KOSITP=${KOSITP:-.venv/bin/kositp}
DATA_RECIPE=${DATA_RECIPE:-data/public}
SFT_RECIPE=${SFT_RECIPE:-sft/public}
PREF_RECIPE=${PREF_RECIPE:-pref/public-dpo}
PAIRS_RUN=${PAIRS_RUN:-pairs}
PREF_RUN=${PREF_RUN:-dpo}
read -r -a PAIRS_SET <<< "${PAIRS_SET:-}"
if [[ $QUICK == 1 ]]; then
  OUT=${OUT:-runs/public-quick}
  DOCS=${DOCS:-$OUT/compare}
  MODEL=tiny
  LIMIT=${LIMIT:-3}
  PAIRS_RECORDS=${PAIRS_RECORDS:-12}
  # the tiny random model in place of gemma-3-270m, a few steps of each training stage
  DATA_SET=(tokenizer=tiny)
  SFT_SET=(model=tiny chat_format=auto trainer.max_steps=3 trainer.per_device_train_batch_size=2
           trainer.save_steps=100 trainer.eval_steps=100 max_length=256 time_budget_minutes=5)
  PREF_SET=(trainer.max_steps=2 trainer.save_steps=100 max_length=256 time_budget_minutes=5)
  EVAL_SET=(--max-new-tokens 16 --batch-size 8 --set label_max_new_tokens=4)
else
  OUT=${OUT:-runs/public}
  DOCS=${DOCS:-docs/experiments/public}
  MODEL=default
  LIMIT=${LIMIT:-300}
  PAIRS_RECORDS=${PAIRS_RECORDS:-300}
  DATA_SET=(tokenizer=default)
  SFT_SET=()
  PREF_SET=()
  EVAL_SET=(--max-new-tokens 128 --batch-size 32)
fi
[[ ${FRESH:-0} == 1 ]] && rm -rf "$OUT"
mkdir -p "$OUT" "$DOCS"
STAGES="$DOCS/stages.md"

"$KOSITP" config check "$DATA_RECIPE" "$SFT_RECIPE" "$PREF_RECIPE" >/dev/null

# when and where: the first invocation's line is kept, so a continued run still says when it began
this_invocation() {
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(nproc) cores," \
       "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg)"
}
[[ -e $OUT/started ]] || this_invocation > "$OUT/started"

MODE=""
[[ $QUICK == 1 ]] && MODE=" --quick"
{
  echo "# Stages of \`scripts/experiment_public.sh$MODE\`"
  echo
  echo "- first started: $(cat "$OUT/started")"
  echo "- this invocation: $(this_invocation)"
  echo "- recipes: $DATA_RECIPE, $SFT_RECIPE, $PREF_RECIPE; model $MODEL; limit $LIMIT per benchmark"
  echo
  echo "| stage | seconds | command |"
  echo "|---|---:|---|"
} > "$STAGES"

# stage NAME DONE_FILE COMMAND...: run COMMAND unless DONE_FILE exists, and log its wall time (kept in
# $OUT/stage-seconds, so a continued run still reports the stages an earlier one did)
mkdir -p "$OUT/stage-seconds"
stage() {
  local name=$1 done_file=$2
  shift 2
  local seconds_file="$OUT/stage-seconds/${name//\//-}"
  if [[ -e $done_file ]]; then
    echo "== $name: reused ($done_file exists)"
  else
    echo "== $name: $*"
    local started=$SECONDS
    "$@"
    echo $((SECONDS - started)) > "$seconds_file"
  fi
  echo "| $name | $(cat "$seconds_file" 2>/dev/null || echo '?') | \`$*\` |" >> "$STAGES"
}

stage data "$OUT/data/card.json" \
  "$KOSITP" data build --config "$DATA_RECIPE" --out "$OUT/data" "${DATA_SET[@]}"

# every held-out record is scored: no task of the test split may hold more records than LIMIT
python3 - "$OUT/data/test.jsonl" "$LIMIT" "$QUICK" <<'PY'
import collections, json, sys
path, limit, quick = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
tasks = collections.Counter(json.loads(line)["task"] for line in open(path, encoding="utf-8") if line.strip())
largest = max(tasks.values())
print(f"test split: {sum(tasks.values())} records over {len(tasks)} tasks (largest task {largest})")
if largest > limit and not quick:
    sys.exit(f"error: a task has {largest} test records, more than LIMIT={limit}: raise LIMIT to score them all")
PY

stage sft "$OUT/sft/run.json" \
  "$KOSITP" train sft --config "$SFT_RECIPE" --data "$OUT/data" --out "$OUT/sft" overwrite=true "${SFT_SET[@]}"

stage "$PAIRS_RUN" "$OUT/$PAIRS_RUN/card.json" \
  "$KOSITP" data pairs --data "$OUT/data" --out "$OUT/$PAIRS_RUN" --model "$OUT/sft" \
  --max-records "$PAIRS_RECORDS" --batch-size 32 --max-new-tokens 64 "${PAIRS_SET[@]}"

stage "$PREF_RUN" "$OUT/$PREF_RUN/run.json" \
  "$KOSITP" train pref --config "$PREF_RECIPE" --adapter "$OUT/sft" --data "$OUT/$PAIRS_RUN" --out "$OUT/$PREF_RUN" \
  overwrite=true "${PREF_SET[@]}"

# evaluate TARGET DIR: the generated suite (tasks) and the benchmarks (seed4, kobest) as two one-thread
# processes side by side in DIR.parts (one core each beats two threads in one process), then the whole
# list once more into DIR with --resume: it reuses both suites' results and writes the one report, so
# DIR/report.json (the stage's done file) exists only once every suite is in it
evaluate() {
  local target=$1 dir=$2 common=(--data "$OUT/data" --limit "$LIMIT" --quiet --resume "${EVAL_SET[@]}")
  mkdir -p "$dir.parts"
  OMP_NUM_THREADS=1 "$KOSITP" eval --model "$target" --suite tasks --out "$dir.parts" "${common[@]}" \
    > "$dir.parts/tasks.log" 2>&1 &
  local tasks_pid=$!
  OMP_NUM_THREADS=1 "$KOSITP" eval --model "$target" --suite seed4,kobest --out "$dir.parts" "${common[@]}" \
    > "$dir.parts/benchmarks.log" 2>&1 || { wait "$tasks_pid"; echo "error: see $dir.parts/benchmarks.log" >&2; return 1; }
  wait "$tasks_pid" || { echo "error: see $dir.parts/tasks.log" >&2; return 1; }
  mkdir -p "$dir/suites"
  cp "$dir.parts/suites/"*.json "$dir/suites/"
  "$KOSITP" eval --model "$target" --suite tasks,seed4,kobest --out "$dir" "${common[@]}"
}
for run in base sft "$PREF_RUN"; do
  target=$MODEL
  [[ $run != base ]] && target="$OUT/$run"
  stage "eval/$run" "$OUT/eval/$run/report.json" evaluate "$target" "$OUT/eval/$run"
done

"$KOSITP" eval compare "$OUT/eval/base" "$OUT/eval/sft" "$OUT/eval/$PREF_RUN" --out "$DOCS"
python3 - "$OUT" "$PREF_RUN" >> "$STAGES" <<'PY'
import json, sys
for run in ("sft", sys.argv[2]):  # how each training stage ended: its planned steps, or stopped on its time budget
    record = json.load(open(f"{sys.argv[1]}/{run}/run.json", encoding="utf-8"))
    print(f"- {run}: {record['final_step']} steps; time budget: {record.get('time_budget')}")
PY
echo "- finished: $(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$STAGES"
echo "comparison: $DOCS/comparison.md, $DOCS/comparison.png; stages: $STAGES"
