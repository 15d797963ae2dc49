#!/usr/bin/env bash
# Creates a throw-away virtual environment with torch and numpy for the PyTorch peer benchmark
# (benches/peers/torch_itemlm.py) and prints the path of its python.
#
#   bash benches/peers/setup.sh [VENV_DIR]      # default: target/peer-venv
#
# torch comes from the CPU-only wheel index first (a ~200 MB wheel); where that index cannot be
# reached, from plain PyPI (on Linux x86_64 that is the CUDA build: several GB with its nvidia-*
# dependencies, but it runs on the CPU all the same). Progress goes to stderr; the only line on
# stdout is the python path, so `PY=$(bash benches/peers/setup.sh)` works.
set -euo pipefail

VENV="${1:-target/peer-venv}"
PYTHON="${PYTHON:-python3}"
CPU_INDEX="https://download.pytorch.org/whl/cpu"

log() { echo "[peer-setup] $*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --upgrade pip >&2 || log "pip upgrade failed; going on with the bundled pip"

if "$PY" -c "import torch, numpy" 2>/dev/null; then
    log "torch $("$PY" -c 'import torch; print(torch.__version__)') already installed"
else
    # pip skips an index it cannot reach without failing (and then takes PyPI's CUDA build from
    # an extra index), so reachability is probed first and torch comes from one index only
    if "$PY" - "$CPU_INDEX/torch/" <<'PROBE' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=15).read(64)
PROBE
        log "installing torch from the CPU-only wheel index $CPU_INDEX"
        if "$PY" -m pip install --index-url "$CPU_INDEX" torch >&2; then
            log "installed torch from the CPU-only index"
        else
            log "the CPU-only index failed; installing torch from plain PyPI"
            "$PY" -m pip install torch >&2
        fi
    else
        log "the CPU-only index $CPU_INDEX is unreachable; installing torch from plain PyPI"
        "$PY" -m pip install torch >&2
    fi
    "$PY" -m pip install numpy >&2
fi

"$PY" -c "import torch, numpy; print('[peer-setup] torch', torch.__version__, '| numpy', numpy.__version__, '| cuda build:', torch.version.cuda)" >&2
# an absolute path, usable from any folder
echo "$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"
