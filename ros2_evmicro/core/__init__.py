"""The core of ros2_evmicro: event arrays, codecs, slicing, face cropping, models, metrics,
simulator, dataset and training code. Nothing under this package imports rclpy or a ROS message
package (a test pins that), so it runs in notebooks, training jobs and other middlewares alike.
"""

from ros2_evmicro.core.au import AU_CODES, AUS, NUM_AUS, au_index
from ros2_evmicro.core.events import (
    EVENT_DTYPE,
    EventError,
    EventPacket,
    SensorSize,
    concat_events,
    empty_events,
    make_events,
    validate_events,
)

__all__ = [
    "AUS",
    "AU_CODES",
    "EVENT_DTYPE",
    "NUM_AUS",
    "EventError",
    "EventPacket",
    "SensorSize",
    "au_index",
    "concat_events",
    "empty_events",
    "make_events",
    "validate_events",
]
