"""The core must import no rclpy and no ROS message package (it runs in training jobs and notebooks)."""

import subprocess
import sys

CODE = r"""
import importlib, pkgutil, sys
import ros2_evmicro.core as core
import ros2_evmicro.specs, ros2_evmicro.graphs
names = [m.name for m in pkgutil.walk_packages(core.__path__, 'ros2_evmicro.core.')]
for n in names:
    importlib.import_module(n)
bad = sorted(m for m in sys.modules if m.split('.')[0] in
             ('rclpy', 'sensor_msgs', 'std_msgs', 'geometry_msgs', 'diagnostic_msgs', 'builtin_interfaces',
              'rcl_interfaces', 'launch', 'launch_ros'))
print(len(names), ','.join(bad))
"""


def test_core_imports_no_rclpy():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    n, bad = out.stdout.strip().split(" ", 1) if " " in out.stdout.strip() else (out.stdout.strip(), "")
    assert int(n) >= 4, "core submodules were not found"
    assert bad == "", f"importing the core loaded ROS modules: {bad}"
