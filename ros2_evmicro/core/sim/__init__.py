"""The synthetic rig: a parametric face performing the 21 AUs, seen by simulated DAVIS346, EVK4 and webcam.

- :mod:`.face`: the face model and renderer (controls -> radiance).
- :mod:`.timeline`: actions with onset-apex-offset envelopes, co-activations, involuntary background,
  the recording protocol.
- :mod:`.sensors`: event camera (log-intensity pixels with threshold mismatch, refractory period, leak,
  background activity, hot pixels), DAVIS346 APS and IMU, webcam; pinhole geometry and homographies.
- :mod:`.rig`: :class:`SimRig` (time-ordered multi-camera stream) and :func:`render_clip` (one labelled clip).
- :mod:`.realism`: event statistics and simulated-vs-real comparison pictures.

Everything is seeded: the same arguments give the same bytes.
"""

from ros2_evmicro.core.sim.face import (
    CONTROL_NAMES,
    N_CONTROLS,
    FaceRenderer,
    HeadPose,
    SimError,
    Subject,
    controls_zero,
    subject_from_seed,
)
from ros2_evmicro.core.sim.rig import CAMERAS, Clip, GroundTruth, SimRig, render_clip
from ros2_evmicro.core.sim.sensors import (
    DAVIS346_PARAMS,
    EVK4_PARAMS,
    ApsParams,
    CameraGeometry,
    EventSensor,
    EventSensorParams,
    WebcamParams,
    default_geometry,
    homography,
)
from ros2_evmicro.core.sim.timeline import (
    Action,
    Background,
    Protocol,
    Segment,
    Timeline,
    clip_timeline,
    protocol_timeline,
)

__all__ = [
    "CAMERAS",
    "CONTROL_NAMES",
    "DAVIS346_PARAMS",
    "EVK4_PARAMS",
    "N_CONTROLS",
    "Action",
    "ApsParams",
    "Background",
    "CameraGeometry",
    "Clip",
    "EventSensor",
    "EventSensorParams",
    "FaceRenderer",
    "GroundTruth",
    "HeadPose",
    "Protocol",
    "Segment",
    "SimError",
    "SimRig",
    "Subject",
    "Timeline",
    "WebcamParams",
    "clip_timeline",
    "controls_zero",
    "default_geometry",
    "homography",
    "protocol_timeline",
    "render_clip",
    "subject_from_seed",
]
