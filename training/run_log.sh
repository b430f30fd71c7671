# Sourced by the training scripts, after they set WORK: the config and interpreter they share,
# every command's output appended to WORK/log, WORK/FAILED marked on an error, and `say` for a
# timestamped progress line.
CONFIG=training/configs/streamvxl_tiny.json
PY=${PYTHON:-python3}
mkdir -p "$WORK"
trap 'echo "failed at line $LINENO" >>"$WORK/log"; touch "$WORK/FAILED"' ERR
exec >>"$WORK/log" 2>&1

say() { echo "== $(date +%H:%M:%S) $*"; }
