#!/usr/bin/env bash
# The recipe at Video-XL-7B shape (random weights, built on the GPUs: nothing to carry) on one
# host: FSDP2 over GPUS GPUs (ZeRO-3: parameters, gradients and AdamW state sharded, decoder
# layers gathered one at a time) against one GPU, with the same seed and the same global batch
# (GPUS x 2 examples a step), so the per-step losses must agree up to rounding.
#
#   training/scale_out.sh OUT [GPUS]         # GPUS defaults to 2; STEPS=24 by default
#   CFG=other.json PYTHON=.venv/bin/python training/scale_out.sh OUT 2   # e.g. a CPU smoke run
#
# Runs, each into OUT/<name> (metrics.jsonl) and OUT/<name>.log:
#   full_<G>gpu  full fine-tuning (every weight, VSTs included), sharded over G GPUs
#   full_1gpu    the same on one GPU: 8.4 B float32 weights + gradients + AdamW state are
#                ~135 GB before any activation, so it is expected not to fit an H200
#   lora_1gpu / lora_<G>gpu   rank-16 LoRA on every LLM linear + projector + VST embedding
#                (fits one GPU): loss parity and the speed-up of G GPUs over one
#   lora_1gpu_repeat   (only if named in RUNS) lora_1gpu again: how far two runs of the same
#                one-GPU job drift apart (non-deterministic GPU kernels), the yardstick
#                for the parity column
# RUNS="..." picks and orders the runs (default: the first four).
# then prints the side-by-side tables (training.compare_runs) into OUT/full.md, OUT/lora.md.
set -uo pipefail
OUT=${1:?usage: training/scale_out.sh OUT [GPUS]}
GPUS=${2:-2}
STEPS=${STEPS:-24}
CFG=${CFG:-training/configs/videoxl7b_scale.json}
PY=${PYTHON:-python3}
GLOBAL=$((2 * GPUS))
LORA=(--lora-rank 16 --train-llm false --train-vision false --lr 1e-4
      --lora-targets '["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj","beacon_q_proj","beacon_k_proj","beacon_v_proj"]')
# NVLink multicast stays off (it can take a shared host's GPUs down); fragmentation costs
# gigabytes at this size otherwise
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True PYTHONUNBUFFERED=1
mkdir -p "$OUT"

run() {  # name, launcher..., -- recipe flags...
  local name=$1; shift
  echo "== $name: $*"
  "$@" --config "$CFG" --max-steps "$STEPS" --max-minutes "${MAX_MINUTES:-3}" \
      --output-dir "$OUT/$name" >"$OUT/$name.log" 2>&1
  local rc=$?
  grep -E "training .* parameters|step [0-9]+/|peak GPU|out of memory|Error" "$OUT/$name.log" \
      | cut -c1-220 | tail -n 8
  echo "== $name: exit $rc"
}
multi=("$PY" -m torch.distributed.run --standalone --nproc_per_node "$GPUS" -m training.recipe
       --batch 2)
single=("$PY" -m training.recipe --batch "$GLOBAL")

for name in ${RUNS:-full_1gpu full_${GPUS}gpu lora_1gpu lora_${GPUS}gpu}; do
  case $name in
    full_1gpu) run "$name" "${single[@]}" ;;
    full_*gpu) run "$name" "${multi[@]}" ;;
    lora_1gpu*) run "$name" "${single[@]}" "${LORA[@]}" ;;  # lora_1gpu_repeat: the noise floor
    lora_*gpu) run "$name" "${multi[@]}" "${LORA[@]}" ;;
    *) echo "unknown run $name" >&2; exit 2 ;;
  esac
done

for kind in full lora; do  # one table each, the one-GPU run (when it ran) as the reference
  runs=()
  for name in "${kind}_1gpu" "${kind}_${GPUS}gpu" "${kind}_1gpu_repeat"; do
    [ -s "$OUT/$name/metrics.jsonl" ] && runs+=("$OUT/$name")
  done
  [ ${#runs[@]} -gt 0 ] && "$PY" -m training.compare_runs "${runs[@]}" --skip 3 \
      --markdown "$OUT/$kind.md"
done
