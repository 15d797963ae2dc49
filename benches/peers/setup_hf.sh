#!/usr/bin/env bash
# Creates a throw-away virtual environment with torch, transformers, accelerate, gguf and numpy
# for the Hugging Face transformers peer of the LLM (benches/peers/hf_llm.py) and prints the path
# of its python.
#
#   bash benches/peers/setup_hf.sh [VENV_DIR]      # default: target/hf-peer-venv
#
# The versions are pinned (override with the environment variables below). torch comes from the
# CPU-only wheel index first (a ~200 MB wheel); where that index cannot be reached, from plain
# PyPI (on Linux x86_64 that is the CUDA build: several GB with its nvidia-* dependencies, but it
# runs on the CPU all the same). Progress goes to stderr; the only line on stdout is the python
# path, so `PY=$(bash benches/peers/setup_hf.sh)` works.
set -euo pipefail

VENV="${1:-target/hf-peer-venv}"
PYTHON="${PYTHON:-python3}"
CPU_INDEX="https://download.pytorch.org/whl/cpu"
TORCH_VERSION="${TORCH_VERSION:-2.15.0}"
TRANSFORMERS_VERSION="${TRANSFORMERS_VERSION:-5.24.0}"
GGUF_VERSION="${GGUF_VERSION:-0.19.0}"
NUMPY_VERSION="${NUMPY_VERSION:-2.4.6}"

log() { echo "[hf-peer-setup] $*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --upgrade pip >&2 || log "pip upgrade failed; going on with the bundled pip"

have_torch() {
    "$PY" -c "import sys, torch; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null
}

if have_torch; then
    log "torch $("$PY" -c 'import torch; print(torch.__version__)') already installed"
else
    # pip skips an index it cannot reach without failing (and then takes PyPI's CUDA build from
    # an extra index), so reachability is probed first and torch comes from one index only
    if "$PY" - "$CPU_INDEX/torch/" <<'PROBE' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=15).read(64)
PROBE
        log "installing torch==$TORCH_VERSION from the CPU-only wheel index $CPU_INDEX"
        if "$PY" -m pip install --index-url "$CPU_INDEX" "torch==$TORCH_VERSION" >&2; then
            log "installed torch from the CPU-only index"
        else
            log "the CPU-only index failed; installing torch==$TORCH_VERSION from plain PyPI"
            "$PY" -m pip install "torch==$TORCH_VERSION" >&2
        fi
    else
        log "the CPU-only index $CPU_INDEX is unreachable; installing torch==$TORCH_VERSION from plain PyPI"
        "$PY" -m pip install "torch==$TORCH_VERSION" >&2
    fi
fi

# torch is pinned here too so that pip keeps the build installed above
log "installing transformers==$TRANSFORMERS_VERSION, accelerate, gguf==$GGUF_VERSION, numpy==$NUMPY_VERSION"
"$PY" -m pip install --quiet "torch==$TORCH_VERSION" "transformers==$TRANSFORMERS_VERSION" accelerate \
    "gguf==$GGUF_VERSION" "numpy==$NUMPY_VERSION" >&2

"$PY" -c "import torch, transformers, accelerate, gguf, numpy; print('[hf-peer-setup] torch', torch.__version__, '| transformers', transformers.__version__, '| accelerate', accelerate.__version__, '| numpy', numpy.__version__, '| cuda build:', torch.version.cuda)" >&2
# an absolute path, usable from any folder
echo "$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"
