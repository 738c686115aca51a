#!/usr/bin/env bash
# GPU proof (issue 14), in one call of well under 8 minutes on one GPU machine with 16 cores:
#   1. install what the machine lacks from carried wheels (.whl/, see ../shared/gpu/fetch-wheels.sh);
#   2. synthesise a full-size SmallMinesDS (4,270 patches) and pack it, on the CPUs, while
#   3. the CUDA tests run on the GPU (pytest -m cuda: compiled bf16 fit, resume, evaluate, batched
#      GPU mapping against the CPU map, ONNX on the CUDA provider when there is one);
#   4. training throughput: fit('unet-r50-all13') end to end (Lightning included) against the
#      authors' recipe, plus the network's ceiling, with GPU busy share (benchmarks/bench_gpu.py);
#   5. whole-scene mapping km2/s and peak GPU memory on 4096^2 and 16384^2 scenes (bench_map.py).
# Everything goes to $OUT (the device tool's folder; ./gpu-out elsewhere): gpu_check.log (all output),
# pytest.log, ceiling_results.json, train_results.json, train_results_profile.txt, map.json. Each stage
# has its own time limit, so one failure or overrun does not cost the others.
#
#   device run: bash benchmarks/gpu_check.sh        (carry: [".whl"])
set -u
OUT=${OUT:-$PWD/gpu-out}
WORK=${WORK:-/tmp/smallmines-gpu}
mkdir -p "$OUT" "$WORK"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
t0=$(date +%s)
stage() { echo "=== [$(( $(date +%s) - t0 )) s] $*"; }

stage "install"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv
$PY -c "import torch, lightning, timm, rasterio, segmentation_models_pytorch as smp, geopandas, onnxruntime as ort; \
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(), '| lightning', \
lightning.__version__, '| timm', timm.__version__, '| smp', smp.__version__, '| rasterio', rasterio.__version__, \
'| geopandas', geopandas.__version__, '| onnxruntime', ort.__version__, ort.get_available_providers())" \
  || { echo "imports failed"; exit 1; }
echo "cores: $(nproc); load: $(cut -d' ' -f1-3 /proc/loadavg); commit: $(git rev-parse --short HEAD 2>/dev/null)"

stage "data (background): synthesise 2 x 2135 tiles with $(nproc) processes, then pack; map base tile"
(
  s=$(date +%s)
  $PY -m smallmines -q data synth "$WORK/data" --tiles 2135 --workers "$(nproc)" >/dev/null \
    && echo "synth: $(( $(date +%s) - s )) s" \
    && $PY -m smallmines -q data pack "$WORK/data" -o "$WORK/data.smpack" >/dev/null \
    && echo "pack: $(( $(date +%s) - s )) s, $(du -sh "$WORK/data.smpack" | cut -f1)"
) > "$WORK/data.log" 2>&1 &
data_pid=$!
(
  cd benchmarks && $PY -c "import bench_map; from pathlib import Path; p = Path('$WORK/map'); p.mkdir(exist_ok=True); \
bench_map._base_tile(p / 'tile.tif')"
) > "$WORK/tile.log" 2>&1 &
tile_pid=$!

stage "CUDA tests"
timeout 120 $PY -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider 2>&1 | tee "$OUT/pytest.log" | tail -25

stage "waiting for the data"
wait $data_pid; echo "data: exit $?"; cat "$WORK/data.log" | tail -5

stage "the authors' recipe and the network's ceiling"
timeout 90 $PY benchmarks/bench_gpu.py --pack "$WORK/data.smpack" --files "$WORK/data" --out "$OUT" \
  --only authors ceiling --workers 8 --results ceiling_results.json 2>&1 | grep -v "^INFO" | tail -10
echo "bench_gpu (authors, ceiling): exit ${PIPESTATUS[0]}"

stage "training throughput: fit('unet-r50-all13') end to end ${FIT_SET:+with $FIT_SET}"
# FIT_SET: extra overrides to compare, e.g. FIT_SET="train.compile=reduce-overhead train.batch_size=256"
timeout 240 $PY benchmarks/bench_gpu.py --pack "$WORK/data.smpack" --files "$WORK/data" --out "$OUT" --only fit \
  --epochs 5 ${FIT_SET:+--set $FIT_SET} 2>&1 | grep -v "^INFO\|LeafSpec\|litlogger\|Tip:" | tail -12
echo "bench_gpu (fit): exit ${PIPESTATUS[0]}"

$PY -c "import json, sys; a = json.load(open('$OUT/ceiling_results.json'))['authors']['patches_per_s']; \
f = json.load(open('$OUT/train_results.json'))['fit']['patches_per_s']; \
print(f'fit {f:.0f} patches/s / authors {a:.1f} patches/s = {f / a:.1f}x (target 33x)')" 2>/dev/null

stage "mapping throughput"
wait $tile_pid; tail -2 "$WORK/tile.log"
GDAL_CACHEMAX=64 timeout 130 $PY benchmarks/bench_map.py --devices cuda --sizes 4096 16384 --backends torch \
  --encoder resnet50 --gpu-window 2048 --gpu-batch 4 --readers 16 --workdir "$WORK/map" --json "$OUT/map.json" \
  --no-write 2>&1 | tail -20
echo "bench_map: exit ${PIPESTATUS[0]}"

stage "done"
nvidia-smi --query-gpu=clocks.sm,temperature.gpu,memory.used --format=csv
