"""Parameters of the Prophesee EVK4 driver (live camera through the Metavision SDK, RAW file, or a bag of
``event_camera_msgs/EventPacket``).

The IMX636 biases are offsets from the factory setting (0 = factory value; the SDK refuses values outside the
sensor's allowed range, e.g. ``bias_diff_on`` -85..140, ``bias_fo`` -35..55, ``bias_hpf`` 0..120). At start only
non-zero biases are written; runtime changes are written as given.
"""

from ros2_evmicro.core.params import Param, ParamSpec
from ros2_evmicro.specs._driver import driver_params

SPEC = ParamSpec(
    "evk4_driver",
    driver_params("evk4_optical", ("camera", "file", "bag"), "camera", 1280, 720)
    + (
        Param("bias_diff_on", 0, "ON contrast threshold offset (higher: fewer ON events)", "", (-300, 300)),
        Param("bias_diff_off", 0, "OFF contrast threshold offset (higher: fewer OFF events)", "", (-300, 300)),
        Param("bias_fo", 0, "low-pass (source follower) cut-off offset", "", (-300, 300)),
        Param("bias_hpf", 0, "high-pass filter offset (higher: less slow-change activity)", "", (-300, 300)),
        Param("bias_refr", 0, "refractory period offset", "", (-300, 300)),
        Param("erc_rate_mev_s", 0.0, "event rate control limit (0 = off)", "Mev/s", (0.0, 2000.0)),
        Param("roi", [0, 0, 0, 0], "hardware ROI [x, y, width, height] (width 0 = full sensor)", "px", (0, 65535)),
        Param("trigger_in", False, "enable the external trigger input (edges become trigger events)"),
        Param("bag_topic", "", "EventPacket topic when source is bag (empty: every EventPacket topic)",
              dynamic=False),
    ),
    "Prophesee EVK4 driver: events and external triggers from a live camera (Metavision SDK / OpenEB), a RAW "
    "file (EVT 3.0 / 2.0) or an EventPacket bag, on ROS time; optional native RAW recording.",
)

CAMERA_SETTINGS = ("bias_diff_on", "bias_diff_off", "bias_fo", "bias_hpf", "bias_refr", "erc_rate_mev_s", "roi",
                   "trigger_in")
"""Parameters that are camera settings (applied live)."""
