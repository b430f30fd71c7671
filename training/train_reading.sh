#!/usr/bin/env bash
# A reading stage on its own, before the curriculum: continue an exported delta on sign stills
# only, each asked what its sign says (`TaskMix.reading`), read through VSTs at ratios 2, 4 and
# then 8, 12, 16, and export the result. It teaches the skill a needle question needs and the
# curriculum's videos rarely ask for -- copying characters out of visual tokens -- in 16 tokens
# a still; use it before the curriculum whenever the tower or the projector is new (a tower from
# `training.vision_pretrain`, CELL=side_by_side). A step is launch-bound (a 135 M model), so a
# large batch of stills costs little more than the curriculum's 160.
#
#   training/train_reading.sh WORK DELTA [MINUTES]
#
# Sizes the run to MINUTES (default 7) of training at STEP_S seconds a step (default 1.4) --
# SMALL_SHARE (0.5) of the steps at ratios 2, 4, the rest at 8, 12, 16 -- and stops at
# MAX_MINUTES (default MINUTES + 1) with a checkpoint; running it again with the same WORK
# resumes (FINISH=1: fitting the steps not taken into this call's MAX_MINUTES). BATCH (640
# stills), LR (1e-3 peak), UNCOMPRESSED (0.15: that share of stills is read from uncompressed
# memories, so the "full" bound learns to read too), SEED (3), WORKERS (12),
# NUMBER_PROB (0.5, the world's: the share of signs that show a number rather than a word;
# numbers are the harder half, their digits often read out of order).
# READING_LOSS (0.5; 0: none): weight of the auxiliary reading head on the visual tokens
# (`training.reading`), which makes the projector keep each sign's characters in order;
# READING_HEAD=file starts that head from a checkpoint's heads.safetensors; READING_WARMUP=N
# lets a fresh one learn alone for N steps.
# TOWER=file (from `training.vision_pretrain`) replaces the delta's vision tower; the projector
# then learns to read the new one here. CELL=side_by_side starts a fresh projector that reads
# each token's 2 x 2 patches side by side (`VisualConfig.cell`) on the delta's tower.
# Writes WORK/reading/ (checkpoints, metrics.jsonl), WORK/reading.safetensors, WORK/log and
# WORK/READ_DONE. The curriculum continues from the export:
#   CONTINUE=WORK/reading.safetensors training/train_default.sh WORK2 MINUTES
# QUICK=1 shrinks it to a CPU smoke run.
set -euo pipefail
WORK=${1:?usage: training/train_reading.sh WORK DELTA [MINUTES]}
DELTA=${2:?usage: training/train_reading.sh WORK DELTA [MINUTES]}
MINUTES=${3:-7}
# shellcheck source=training/run_log.sh
source "$(dirname "$0")/run_log.sh"  # CONFIG, PY, HEAD, export_latest, output to WORK/log, say

if [[ ${QUICK:-0} == 1 ]]; then
    SIZE=(--batch 4 --micro-batch 4 --workers 2 --log-every 1 --checkpoint-every 2)
else
    BATCH=${BATCH:-640}
    SIZE=(--batch "$BATCH" --micro-batch "$BATCH" --workers "${WORKERS:-12}" --log-every 10
          --checkpoint-every 50)
fi
READING='{"video": 0, "image": 0, "multi_image": 0, "reading": 1}'
WORLD="{\"max_objects\": 3, \"sign_prob\": 0.5, \"number_prob\": ${NUMBER_PROB:-0.5}}"
STAGES=$($PY -m training.curriculum size --minutes "$MINUTES" --step-s "${STEP_S:-1.4}" \
    --small-share "${SMALL_SHARE:-0.5}" --mix "$READING" --min-steps 2)
say "reading stages $STAGES"

INIT=(--delta "$DELTA")
[[ -n ${TOWER:-} ]] && INIT+=(--vision-weights "$TOWER")
[[ -n ${CELL:-} ]] && INIT+=(--cell "$CELL")
[[ -d $WORK/init ]] || $PY -m training.default_model init "$WORK/init" "${INIT[@]}"
STOP_MINUTES=${MAX_MINUTES:-$(awk "BEGIN {print $MINUTES + 1}")}  # MINUTES may be 5.5
RESUME=false
compgen -G "$WORK/reading/step_*" >/dev/null && RESUME=true
if [[ $RESUME == true && ${FINISH:-0} == 1 ]]; then  # end the stage in this call (train_default.sh)
    STAGES=$($PY -m training.curriculum fit --stages "$STAGES" --run "$WORK/reading" \
        --minutes "$(awk "BEGIN {print $STOP_MINUTES - 0.5}")")
    say "reading stages fitted to this call: $STAGES"
fi
say "train (resume: $RESUME)"
$PY -m training.recipe --config $CONFIG --model "$WORK/init" --output-dir "$WORK/reading" \
    --lora-init "$DELTA" --train-vision false --seed "${SEED:-3}" --lr "${LR:-1e-3}" \
    --warmup-steps 10 --world "$WORLD" --uncompressed-share "${UNCOMPRESSED:-0.15}" "${SIZE[@]}" \
    --reading-loss "${READING_LOSS:-0.5}" "${HEAD[@]}" \
    --stages "$STAGES" --max-minutes "$STOP_MINUTES" --resume $RESUME
export_latest "$WORK/reading" "$WORK/reading.safetensors"
say "done"
touch "$WORK/READ_DONE"
