#!/usr/bin/env bash
# A binding stage on its own, before the curriculum: continue an exported delta on stills of 2-3
# objects whose colours and shapes all differ, asked the colour or the count of a named shape
# and the shape of a named colour (`TaskMix.image` with no signs), in two runs, and export the
# result. The shipped model names one of a still's objects but picks which at chance
# (`training.binding_probe`), and no continuation taught it while most of its memories were
# compressed. On the GPU (docs/results.md, "What the candidates after run 8 found", 10-11):
#
#   1. raw: every memory uncompressed (the language model reads the 16 raw tokens); the
#      attribute loss sat at 0.43-0.47 for ~100 steps of 160 stills, then fell to 0.18, and
#      after 294 steps the uncompressed answers were 95 / 86 % (colour of a shape, 2 / 3
#      objects) and 81 / 70 % (shape of a colour) -- the same stills at 15 % uncompressed
#      stayed at chance after 196 steps, the language model's own weights trained or not;
#   2. compress: from its export, memories at ratios 8, 12, 16 again (15 % uncompressed): 4x
#      memories then carry it (88 / 78 %, 77 / 62 %), 16x (one VST a still) barely.
#
#   training/train_binding.sh WORK DELTA
#
# RAW_STEPS (300) and COMPRESS_STEPS (210) steps of BATCH (160) stills each, LR (5e-4 peak)
# after 5 warm-up steps, SEED (29; the second run takes SEED + 2), WORKERS (12), RATIOS of the
# second run ('[8, 12, 16]'), MIX of both runs (binding stills alone; stills without a sign cost
# the numbers, docs/results.md; '{"video": 0, "image": 0.8, "multi_image": 0, "reading": 0.2}'
# puts sign stills among them, untried), RAW_MIX of the raw run alone where it differs (binding
# is learned from ~16,000 binding stills: a compress MIX that adds reading and existence stills
# would dilute the raw run's). The tower and the projector stay as DELTA has them (the
# tokens already hold which colour goes with which shape:
# `docs/results/default_model/binding_attention_probe.md`); TRAIN_PROJECTOR=true trains the
# projector in both runs, for a DELTA whose tower was put in by `training.swap_tower`: a
# projector fitted to the old tower's tokens hands on only part of what the new tower tells
# apart (held-out pairings' shapes 35.6 % against 88.2 % from the tower, docs/results.md,
# "What the candidates after run 8 found", 14).
# POOL_STRIDE=1 trains 64 tokens a frame instead of DELTA's 16 (`default_model init
# --pool-stride`): at 16x a still then keeps 4 VSTs, which carried binding where one did not.
# RAW_STEPS=0 skips the raw run: the compress run starts from DELTA itself, for a delta that
# already binds uncompressed (an earlier binding export) and a mix that adds other stills to it
# (MIX with "reading" and "exist_stills"; WORLD replaces the stills' world, e.g. with
# "number_prob"; UNCOMPRESSED, default 0.15, is the compress run's uncompressed share).
# MAX_MINUTES (this call's, for both runs) stops a run early with a checkpoint; running the
# script again with the same WORK resumes where it stopped. STOP_AFTER=raw exports the raw run
# and stops: the compress run is then sized (COMPRESS_STEPS) to the time left once the raw
# run's is known, by running the script again with the same WORK. Writes WORK/raw/, WORK/compress/
# (checkpoints, metrics.jsonl), WORK/raw.safetensors, WORK/binding.safetensors, WORK/log and
# WORK/BIND_DONE. The curriculum continues from the export, keeping binding stills in its mix:
#   CONTINUE=WORK/binding.safetensors MIX='{"image": 0.3, ...}' training/train_default.sh WORK2
# QUICK=1 shrinks it to a CPU smoke run.
set -euo pipefail
WORK=${1:?usage: training/train_binding.sh WORK DELTA}
DELTA=${2:?usage: training/train_binding.sh WORK DELTA}
# shellcheck source=training/run_log.sh
source "$(dirname "$0")/run_log.sh"  # CONFIG, PY, export_latest, output to WORK/log, say

if [[ ${QUICK:-0} == 1 ]]; then
    RAW_STEPS=${RAW_STEPS:-2}; COMPRESS_STEPS=${COMPRESS_STEPS:-2}
    SIZE=(--batch 4 --micro-batch 4 --workers 1 --log-every 1 --checkpoint-every 2)
else
    BATCH=${BATCH:-160}
    SIZE=(--batch "$BATCH" --workers "${WORKERS:-12}" --log-every 5 --checkpoint-every 40)
fi
# stills only, every one of 2-3 objects and no sign: each question names a colour or a shape
MIX=${MIX:-'{"video": 0, "image": 1, "multi_image": 0}'}
WORLD=${WORLD:-'{"min_objects": 2, "max_objects": 3, "sign_prob": 0.0}'}
STARTED=$(date +%s)  # MAX_MINUTES is this call's, shared by the two runs

# bind RUN START STEPS SEED UNCOMPRESSED RATIOS MIX: one run of stills from START's delta
bind() {
    local run=$1 start=$2 steps=$3 seed=$4 uncompressed=$5 ratios=$6 mix=$7 resume=false stop=()
    if [[ -n ${MAX_MINUTES:-} ]]; then
        stop=(--max-minutes "$(awk "BEGIN {print $MAX_MINUTES - ($(date +%s) - $STARTED) / 60}")")
    fi
    local pool=()
    [[ -n ${POOL_STRIDE:-} ]] && pool=(--pool-stride "$POOL_STRIDE")
    [[ -d $WORK/init_$run ]] || $PY -m training.default_model init "$WORK/init_$run" \
        --delta "$start" "${pool[@]}"
    compgen -G "$WORK/$run/step_*" >/dev/null && resume=true
    say "$run: $steps steps, uncompressed share $uncompressed, ratios $ratios (resume: $resume)"
    $PY -m training.recipe --config $CONFIG --model "$WORK/init_$run" --output-dir "$WORK/$run" \
        --lora-init "$start" --train-vision false --train-projector "${TRAIN_PROJECTOR:-false}" \
        --seed "$seed" --lr "${LR:-5e-4}" --warmup-steps 5 --mix "$mix" --world "$WORLD" \
        --uncompressed-share "$uncompressed" --stages "[[$steps, $ratios]]" "${SIZE[@]}" \
        "${stop[@]}" --resume $resume
}

# finished RUN STEPS: whether RUN's last checkpoint is its last step (MAX_MINUTES may stop it
# earlier: the next call resumes it rather than going on from a half-trained start)
finished() {
    (( $($PY -m training.curriculum steps-done "$WORK/$1") >= $2 ))
}

SEED=${SEED:-29}; RAW_STEPS=${RAW_STEPS:-300}; COMPRESS_STEPS=${COMPRESS_STEPS:-210}
case ${STOP_AFTER:-} in
    "" | raw) ;;
    *) say "STOP_AFTER=$STOP_AFTER: only raw (or unset) is a stage to stop after"; exit 2 ;;
esac
START=$WORK/raw.safetensors
if (( RAW_STEPS == 0 )); then
    START=$DELTA  # it binds already: compress from it
elif [[ ! -f $START ]]; then
    # the ratios draw nothing here: every memory is uncompressed
    bind raw "$DELTA" "$RAW_STEPS" "$SEED" 1.0 "[8, 12, 16]" "${RAW_MIX:-$MIX}"
    finished raw "$RAW_STEPS" || { say "raw stopped early: run again to resume"; exit 0; }
    export_latest "$WORK/raw" "$WORK/raw.safetensors"
fi
if [[ ${STOP_AFTER:-} == raw ]]; then
    say "stopped after the raw run (STOP_AFTER=raw)"
    exit 0
fi
bind compress "$START" "$COMPRESS_STEPS" $((SEED + 2)) "${UNCOMPRESSED:-0.15}" \
    "${RATIOS:-[8, 12, 16]}" "$MIX"
finished compress "$COMPRESS_STEPS" || { say "compress stopped early: run again to resume"; exit 0; }
export_latest "$WORK/compress" "$WORK/binding.safetensors"
say "done"
touch "$WORK/BIND_DONE"
