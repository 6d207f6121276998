"""ros2_evmicro: event-based facial micro-expression analysis on ROS 2."""

__version__ = "0.1.0"
