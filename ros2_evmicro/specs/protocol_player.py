"""Parameters of the protocol player (demo clips, countdown, perform cue, rest; protocol/marker)."""

from ros2_evmicro.core.params import Param, ParamSpec

SPEC = ParamSpec(
    "protocol_player",
    (
        Param("protocol", "protocol.yaml", "protocol definition: a file in config/ or a path", dynamic=False),
        Param("run", "main", "protocol run", choices=("demo", "main"), dynamic=False),
        Param("subject", "S01", "subject id (in every marker and segment name)", dynamic=False),
        Param("session", "1", "session id", dynamic=False),
        Param("headless", False, "no window (forced when no display is available)", dynamic=False),
        Param(
            "monitor",
            0,
            "x offset of the screen to show the window on (multi-monitor rigs)",
            "px",
            (0, None),
            dynamic=False,
        ),
        Param(
            "time_scale",
            1.0,
            "multiplies every protocol duration (tests use 0.01)",
            "",
            (1e-4, 100.0),
            dynamic=False,
        ),
        Param(
            "tick_rate_hz", 30.0, "state machine and display update rate", "Hz", (1.0, 240.0), dynamic=False
        ),
        Param(
            "start_delay_s",
            1.0,
            "wait before the first phase (lets the recorder subscribe)",
            "s",
            (0.0, 600.0),
            dynamic=False,
        ),
        Param(
            "finish_delay_s",
            1.0,
            "linger after 'done' before the node reports finished",
            "s",
            (0.0, 60.0),
            dynamic=False,
        ),
        Param("autostart", True, "start after start_delay_s (else wait for ~/start)", dynamic=False),
        Param("audio", True, "play the countdown beeps (needs simpleaudio or sounddevice; else only logged)"),
        Param("window_width", 1280, "window size when not full screen", "px", (160, 7680), dynamic=False),
        Param("window_height", 720, "window size when not full screen", "px", (120, 4320), dynamic=False),
        Param("fullscreen", True, "full-screen window", dynamic=False),
    ),
    "Runs the recording protocol: for each AU a demo clip (or illustration) 3 times, a countdown with beeps, "
    "the perform window and a rest. Publishes one marker per phase change on protocol/marker; operator "
    "controls as services (~/start, ~/pause, ~/resume, ~/redo, ~/skip, ~/abort) and keys (space, r, s, "
    "q/esc).",
)
