"""Parameters of the DAVIS346 driver (live camera through dv-processing, AEDAT4 file, or DV network stream).

Bias, exposure, noise filter and ROI settings are applied when the camera opens and again whenever they change
at runtime (``ros2 param set /davis/driver exposure_us 8000``). A bias is ``[coarse, fine]`` (coarse 0-7, fine
0-255, libcaer's coarse/fine current generator); ``[-1, -1]`` leaves the camera's own value.
"""

from ros2_evmicro.core.params import Param, ParamSpec
from ros2_evmicro.specs._driver import driver_params

_KEEP = [-1, -1]


def _bias(name: str, what: str) -> Param:
    return Param(name, list(_KEEP), f"{what} bias [coarse 0-7, fine 0-255] ([-1, -1]: camera default)", "",
                 (-1, 255))


SPEC = ParamSpec(
    "davis_driver",
    driver_params("davis346_optical", ("camera", "file", "network"), "camera", 346, 260)
    + (
        Param("host", "127.0.0.1", "DV network stream host (source network)", dynamic=False),
        Param("port", 7777, "DV network stream TCP port (source network)", "", (1, 65535), dynamic=False),
        _bias("bias_on", "ON threshold (OnBn)"),
        _bias("bias_off", "OFF threshold (OffBn)"),
        _bias("bias_diff", "differencing amplifier (DiffBn)"),
        _bias("bias_refr", "refractory period (RefrBp)"),
        _bias("bias_pr", "photoreceptor (PrBp)"),
        _bias("bias_pr_sf", "photoreceptor source follower (PrSFBp)"),
        Param("exposure_us", -1, "APS exposure (0 = auto exposure, -1 = camera default)", "us", (-1, 1_000_000)),
        Param("frame_interval_us", 0, "time between APS frames (0 = camera default)", "us", (0, 10_000_000)),
        Param("noise_filter_us", 0, "software background-activity filter window, dv.noise (0 = off); also "
              "applies to files", "us", (0, 1_000_000)),
        Param("hw_noise_filter_us", 0, "the camera's own background-activity filter, 250 us steps (0 = off)", "us",
              (0, 1_000_000)),
        Param("roi", [0, 0, 0, 0], "event crop [x, y, width, height] (width 0 = full sensor)", "px", (0, 65535)),
    ),
    "DAVIS346 driver: events, APS frames (mono8), IMU and triggers from a live camera (dv-processing), an "
    "AEDAT4 file or a DV network stream, on ROS time; optional native AEDAT4 recording.",
)

CAMERA_SETTINGS = ("bias_on", "bias_off", "bias_diff", "bias_refr", "bias_pr", "bias_pr_sf", "exposure_us",
                   "frame_interval_us", "noise_filter_us", "hw_noise_filter_us", "roi")
"""Parameters that are camera settings (applied live)."""
