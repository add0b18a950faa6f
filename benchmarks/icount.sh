#!/bin/bash
# icount.sh MODEL.tflite... : guest instructions per face (batch 1, 1 thread) on Cortex-A72 (Pi 4)
# and Cortex-A76 (Pi 5), the way ../shared/arm64/recipe.sh icount counts the default model: the
# difference between 40 invokes and none, under qemu-user with QEMU's insn plugin.
#
# Needs the recipe's setup and one `icount` run first (they build the arm64 root, the aarch64
# wheels, the fake Pi CPU views and the plugin); run from the project root as root:
#   bash ../shared/arm64/recipe.sh setup && bash ../shared/arm64/recipe.sh icount
#   bash benchmarks/icount.sh models/default.tflite models/lite.tflite
# A64_WORK / A64_ROOT choose the recipe's folders as they do for the recipe.
# (The aarch64 budget tool of issue 12, benchmarks/pi_budget.py, supersedes this once merged.)
set -euo pipefail
W=${A64_WORK:-/tmp/a64}
[ -x "$W/a64run" ] && [ -f "$W/plugin/libinsn.so" ] || {
  echo "icount.sh: run 'bash ../shared/arm64/recipe.sh setup' and 'bash ../shared/arm64/recipe.sh icount' first (A64_WORK=$W)" >&2; exit 2; }
[ $# -ge 1 ] || { echo "usage: $0 MODEL.tflite..." >&2; exit 2; }
cat >"$W/scripts/kinv_model.py" <<'PY'
import os, numpy as np
from ai_edge_litert.interpreter import Interpreter
ip = Interpreter(model_path=os.environ["MODEL"], num_threads=1); ip.allocate_tensors()
d = ip.get_input_details()[0]; rng = np.random.default_rng(0)
shape = [64] + list(d["shape"][1:])
x = rng.integers(-128, 128, shape, dtype=np.int8).astype(d["dtype"])
for k in range(4): ip.set_tensor(d["index"], x[k:k+1]); ip.invoke()      # warm-up (weight packing)
for k in range(int(os.environ["K"])): ip.set_tensor(d["index"], x[k:k+1]); ip.invoke()
PY
for model in "$@"; do
  m=$(readlink -f "$model"); [ -f "$m" ] || { echo "icount.sh: no such model: $model" >&2; exit 2; }
  for spec in "cortex-a72 pi4" "cortex-a76 pi5"; do
    set -- $spec; n0=0; n=0
    for K in 0 40; do
      n=$(cd "$W" && MODEL=$m K=$K A64_CPU=$1 A64_FAKE=$W/fake/$2 A64_QEMU=qemu-aarch64 \
          A64_QEMU_ARGS="-plugin $W/plugin/libinsn.so,inline=on -d plugin" "$W/a64run" scripts/kinv_model.py 2>&1 | sed -n 's/^insns: //p')
      [ -n "$n" ] || { echo "icount.sh: the count failed for $model on $1" >&2; exit 1; }
      [ $K = 0 ] && n0=$n
    done
    echo "$model $1: $(( (n - n0) / 40 )) guest instructions per face (batch 1, 1 thread)"
  done
done
