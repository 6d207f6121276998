"""Parameters of the face detector node: image_raw -> face_roi (and face_roi_<map_to> through a homography)."""

from ros2_evmicro.core.params import Param, ParamSpec

SPEC = ParamSpec(
    "face_detector",
    (
        Param("method", "mtcnn", "detector: 'mtcnn' (falls back to 'haar' with a WARN when its weights are "
              "missing) or 'haar' (OpenCV cascade)", choices=("mtcnn", "haar"), dynamic=False),
        Param("box_convention", "face_oval", "'face_oval': boxes mapped from the detector's framing to the face "
              "oval, hairline to chin (the framing of the simulator's true boxes and of the shipped models' "
              "training crops); 'detector': the detector's raw box", choices=("face_oval", "detector"),
              dynamic=False),
        Param("min_face_px", 24, "smallest face side searched for, in pixels of the (downscaled) detection image",
              "px", (12, 4096), dynamic=False),
        Param("score_threshold", 0.8, "detections below this score are ignored (MTCNN: probability; Haar: "
              "squashed cascade weight)", "", (0.0, 1.0)),
        Param("detect_width_px", 640, "detect on a copy downscaled to this width (boxes are scaled back); "
              "0 = full size", "px", (0, 8192)),
        Param("detect_every_n", 1, "run the detector on every n-th image only (the track is published on all)",
              "", (1, 1000)),
        Param("max_rate_hz", 15.0, "at most this many detections per second of image time (0 = no limit)", "Hz",
              (0.0, 1000.0)),
        Param("mtcnn_weights_dir", "", "folder with MTCNN's pnet.pt, rnet.pt, onet.pt ('' = facenet-pytorch's)",
              dynamic=False),
        Param("num_threads", 1, "torch threads of MTCNN", "", (1, 64), dynamic=False),
        Param("tracker_alpha", 0.5, "smoothing of the face box (1 = no smoothing)", "", (0.01, 1.0)),
        Param("hold_frames", 10, "detector runs without a face during which the last box is still published",
              "", (0, 100_000)),
        Param("iou_gate", 0.2, "least IoU for a detection to continue the current track", "", (0.0, 1.0)),
        Param("camera", "", "this camera's name in the calibration file ('' = the node's namespace, e.g. davis)",
              dynamic=False),
        Param("map_to", "", "also publish face_roi_<map_to>, the box mapped to that camera's pixels ('' = off)",
              dynamic=False),
        Param("calibration_file", "", "rig calibration YAML (evmicro calib) holding the homography "
              "<camera>-><map_to>; 'sim' = the simulated rig's geometry; required when map_to is set",
              dynamic=False),
    ),
    "Finds the face on a camera's images (DAVIS APS frames or a webcam), smooths it over time and publishes it "
    "as face_roi (PolygonStamped, pixels of this camera, stamp of the image); with map_to also as "
    "face_roi_<map_to> in the other camera's pixels through the face-plane homography.",
)
