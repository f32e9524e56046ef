#!/usr/bin/env bash
# Create .venv (if missing), install hpstudy with everything it needs (tests and JupyterLab
# included), register its Jupyter kernel. Sourced by main.sh and test.sh, which then find the
# venv active and HPSTUDY_DATA set (to ../shared/data when it is unset and that folder exists).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
# torch/torchvision are pinned in pyproject.toml (2.14.1 / 0.29.1); they run on CPU and CUDA.
python -m pip install -q -e ".[test,lab]"
# papermill executes the notebooks on this environment's own kernel
python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (hpstudy)" >/dev/null
python -c "import hpstudy, torch, papermill, nbconvert; print('hpstudy', hpstudy.__version__, '| torch', torch.__version__, '| papermill', papermill.__version__, '| nbconvert', nbconvert.__version__)"
if [ -z "${HPSTUDY_DATA:-}" ] && [ -d ../shared/data/cifar-100-python ]; then
  HPSTUDY_DATA="$(cd ../shared/data && pwd)"
  export HPSTUDY_DATA
fi
echo "HPSTUDY_DATA=${HPSTUDY_DATA:-<unset: ./data is used; real-data tests are skipped>}"
