#!/usr/bin/env bash
# GPU checks of issue 6 on one lent GPU, in under 8 minutes (each stage has its own time limit):
#   1. GPT-2 124M, bf16, compiled, seq 1024: lit-llm's Lightning step, the bare loop and the reference
#      GPT, with MFU, peak memory and the StreamingDataLoader check
#   2. the same shape, compiled model with lit-llm's loss vs a compiled loss vs a chunked loss
#   3. llama-1b under FSDP2 on the one GPU: fits? tokens/s, MFU, peak memory
#   4. eager speed features at the 124M shape: fused/foreach AdamW, SDPA math vs flash, fp32 vs bf16,
#      activation checkpointing, tanh vs exact GELU, loss variants
# Writes gpu_check.md (the short table), gpu_check.log (every stage's output) and one JSON per stage
# under $OUT (or benchmarks/results/): six files, inside the device tool's eight.
#
# On a bare machine without litdata: run benchmarks/fetch_wheels.sh first where pip works; the wheels
# in .whl/ are installed into /tmp/site here. GPU_CHECK_SMOKE=1 runs the same stages at toy sizes
# (on a CPU too) to check the script itself.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/results/gpu-$(date +%F)}
mkdir -p "$out"
work=$(mktemp -d /tmp/lit-llm-gpu-check.XXXX)
start=$SECONDS
budget=${GPU_CHECK_BUDGET_S:-465}  # seconds for all stages; the lease allows 8 minutes

if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing .whl/ failed" >&2; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python3 -c "import lit_llm.train, torch, lightning, litdata; print('torch', torch.__version__, 'lightning', lightning.__version__, \
'litdata', litdata.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())" \
  || { echo "missing packages: run benchmarks/fetch_wheels.sh and carry .whl" >&2; exit 1; }

if [[ ${GPU_CHECK_SMOKE:-0} == 1 ]]; then  # toy shapes: checks the stages, measures nothing
  # In CI's time (tests/test_gpu_check.py): eager (inductor compiles C++ on a CPU for minutes), no memory
  # probes (a process per variant), one loader worker.
  gpt2=(--preset micro --arch n_layer=1 n_embd=32 n_head=2 block_size=32 vocab_size=4096 --batch-size 2)
  big=(--preset micro --arch n_layer=1 n_embd=32 n_head=2 block_size=32 --batch-size 2)
  reps=(--rounds 1 --warmup 1 --steps 2 --interleave rounds) short=(--warmup 1 --steps 2)  # rounds: as on a GPU
  precision=32-true compile=() memory=(--no-memory) workers=1 loader_batches=5
  features=optimizer,sdpa,precision,checkpointing,gelu  # stage 2 runs the loss variants (one compiles)
else
  gpt2=(--preset gpt2-124m --batch-size 32)
  big=(--preset llama-1b --seq-len 2048 --batch-size 4)
  reps=(--rounds 2 --warmup 4 --steps 12) short=(--warmup 3 --steps 8)
  precision=bf16-mixed compile=(--compile) memory=() workers=4 loader_batches=50
  features=optimizer,sdpa,precision,checkpointing,gelu,loss
fi

# stage NAME LIMIT_S -m MODULE ARGS...: runs if the budget still holds LIMIT_S seconds; on SIGTERM at the
# limit the script still writes what it measured. Its output is appended to gpu_check.log.
stage() {
  local name=$1 limit=$2; shift 2
  if (( SECONDS - start + limit > budget )); then
    echo "skipped $name: $((budget - SECONDS + start)) s left of the budget, it needs $limit" | tee -a "$out/gpu_check.log"
    return
  fi
  echo "== $name (limit ${limit}s, $((SECONDS - start))s elapsed)" | tee -a "$out/gpu_check.log"
  timeout --kill-after=15 "$limit" python3 "$@" --json "$out/$name.json" >"$work/$name.log" 2>&1
  local rc=$?
  cat "$work/$name.log" >>"$out/gpu_check.log"
  (( rc == 0 )) || echo "$name exited with $rc (124: time limit); see gpu_check.log"
  grep -A30 '^| variant' "$work/$name.log" | head -30
}

stage gpt2-124m 180 -m benchmarks.throughput "${gpt2[@]}" --precision "$precision" "${compile[@]}" "${reps[@]}" \
  "${memory[@]}" --num-workers "$workers" --loader-batches "$loader_batches" --workdir "$work"
data=()  # the shards stage 1 prepared, if it got that far
[[ -f $work/shards/metadata.json ]] && data=(--data-dir "$work/shards")
stage gpt2-124m-loss 100 -m benchmarks.features "${gpt2[@]}" --precision "$precision" "${compile[@]}" "${reps[@]}" \
  "${memory[@]}" --features loss "${data[@]}"
stage llama-1b-fsdp2 80 -m benchmarks.throughput "${big[@]}" --precision "$precision" --strategy fsdp2 \
  --variants lightning --rounds 1 "${short[@]}" "${memory[@]}" --num-workers "$workers" --loader-batches 0 "${data[@]}"
stage gpt2-124m-eager-features 105 -m benchmarks.features "${gpt2[@]}" --precision "$precision" --rounds 1 \
  "${short[@]}" "${memory[@]}" --features "$features" "${data[@]}"

python3 -m benchmarks.summarize "$out"/*.json | tee "$out/gpu_check.md"
echo "total $((SECONDS - start)) s; results in $out"
rm -rf "$work"
