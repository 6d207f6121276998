"""Parameters of the session recorder (rosbag2 MCAP + session.yaml + markers.csv)."""

from ros2_evmicro.core.params import Param, ParamSpec

SPEC = ParamSpec(
    "recorder",
    (
        Param("out_dir", "sessions", "folder that receives the session folders", dynamic=False),
        Param("subject", "S01", "subject id", dynamic=False),
        Param("session", "1", "session id", dynamic=False),
        Param(
            "cameras",
            ["davis", "evk4", "webcam"],
            "cameras of the rig (their topics are recorded)",
            dynamic=False,
        ),
        Param(
            "topics", [""], "explicit topic list (empty: the default list built from cameras)", dynamic=False
        ),
        Param(
            "split",
            "session",
            "one bag file per session, or a new file at each countdown marker",
            choices=("session", "segment"),
            dynamic=False,
        ),
        Param("storage", "mcap", "rosbag2 storage", choices=("mcap", "sqlite3"), dynamic=False),
        Param(
            "compression", "none", "MCAP chunk compression", choices=("none", "zstd", "lz4"), dynamic=False
        ),
        Param(
            "chunk_size_kb",
            768,
            "MCAP chunk size: a crash loses at most one chunk",
            "KiB",
            (1, 1 << 20),
            dynamic=False,
        ),
        Param(
            "flush_period_s",
            1.0,
            "close the pending chunk at least this often (bounds the loss on a kill)",
            "s",
            (0.01, 3600.0),
        ),
        Param(
            "fsync_period_s",
            1.0,
            "fdatasync at most this often (bounds the loss on a power cut; <0 never)",
            "s",
            (-1.0, 3600.0),
        ),
        Param("autostart", True, "start recording at once (else wait for ~/start)", dynamic=False),
        Param(
            "min_free_gb",
            2.0,
            "refuse to start / stop cleanly below this free disk space",
            "GiB",
            (0.0, None),
        ),
        Param(
            "disk_check_period_s", 5.0, "period of the free-space check", "s", (0.1, 3600.0), dynamic=False
        ),
        Param(
            "discovery_period_s",
            1.0,
            "period of the check for topics whose publishers appear late",
            "s",
            (0.05, 60.0),
            dynamic=False,
        ),
        Param("events_depth", 1000, "subscription depth of event topics", "", (1, 100000), dynamic=False),
        Param("depth", 100, "subscription depth of the other topics", "", (1, 100000), dynamic=False),
        Param(
            "markers_topic",
            "/protocol/marker",
            "protocol marker topic (written to markers.csv)",
            dynamic=False,
        ),
        Param("stop_on_done", False, "stop recording when a 'done' marker arrives", dynamic=False),
        Param("lux", 600.0, "illuminance at the subject's face", "lx", (0.0, None), dynamic=False),
        Param("lighting", "", "lighting description (e.g. 'LED panel, 5600 K')", dynamic=False),
        Param("age_range", "", "subject's age range (e.g. '25-34')", dynamic=False),
        Param("sex", "", "subject's sex as recorded by the consent form", dynamic=False),
        Param("operator", "", "operator name or id", dynamic=False),
        Param("notes", "", "free notes", dynamic=False),
        Param("calibration_files", [""], "rig calibration files copied into session.yaml", dynamic=False),
    ),
    "Records the session topics (raw, no deserialisation) to a rosbag2 MCAP in "
    "<out_dir>/<subject>_<session>/ "
    "with session.yaml and markers.csv; services ~/start and ~/stop; counts on /diagnostics.",
)
