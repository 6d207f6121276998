# Sourced by scripts/device_check.sh and scripts/device_train.sh on a GPU machine (no network): install the
# wheels carried in .whl/ (spikingjelly, loguru: not on the GPU image) into /tmp/site and put it on PYTHONPATH.
if compgen -G ".whl/*.whl" > /dev/null; then
  if ! python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .whl/*.whl; then
    # both wheels are pure Python (py3-none-any): unpacking them is all an install does
    echo "device_env: pip install failed; unpacking the wheels into /tmp/site instead"
    python3 -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall("/tmp/site") for w in sys.argv[1:]]' \
      .whl/*.whl || status=1
  fi
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "device_env: no .whl/ folder: using the installed spikingjelly and loguru"
fi
