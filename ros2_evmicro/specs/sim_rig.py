"""Parameters of the simulated rig node (a synthetic subject seen by DAVIS346, EVK4 and webcam)."""

from ros2_evmicro.core.params import Param, ParamSpec
from ros2_evmicro.specs._driver import WATERMARK_HELP

SPEC = ParamSpec(
    "sim_rig",
    (
        Param("cameras", ["davis", "evk4", "webcam"], "simulated cameras (davis, evk4, webcam)", dynamic=False),
        Param("scenario", "demo", "what the subject does: the demo script, the recording protocol, idle, or "
              "follow (perform the AU that protocol/marker asks for)", choices=("demo", "protocol", "idle", "follow"),
              dynamic=False),
        Param("subject_seed", 1, "synthetic subject (face shape, skin, ...) from this seed", "", (0, 2**31 - 1),
              dynamic=False),
        Param("seed", 0, "seed of the sensors' noise and of the background movements", "", (0, 2**31 - 1),
              dynamic=False),
        Param("lux", 600.0, "illuminance at the face (150-1400 lux in the paper's room)", "lx", (10.0, 100000.0),
              dynamic=False),
        Param("playback_rate", 1.0, "simulation speed vs real time (0 = as fast as possible)", "x", (0.0, 100.0)),
        Param("duration_s", 0.0, "stop after this much scene time (0 = end of the scenario; forever for idle and "
              "follow)", "s", (0.0, 1e7), dynamic=False),
        Param("time_scale", 1.0, "shorten the protocol scenario's phases by this factor", "", (0.01, 10.0),
              dynamic=False),
        Param("follow_perform_s", 2.0, "follow scenario: perform window after a perform marker", "s", (0.3, 30.0)),
        Param("packet_period_ms", 10.0, "scene time covered by one event packet", "ms", (1.0, 100.0), dynamic=False),
        Param("watermark_grid_ms", 33.0, WATERMARK_HELP, "ms", (0.0, 1000.0), dynamic=False),
        Param("aps", True, "publish DAVIS346 APS frames", dynamic=False),
        Param("imu", True, "publish DAVIS346 IMU samples", dynamic=False),
        Param("publish_markers", True, "publish protocol/marker for the scripted segments (not in follow mode)",
              dynamic=False),
        Param("publish_truth", True, "publish ground truth (performed AUs, face boxes) on sim/truth as JSON"),
    ),
    "A synthetic subject in front of the simulated camera rig: publishes the same topics as the real drivers "
    "(events, APS, IMU, webcam, camera_info, time_reference), so every graph runs on it unchanged.",
)
