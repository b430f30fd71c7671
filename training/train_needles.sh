#!/usr/bin/env bash
# A needle stage on long videos: continue an exported delta on videos of FRAMES frames (128)
# asked only what a sign said (the "needle" video task), compressed at ratios 8, 12, 16, and
# export the result. The curriculum's videos are short (24 frames): keeping one sign's VSTs
# findable among hundreds of others is a skill they never ask for, and the haystack grids
# (`training.niah`) show it missing when a model reads words in short videos but not in long.
#
#   training/train_needles.sh WORK DELTA [MINUTES]
#
# Trains at most MINUTES (default 3) of wall time over STEPS steps (default 60: the cosine is
# sized to them; a run stopped by the time keeps its checkpoint and exports it). BATCH (32
# videos) in forward groups of MICRO (16), LR (3e-4 peak), SEED (5), WORKERS (14),
# READING_LOSS (0.5; 0: none: the auxiliary reading head, `training.reading`), READING_HEAD
# (a checkpoint's heads.safetensors to start that head from), READING_WARMUP (steps a fresh
# head first learns alone), NUMBER_PROB (0.5).
# Writes WORK/needles/ (checkpoints, metrics.jsonl), WORK/needles.safetensors, WORK/log and
# WORK/NEEDLES_DONE. QUICK=1 shrinks it to a CPU smoke run.
set -euo pipefail
WORK=${1:?usage: training/train_needles.sh WORK DELTA [MINUTES]}
DELTA=${2:?usage: training/train_needles.sh WORK DELTA [MINUTES]}
MINUTES=${3:-3}
# shellcheck source=training/run_log.sh
source "$(dirname "$0")/run_log.sh"  # CONFIG, PY, HEAD, export_latest, output to WORK/log, say

if [[ ${QUICK:-0} == 1 ]]; then
    SIZE=(--batch 2 --micro-batch 2 --workers 2 --frames 16 --log-every 1)
    STEPS=${STEPS:-2}
else
    SIZE=(--batch "${BATCH:-32}" --micro-batch "${MICRO:-16}" --workers "${WORKERS:-14}"
          --frames "${FRAMES:-128}" --log-every 5)
    STEPS=${STEPS:-60}
fi
NEEDLES='{"video": 1, "image": 0, "multi_image": 0, "video_tasks": ["needle"]}'
WORLD="{\"max_objects\": 3, \"sign_prob\": 1.0, \"number_prob\": ${NUMBER_PROB:-0.5}}"

[[ -d $WORK/init ]] || $PY -m training.default_model init "$WORK/init" --delta "$DELTA"
RESUME=false
compgen -G "$WORK/needles/step_*" >/dev/null && RESUME=true
say "train $STEPS steps (resume: $RESUME)"
$PY -m training.recipe --config $CONFIG --model "$WORK/init" --output-dir "$WORK/needles" \
    --lora-init "$DELTA" --train-vision false --seed "${SEED:-5}" --lr "${LR:-3e-4}" \
    --warmup-steps 5 --world "$WORLD" --reading-loss "${READING_LOSS:-0.5}" "${SIZE[@]}" \
    --stages "[[$STEPS, [8, 12, 16], $NEEDLES]]" --checkpoint-every 0 "${HEAD[@]}" \
    --max-minutes "$MINUTES" --resume $RESUME
export_latest "$WORK/needles" "$WORK/needles.safetensors"
say "done"
touch "$WORK/NEEDLES_DONE"
