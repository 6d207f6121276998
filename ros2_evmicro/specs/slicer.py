"""Parameters of the slicer node: events -> 33 ms ON/OFF count frames (Eq. 1 of the paper) cropped to the face."""

from ros2_evmicro.core.params import Param, ParamSpec

ROI_MODES = ("topic", "center", "full", "fixed")
NORMALIZATIONS = ("none", "max", "log1p", "clip")

SPEC = ParamSpec(
    "slicer",
    (
        Param("window_ms", 33.0, "length of one event frame's window of event time (the paper: 33 ms)", "ms",
              (0.1, 10_000.0), dynamic=False),
        Param("late_tolerance_ms", 2.0, "how long (event time) a window stays open after its end for late or "
              "reordered events; later ones are dropped and counted. A watermark from the driver (an events "
              "packet without events) closes the windows that ended before its stamp at once", "ms",
              (0.0, 10_000.0), dynamic=False),
        Param("width", 0, "sensor width (0 = from camera_info; packets wait, dropped, until it is known)", "px",
              (0, 65535), dynamic=False),
        Param("height", 0, "sensor height (0 = from camera_info)", "px", (0, 65535), dynamic=False),
        Param("max_empty_windows", 300, "most empty frames emitted for one gap in the event stream (a longer gap "
              "is skipped and counted)", "", (0, 1_000_000), dynamic=False),
        Param("roi_mode", "topic", "crop: 'topic' = face box from face_roi (center box until one arrives), "
              "'center' = central box, 'full' = whole sensor (square, no margin), 'fixed' = roi_box",
              choices=ROI_MODES),
        Param("roi_box", [0.0, 0.0, 0.0, 0.0], "face box [x0, y0, x1, y1] for roi_mode 'fixed' (x1, y1 exclusive)",
              "px"),
        Param("center_box_fraction", 0.6, "side of the central box as a fraction of the sensor's shorter side",
              "", (0.05, 1.0)),
        Param("roi_timeout_s", 2.0, "age of the last face box (event time) after which the ROI is reported stale "
              "(WARN; the last box is still held); 0 = never stale", "s", (0.0, 3600.0)),
        Param("roi_deadband", 0.25, "the crop box stays put while the face box's centre moves less than this "
              "fraction of the box side (and its side changes less than that): the crop then matches the SNN's "
              "training crops, fixed over a take; 0 = follow every box", "", (0.0, 1.0)),
        Param("crop_size_px", 64, "side of the published (square) frame", "px", (1, 4096)),
        Param("crop_margin", 0.2, "extra fraction of the face box's longer side added around it", "", (0.0, 5.0)),
        Param("normalization", "none", "per-frame normalisation: 'none' (event counts, the paper's input), "
              "'max', 'log1p', 'clip'", choices=NORMALIZATIONS),
        Param("clip_value", 10.0, "count that maps to 1 with normalization 'clip'", "events", (1e-3, 1e6)),
        Param("on_invalid", "drop", "events outside the sensor or with bad polarity: 'drop' them (counted) or "
              "'raise' (the whole packet is dropped and counted as bad_events)", choices=("drop", "raise"),
              dynamic=False),
        Param("max_backlog_ms", 0.0, "live load shedding: when the events packets' backlog (their publish to this "
              "node's callback) keeps rising over this, the machine does not keep up; then only 1 of every N windows "
              "is counted, N following the machine (ros2_evmicro.core.shedding), the others give no frame "
              "(windows_shed), so that the frames published stay current. Stalls and the start-up shed nothing. "
              "0 = off: every window is counted however late (recording checks, replay)", "ms", (0.0, 60_000.0),
              dynamic=False),
        Param("preview", False, "also publish frames_preview (bgr8: ON red, OFF blue, upscaled)"),
        Param("preview_scale", 4, "upscaling factor of the preview", "", (1, 32)),
        Param("frame_id", "", "frame_id of the published frames ('' = the events' frame_id)"),
    ),
    "Cuts the camera's event stream into fixed windows of event time (ROS time of the events), counts ON and "
    "OFF events per pixel (Eq. 1), crops the face ROI, resizes it to crop_size_px and publishes one 32FC2 frame "
    "per window (empty windows give zero frames). Subscribes events, face_roi, camera_info; publishes frames "
    "and optionally frames_preview.",
)
