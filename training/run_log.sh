# Sourced by the training scripts, after they set WORK: the config and interpreter they share,
# every command's output appended to WORK/log, WORK/FAILED marked on an error, `say` for a
# timestamped progress line, HEAD (recipe flags for the reading head: READING_HEAD=<a
# checkpoint's heads.safetensors> starts it, as an export keeps none; READING_WARMUP=N lets a
# fresh one learn alone for N steps) and `export_latest`.
CONFIG=training/configs/streamvxl_tiny.json
PY=${PYTHON:-python3}
mkdir -p "$WORK"
set -E  # the ERR trap also fires inside functions (export_latest)
trap 'echo "failed at line $LINENO" >>"$WORK/log"; touch "$WORK/FAILED"' ERR
exec >>"$WORK/log" 2>&1

say() { echo "== $(date +%H:%M:%S) $*"; }

HEAD=()
[[ -n ${READING_HEAD:-} ]] && HEAD+=(--reading-head-init "$READING_HEAD")
[[ -n ${READING_WARMUP:-} ]] && HEAD+=(--reading-warmup-steps "$READING_WARMUP")

# export_latest RUN_DIR OUT: the delta of RUN_DIR's last checkpoint, as streamvxl-tiny ships it
export_latest() {
    local ckpt
    ckpt=$(ls -d "$1"/step_* | tail -1)
    say "export $ckpt"
    $PY -m training.default_model export "$ckpt/model" "$2" --visual-fp16
}
