#!/usr/bin/env bash
# The GPU-machine check of issue 5, in one go: a whole centre (`haneul up`: server and agent
# with the machine's real GPUs), a job asking for one GPU that runs `nvidia-smi -L`, prints
# CUDA_VISIBLE_DEVICES and does a 4096x4096 PyTorch matmul on CUDA (checked against a float64
# CPU product), then the job's logs and the node view (GPU model, memory and NVLink domain as
# the agent found them, and through which source). Then telemetry (issue 21): a job looping
# matmuls must read over 80% GPU utilisation in `haneul eff --json`, a sleeping job under 5%.
# Everything goes to $OUT when it is set.
#
#   scripts/gpu-check.sh [--bin PATH] [--simulate]
#
#   --bin PATH   the haneul binary to use (also $HANEUL_BIN); default: target/release/haneul or
#                $CARGO_TARGET_DIR/release/haneul, else `cargo build --release -p haneul-cli`
#                (at most $BUILD_TIMEOUT seconds, default 480).
#   --simulate   no GPU needed: the agent simulates one H200 (`--simulate-gpus 1xH200`), so
#                only the script's own logic and the one-GPU visibility are checked.
#
# Exit status 0 when every check passed, 1 when one failed (the last lines say which), 2 for
# bad arguments. See docs/agent.md ("The GPU-machine check") for running it with the device tool.
set -uo pipefail

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }

SIMULATE=0
BIN="${HANEUL_BIN:-}"
while [ $# -gt 0 ]; do
    case "$1" in
    --simulate) SIMULATE=1 ;;
    --bin)
        [ $# -ge 2 ] || { echo "gpu-check: --bin needs a path" >&2; exit 2; }
        BIN="$2"
        shift
        ;;
    -h | --help) usage; exit 0 ;;
    *) echo "gpu-check: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/haneul-gpu-check.XXXXXX")"
REPORT="$WORK/report.txt"
UP_PID=""
PORT="${HANEUL_CHECK_PORT:-18470}"
export HANEUL_CONFIG="$WORK/client.toml"
# Plain logs, so that the agent's discovery line can be read back.
export NO_COLOR=1
say() { echo "gpu-check: $*" | tee -a "$REPORT"; }

finish() {
    local rc=$1
    if [ -n "$UP_PID" ] && kill -0 "$UP_PID" 2>/dev/null; then
        kill -TERM "$UP_PID" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$UP_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$UP_PID" 2>/dev/null
    fi
    if [ "$rc" = 0 ]; then say "PASS"; else say "FAILED (see above; files in $WORK)"; fi
    if [ -n "${OUT:-}" ]; then
        mkdir -p "$OUT"
        cp "$WORK"/*.txt "$WORK"/*.json "$WORK"/*.log "$OUT"/ 2>/dev/null
        for f in server.log agent.log; do
            [ -f "$WORK/centre/$f" ] && cp "$WORK/centre/$f" "$OUT/$f"
        done
    fi
    exit "$rc"
}
fail() { say "FAIL: $*"; finish 1; }

# 1. A GPU, unless simulating.
if [ "$SIMULATE" = 0 ]; then
    SMI="$(command -v nvidia-smi)" ||
        fail "no GPU: nvidia-smi is not on PATH (run this on a GPU machine, or pass --simulate to check the script itself)"
    "$SMI" -L >"$WORK/nvidia-smi-L.txt" 2>&1 ||
        fail "no GPU: nvidia-smi -L failed: $(head -c 300 "$WORK/nvidia-smi-L.txt")"
    say "host GPUs (nvidia-smi -L):"
    sed 's/^/    /' "$WORK/nvidia-smi-L.txt" | tee -a "$REPORT"
    grep -q '^GPU ' "$WORK/nvidia-smi-L.txt" || fail "no GPU: nvidia-smi -L lists none"
else
    SMI=""
    say "simulating one H200 (--simulate): no real GPU is used"
fi
# The interpreter itself, not a wrapper (pyenv, conda shims) that needs the caller's environment:
# the task's environment is cleared.
PY="$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || true)"
[ -n "$PY" ] || say "python3 is not on PATH: the PyTorch matmul cannot run"

# 2. The haneul binary.
if [ -z "$BIN" ]; then
    for c in target/release/haneul "${CARGO_TARGET_DIR:-target}/release/haneul"; do
        [ -x "$c" ] && { BIN="$c"; break; }
    done
fi
if [ -z "$BIN" ]; then
    command -v cargo >/dev/null ||
        fail "no haneul binary: pass --bin PATH (or HANEUL_BIN), or install cargo to build one"
    say "building haneul (cargo build --release -p haneul-cli, at most ${BUILD_TIMEOUT:-480} s)"
    timeout "${BUILD_TIMEOUT:-480}" cargo build --release -p haneul-cli >"$WORK/build.log" 2>&1 ||
        fail "the build failed or ran out of time: $(tail -n 5 "$WORK/build.log")"
    BIN="${CARGO_TARGET_DIR:-target}/release/haneul"
fi
[ -x "$BIN" ] || fail "--bin $BIN is not an executable file"
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
say "binary: $BIN"

# 3. The centre.
UP_ARGS=(up --data-dir "$WORK/centre" --listen "127.0.0.1:$PORT" --telemetry-interval 2)
[ "$SIMULATE" = 1 ] && UP_ARGS+=(--simulate-gpus 1xH200)
"$BIN" "${UP_ARGS[@]}" >"$WORK/up.log" 2>&1 &
UP_PID=$!
for _ in $(seq 600); do
    grep -q "haneul is up" "$WORK/up.log" && break
    kill -0 "$UP_PID" 2>/dev/null || fail "haneul up stopped: $(tail -n 5 "$WORK/up.log"); agent log: $(tail -n 5 "$WORK/centre/agent.log" 2>/dev/null)"
    sleep 0.1
done
grep -q "haneul is up" "$WORK/up.log" || fail "haneul up did not come up in 60 s: $(tail -n 5 "$WORK/up.log")"
say "centre up on 127.0.0.1:$PORT"

# 4. The node view, and how the agent found the GPUs.
ADMIN=(--token-file "$WORK/centre/server/admin.token")
"$BIN" node list --json "${ADMIN[@]}" >"$WORK/nodes.json" 2>&1 || fail "node list: $(cat "$WORK/nodes.json")"
say "node view:"
grep -E '"(name|gpu_model|gpus|gpu_memory_mib|nvlink_domain|state|limits|health)"' "$WORK/nodes.json" |
    sed 's/^ */    /' | tee -a "$REPORT"
FOUND="$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/centre/agent.log" | grep -o 'gpus_from="[^"]*"' | head -n 1)"
say "agent discovery: ${FOUND:-not in agent.log}"
if [ "$SIMULATE" = 0 ]; then
    case "$FOUND" in
    *"discovered through NVML"*) ;;
    *) say "NOTE: the agent did not use NVML (see the discovery line above)" ;;
    esac
fi

# 5. The one-GPU job.
cat >"$WORK/matmul.py" <<'PY'
import sys, time
try:
    import torch
except Exception as e:
    print(f"TORCH MISSING: {sys.executable} cannot import torch ({e}); install PyTorch with CUDA")
    sys.exit(0)
print("torch", torch.__version__, "cuda available", torch.cuda.is_available(),
      "device count", torch.cuda.device_count())
if not torch.cuda.is_available():
    print("CUDA UNAVAILABLE")
    sys.exit(0)
n = 4096
g = torch.Generator().manual_seed(0)
a = torch.randn(n, n, generator=g)
b = torch.randn(n, n, generator=g)
ga, gb = a.cuda(), b.cuda()
c = ga @ gb
torch.cuda.synchronize()
t = time.perf_counter()
for _ in range(10):
    c = ga @ gb
torch.cuda.synchronize()
dt = (time.perf_counter() - t) / 10
ref = a.double() @ b.double()
err = ((c.cpu().double() - ref).abs().max() / ref.abs().max()).item()
print("device name", torch.cuda.get_device_name(0))
print(f"checksum {c.double().sum().item():.6e} (float64 CPU reference {ref.sum().item():.6e})")
print(f"max relative error {err:.2e}; {2 * n**3 / dt / 1e12:.1f} TFLOP/s float32")
print("MATMUL OK" if err < 5e-3 else "MATMUL WRONG")
PY
# Jobs run as the demo user's uid (haneul up as root): they must reach the script.
chmod 711 "$WORK"
chmod 644 "$WORK/matmul.py"
JOB_SH="echo CUDA_VISIBLE_DEVICES=\$CUDA_VISIBLE_DEVICES;"
if [ -n "$SMI" ]; then JOB_SH+=" $SMI -L;"; else JOB_SH+=" echo 'NVIDIA-SMI MISSING';"; fi
if [ -n "$PY" ]; then JOB_SH+=" $PY $WORK/matmul.py"; else JOB_SH+=" echo 'TORCH MISSING: no python3'"; fi
JOB="$("$BIN" submit --gpus 1 --time 10m -- sh -c "$JOB_SH" 2>"$WORK/submit.txt")" ||
    fail "submit: $(cat "$WORK/submit.txt")"
JOB="$(echo "$JOB" | grep -o '[0-9][0-9]*' | head -n 1)"
say "job $JOB submitted: sh -c \"$JOB_SH\""
STATE=""
for _ in $(seq 1200); do
    "$BIN" show "$JOB" --json >"$WORK/job.json" 2>&1
    STATE="$(sed -n 's/^  "state": "\([a-z_]*\)",\{0,1\}$/\1/p' "$WORK/job.json" | head -n 1)"
    case "$STATE" in succeeded | failed | cancelled | timed_out) break ;; esac
    sleep 0.5
done
"$BIN" logs "$JOB" >"$WORK/job-output.txt" 2>&1
say "job $JOB ended $STATE; its output (haneul logs $JOB):"
sed 's/^/    /' "$WORK/job-output.txt" | tee -a "$REPORT"

# 6. The verdict.
[ "$STATE" = succeeded ] || fail "job $JOB ended '${STATE:-unknown}', not succeeded"
VISIBLE="$(sed -n 's/^CUDA_VISIBLE_DEVICES=//p' "$WORK/job-output.txt" | head -n 1)"
[[ "$VISIBLE" =~ ^[0-9]+$ ]] || fail "the job saw CUDA_VISIBLE_DEVICES='$VISIBLE', not exactly one GPU index"
say "the job was given exactly one GPU: CUDA_VISIBLE_DEVICES=$VISIBLE"
if [ "$SIMULATE" = 1 ]; then
    say "simulated: nvidia-smi and the matmul were not checked"
    finish 0
fi
SEEN="$(grep -c '^GPU [0-9]*:' "$WORK/job-output.txt")"
# nvidia-smi lists every GPU the process can open; with one GPU in the machine that is one.
[ "$SEEN" = 1 ] || fail "nvidia-smi -L in the job listed $SEEN GPUs, not 1"
grep -q '^TORCH MISSING' "$WORK/job-output.txt" &&
    fail "PyTorch is missing on this machine: $(grep '^TORCH MISSING' "$WORK/job-output.txt")"
grep -q '^CUDA UNAVAILABLE' "$WORK/job-output.txt" && fail "torch.cuda.is_available() is False in the job"
grep -q 'device count 1$' "$WORK/job-output.txt" || fail "torch in the job did not see exactly one CUDA device"
grep -q '^MATMUL OK' "$WORK/job-output.txt" || fail "the matmul result is wrong or missing"
say "nvidia-smi -L in the job listed one GPU; torch saw one device; the matmul matches the CPU"

# 7. Two half-GPU tasks on one GPU, under MPS: each must see its pinned memory limit (half the
# GPU's memory) and fail to allocate more than that. Submitted through the API, since the
# command line has no flag for a GPU fraction.
command -v nvidia-cuda-mps-control >/dev/null ||
    fail "nvidia-cuda-mps-control is not on PATH: fractional GPUs cannot be enforced (install the CUDA MPS tools)"
cat >"$WORK/half.py" <<'PY'
import os, torch
free, total = torch.cuda.mem_get_info()
print("MPS LIMIT", os.environ.get("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"), "THREADS",
      os.environ.get("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"))
print(f"SEES TOTAL MIB {total >> 20}")
phys = int(os.environ["HALF_CHECK_PHYS_MIB"])
try:
    x = torch.empty((int(phys * 0.75) << 20,), dtype=torch.uint8, device="cuda")
    print("ALLOCATED PAST THE LIMIT")
except RuntimeError as e:
    print("REFUSED PAST THE LIMIT:", str(e).splitlines()[0][:120])
PY
chmod 644 "$WORK/half.py"
PHYS="$(sed -n 's/^ *"gpu_memory_mib": \([0-9]*\),\{0,1\}$/\1/p' "$WORK/nodes.json" | head -n 1)"
PROJECT="$(sed -n 's/^project = //p' "$WORK/centre/up.toml")"
TOKEN="$(cat "$WORK/centre/user.token")"
HALF_JOBS=()
for i in 1 2; do
    BODY="{\"project\": $PROJECT, \"gpus_per_task\": 0, \"gpu_fraction_milli\": 500, \"time_limit_s\": 600,
           \"command\": [\"sh\", \"-c\", \"HALF_CHECK_PHYS_MIB=$PHYS $PY $WORK/half.py\"]}"
    ANSWER="$(curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        -d "$BODY" "http://127.0.0.1:$PORT/v1/jobs")" || fail "half-GPU submit: curl failed"
    ID="$(echo "$ANSWER" | grep -o '"id": *[0-9]*' | head -n 1 | grep -o '[0-9]*$')"
    [ -n "$ID" ] || fail "half-GPU submit refused: $ANSWER"
    HALF_JOBS+=("$ID")
done
say "half-GPU jobs ${HALF_JOBS[*]} submitted ($PHYS MiB GPU)"
for ID in "${HALF_JOBS[@]}"; do
    for _ in $(seq 1200); do
        "$BIN" show "$ID" --json >"$WORK/half-$ID.json" 2>&1
        STATE="$(sed -n 's/^  "state": "\([a-z_]*\)",\{0,1\}$/\1/p' "$WORK/half-$ID.json" | head -n 1)"
        case "$STATE" in succeeded | failed | cancelled | timed_out) break ;; esac
        sleep 0.5
    done
    "$BIN" logs "$ID" >"$WORK/half-$ID.txt" 2>&1
    say "half-GPU job $ID ended $STATE:"
    sed 's/^/    /' "$WORK/half-$ID.txt" | tee -a "$REPORT"
    [ "$STATE" = succeeded ] || fail "half-GPU job $ID ended '$STATE'"
    SEES="$(sed -n 's/^SEES TOTAL MIB //p' "$WORK/half-$ID.txt")"
    [ -n "$SEES" ] && [ "$SEES" -le $((PHYS / 2 + 1024)) ] ||
        fail "half-GPU job $ID sees ${SEES:-no} MiB, not its half ($((PHYS / 2)) MiB)"
    grep -q '^REFUSED PAST THE LIMIT' "$WORK/half-$ID.txt" ||
        fail "half-GPU job $ID could allocate past its memory limit"
done
say "two half-GPU tasks each saw their memory limit under MPS and were refused past it"

# 8. Telemetry: a matmul loop reads busy, a sleep reads idle (sampled every 2 s for 30 s).
cat >"$WORK/matmul-loop.py" <<'PY'
import time, torch
a = torch.randn(8192, 8192, device="cuda")
until = time.time() + 40
while time.time() < until:
    a = (a @ a).clamp_(-1, 1)
torch.cuda.synchronize()
print("MATMUL LOOP DONE")
PY
chmod 644 "$WORK/matmul-loop.py"
if [ "$SIMULATE" = 1 ]; then BUSY_SH="t=\$((\$(date +%s)+40)); while [ \$(date +%s) -lt \$t ]; do :; done"
else BUSY_SH="$PY $WORK/matmul-loop.py"; fi
BUSY="$("$BIN" submit --gpus 1 --time 10m -- sh -c "$BUSY_SH" 2>"$WORK/submit-busy.txt")" ||
    fail "submit busy: $(cat "$WORK/submit-busy.txt")"
IDLE="$("$BIN" submit --gpus 1 --time 10m -- sleep 40 2>"$WORK/submit-idle.txt")" ||
    fail "submit sleeper: $(cat "$WORK/submit-idle.txt")"
say "telemetry jobs: busy $BUSY, sleeping $IDLE; sampling for 30 s"
sleep 30
"$BIN" eff "$BUSY" --json >"$WORK/eff-busy.json" 2>&1 || fail "eff $BUSY: $(cat "$WORK/eff-busy.json")"
"$BIN" eff "$IDLE" --json >"$WORK/eff-idle.json" 2>&1 || fail "eff $IDLE: $(cat "$WORK/eff-idle.json")"
mean() { sed -n 's/^  "gpu_util_mean_pct": \([0-9.]*\),\{0,1\}$/\1/p' "$1" | head -n 1; }
B="$(mean "$WORK/eff-busy.json")"; I="$(mean "$WORK/eff-idle.json")"
say "haneul eff: busy job ${B:-no samples}% mean, sleeping job ${I:-no samples}% mean"
[ -n "$B" ] && [ -n "$I" ] || fail "no telemetry samples (see eff-*.json)"
if [ "$SIMULATE" = 0 ]; then
    awk -v b="$B" 'BEGIN { exit !(b > 80) }' || fail "the matmul job read $B%, not over 80%"
else
    awk -v b="$B" 'BEGIN { exit !(b > 20) }' || fail "the busy job read $B% (simulated)"
fi
awk -v i="$I" 'BEGIN { exit !(i < 5) }' || fail "the sleeping job read $I%, not under 5%"
say "telemetry tells the busy job from the sleeping one"
finish 0
