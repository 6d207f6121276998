"""ros2 launch ros2_evmicro record_session.launch.py

The 'record' graph of ros2_evmicro.graphs (see `evmicro graph record`)."""

from ros2_evmicro.launch_support import generate


def generate_launch_description():
    return generate("record")
