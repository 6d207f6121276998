"""ros2 launch ros2_evmicro live_demo.launch.py

The 'demo' graph of ros2_evmicro.graphs (see `evmicro graph demo`)."""

from ros2_evmicro.launch_support import generate


def generate_launch_description():
    return generate("demo")
