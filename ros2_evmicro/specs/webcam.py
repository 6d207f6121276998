"""Parameters of the webcam driver (a V4L2 device through OpenCV, or a video file)."""

from ros2_evmicro.core.params import Param, ParamSpec
from ros2_evmicro.specs._driver import driver_params

SPEC = ParamSpec(
    "webcam_driver",
    driver_params("webcam_optical", ("device", "file"), "device", 1920, 1080, events=False)
    + (
        Param("device", "0", "video device: an index ('0') or a path (/dev/video0)", dynamic=False),
        Param("fps", 60.0, "requested frame rate", "Hz", (1.0, 500.0), dynamic=False),
        Param("fourcc", "MJPG", "requested pixel format (four characters; MJPG allows 1080p60 over USB 2)",
              dynamic=False),
        Param("exposure", -1.0, "manual exposure in the driver's units (-1 = automatic)", "", (-1.0, 100000.0),
              dynamic=False),
    ),
    "Webcam driver: bgr8 frames from a V4L2 camera (stamped at capture, on ROS time) or a video file.",
)
