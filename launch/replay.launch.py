"""ros2 launch ros2_evmicro replay.launch.py

The 'replay' graph of ros2_evmicro.graphs (see `evmicro graph replay`)."""

from ros2_evmicro.launch_support import generate


def generate_launch_description():
    return generate("replay")
