#!/usr/bin/env bash
# Issue 3 end to end. (1) A processor on the fake NVML (loaded through the
# production dlopen path) writes gpu_metrics and fills the energy fields of
# token_usage: CASE-01's energy check (GPU 0 at 215.4 W: energy_j 12924,
# joules_per_token 21.54; GPU 1 without power: null). (2) CASE-04: auto with a
# version mismatch in NVML and nvidia-smi falls back to the seed, stays up,
# /health 503 naming the mismatch; once nvidia-smi works it is used.
source "$(dirname "$0")/helpers.sh"

FAKE_DIR="${TM_FAKE_NVML_DIR:?set by make test-integration}"
[[ -f "$FAKE_DIR/libnvidia-ml.so.1" ]] || fail "no fake NVML in $FAKE_DIR (make test-integration builds it)"
export GPU_SAMPLE_SECONDS=1 WINDOW_SECONDS=60 PRICE_PER_HOUR_USD=3.60 IDLE_CLOSE_SECONDS=2

cat >"$WORK/nvml.txt" <<'NVML'
init 0
device 0 name="NVIDIA A100-SXM4-80GB" uuid=GPU-00000000-0000-0000-0000-000000000000 util=37 mem_used=10737418240 mem_total=85899345920 power_mw=215400 temp=54
device 1 name="Tesla K80" uuid=GPU-00000000-0000-0000-0000-000000000001 util=12 mem_used=314572800 mem_total=11996758016 power_mw=rc:3 temp=41
NVML
start_processor GPU_METRICS_SOURCE=nvml TOKENMETER_NVML_LIB="$FAKE_DIR/libnvidia-ml.so.1" \
	FAKE_NVML_SCRIPT="$WORK/nvml.txt"
gpu_info() { curl -fsS "http://$HTTP_LISTEN/gpu/info"; }
wait_for "gpu_info | jq -e '.source == \"nvml\" and (.gpus | length) == 2' >/dev/null" 20
gpu_info >"$WORK/info.json"
jq -e '.gpus[0] | .utilization == 0.37 and .mem_used_mb == 10240 and .mem_total_mb == 81920
	and .power_w == 215.4 and .temperature_c == 54 and .source == "nvml"' "$WORK/info.json" >/dev/null ||
	fail "GPU 0 in /gpu/info: $(jq -c '.gpus[0]' "$WORK/info.json")"
jq -e '.gpus[1] | .power_w == null and .utilization == 0.12 and .mem_used_mb == 300' \
	"$WORK/info.json" >/dev/null || fail "GPU 1 in /gpu/info: $(jq -c '.gpus[1]' "$WORK/info.json")"
curl -fsS "http://$HTTP_LISTEN/health" | jq -e '.status == "ok"' >/dev/null ||
	fail "/health must be ok when a field is merely unsupported"

# One 400+200 event per GPU in the current minute, once samples of this minute exist.
while (($(date +%-S) < 3 || $(date +%-S) > 45)); do sleep 1; done
sleep 2
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
minute=$(date -u +%Y-%m-%dT%H:%M:00Z)
for g in 0 1; do
	printf '{"ts":"%s","host":"node-1","gpu_index":%d,"model":"model-a","prompt_tokens":400,"completion_tokens":200}\n' "$now" "$g"
done | produce_events || fail "producer failed"
wait_for "[[ \$(mq count token_usage) -eq 2 ]]" 30
info "$(mq expect-window node-1 0 "$minute" 1 600 10 0.0001)" || fail "GPU 0 window"
info "$(mq expect-window node-1 1 "$minute" 1 600 10 0.0001)" || fail "GPU 1 window"
"$PY" - "$minute" <<'PY' || fail "energy fields"
import datetime, os, sys
from pymongo import MongoClient
db = MongoClient(os.environ["MONGODB_URI"]).get_default_database()
ms = int(datetime.datetime.fromisoformat(sys.argv[1].replace("Z", "+00:00")).timestamp() * 1000)
d0 = db.token_usage.find_one({"_id": f"node-1/0/{ms}"})
d1 = db.token_usage.find_one({"_id": f"node-1/1/{ms}"})
close = lambda a, b: a is not None and abs(a - b) <= 1e-9 * abs(b)
print("  GPU 0:", d0["avg_power_w"], d0["energy_j"], d0["joules_per_token"], d0["avg_utilization"])
print("  GPU 1:", d1["avg_power_w"], d1["energy_j"], d1["joules_per_token"], d1["avg_utilization"])
ok = (close(d0["avg_power_w"], 215.4) and close(d0["energy_j"], 12924)
      and close(d0["joules_per_token"], 21.54) and close(d0["avg_utilization"], 0.37)
      and d1["avg_power_w"] is None and d1["energy_j"] is None and d1["joules_per_token"] is None
      and close(d1["avg_utilization"], 0.12))
n = db.gpu_metrics.count_documents({"source": "nvml", "host": "node-1"})
g1 = db.gpu_metrics.find_one({"gpu_index": 1})
print("  gpu_metrics:", n, "documents; GPU 1 power_w", g1["power_w"], "mem_total_mb", g1["mem_total_mb"])
ok = ok and n >= 4 and g1["power_w"] is None and g1["mem_total_mb"] == 11441
sys.exit(0 if ok else 1)
PY
stop_processor

# (2) CASE-04: NVML init returns 18, nvidia-smi prints the mismatch and exits 18.
mkdir -p "$WORK/bin"
cp "$REPO/tests/fake/nvidia-smi" "$WORK/bin/nvidia-smi"
printf 'Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 999.99\n' >"$WORK/smi.txt"
echo 18 >"$WORK/smi.exit"
echo 'init 18' >"$WORK/nvml.txt"
cat >"$WORK/seed.json" <<'SEED'
[{"gpu_index":0,"host":"node-1","name":"NVIDIA A100-SXM4-80GB","uuid":"GPU-00000000-0000-0000-0000-000000000000","utilization":0.25,"mem_used_mb":20480,"mem_total_mb":81920,"power_w":180.5,"temperature_c":50,"price_per_hour_usd":3.60}]
SEED
start_processor GPU_METRICS_SOURCE=auto TOKENMETER_NVML_LIB="$FAKE_DIR/libnvidia-ml.so.1" \
	FAKE_NVML_SCRIPT="$WORK/nvml.txt" PATH="$WORK/bin:$PATH" FAKE_SMI_OUTPUT="$WORK/smi.txt" \
	FAKE_SMI_EXIT_FILE="$WORK/smi.exit" GPU_SEED="$WORK/seed.json" PRICE_PER_HOUR_USD=1.00
wait_for "gpu_info | jq -e '.source == \"seed\"' >/dev/null" 20
gpu_info | jq -e '(.gpus | length) == 1 and (.gpus[0] | .utilization == 0.25 and .mem_used_mb == 20480
	and .power_w == 180.5 and .temperature_c == 50 and .source == "seed")' >/dev/null ||
	fail "CASE-04: seed GPU in /gpu/info: $(gpu_info)"
code=$(curl -sS -o "$WORK/health.json" -w '%{http_code}' "http://$HTTP_LISTEN/health")
info "CASE-04 /health: $code $(cat "$WORK/health.json")"
if [[ "$code" != 503 ]] || ! grep -q 'Driver/library version mismatch' "$WORK/health.json"; then
	fail "CASE-04: /health must be 503 naming the mismatch"
fi
# The seed's price_per_hour_usd (3.60) overrides PRICE_PER_HOUR_USD (1.00 here) for its GPU
# (an event in a later minute: the current one was written in part 1).
printf '{"ts":"%s","host":"node-1","gpu_index":0,"model":"model-a","prompt_tokens":400,"completion_tokens":200}\n' \
	"$(date -u -d '+3 min' +%Y-%m-%dT%H:%M:%SZ)" | produce_events || fail "producer failed"
wait_for "[[ \$(mq count token_usage) -eq 3 ]]" 30
"$PY" - <<'PY' || fail "the seed's price must override PRICE_PER_HOUR_USD"
import os, sys
from pymongo import MongoClient
db = MongoClient(os.environ["MONGODB_URI"]).get_default_database()
d = db.token_usage.find_one({"host": "node-1", "gpu_index": 0}, sort=[("window_start", -1)])
print("  price_per_hour_usd", d["price_per_hour_usd"], "cost_usd", d["cost_usd"])
sys.exit(0 if abs(d["price_per_hour_usd"] - 3.6) < 1e-12 and abs(d["cost_usd"] - 0.06) < 1e-12 else 1)
PY
printf '0, NVIDIA A100-SXM4-80GB, GPU-00000000-0000-0000-0000-000000000000, 37, 10240, 81920, 215.40, 54\n' >"$WORK/smi.txt"
echo 0 >"$WORK/smi.exit"
wait_for "gpu_info | jq -e '.source == \"nvidia-smi\" and .gpus[0].power_w == 215.4' >/dev/null" 20
info "CASE-04: switched to nvidia-smi once it worked"
stop_processor
