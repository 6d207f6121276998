"""Protocol player: shows the recording protocol to the subject and publishes a marker at every phase change.

The timing lives in :class:`ros2_evmicro.core.protocol.ProtocolStateMachine`; this node drives it from a
timer (``tick_rate_hz``) on the node clock, publishes each marker on ``protocol/marker`` (std_msgs/String
JSON; reliable, transient-local, so a recorder that subscribes late still gets every marker) and draws the
subject's screen:

- ``demo``: the AU's demo clip (OpenCV ``VideoCapture``), looped ``demo_reps`` times, or when the protocol
  gives no clip the built-in illustration: a face drawing with the AU's region highlighted, an arrow
  showing the movement, and the instruction text;
- ``countdown``: big digits with a short beep each second;
- ``perform``: the cue (green frame, the AU name) after a long beep; ``rest``: a double beep and the rest
  message; ``paused`` and ``done`` screens.

Window: ``cv2.namedWindow`` (WINDOW_NORMAL) moved to x = ``monitor`` and set full screen. Keys: space
pause/resume, r redo, s skip, q or Esc abort. ``headless`` (or no DISPLAY) runs without a window.

Sound: the beeps are generated as numpy audio (44.1 kHz mono int16) and played with ``simpleaudio`` or
``sounddevice`` when one of them is importable; otherwise nothing is played and the node logs once that the
beeps are silent (the markers carry the timing either way).

Services (std_srvs/Trigger): ``~/pause``, ``~/resume``, ``~/redo``, ``~/skip``, ``~/abort`` (so
``/protocol_player/pause`` ...), and ``~/start`` (with ``autostart`` false the run waits for it; otherwise
it starts ``start_delay_s`` after the node). The node sets ``finished`` ``finish_delay_s`` after the
``done`` marker, which ends the record graph.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from std_msgs.msg import String
from std_srvs.srv import Trigger

from ros2_evmicro.core.params import ParamError
from ros2_evmicro.core.protocol import AUStep, ProtocolError, ProtocolStateMachine, load_protocol
from ros2_evmicro.ros.convert import marker_to_msg
from ros2_evmicro.ros.node import MARKER_QOS, EvmicroNode, run_node
from ros2_evmicro.specs.protocol_player import SPEC

__all__ = [
    "NODE",
    "ProtocolPlayer",
    "beep",
    "countdown_tone",
    "draw_illustration",
    "has_display",
    "main",
    "render_screen",
]

SAMPLE_RATE = 44100


# -- sound ---------------------------------------------------------------------------------------------------


def beep(
    freq_hz: float = 880.0,
    duration_s: float = 0.15,
    *,
    gap_s: float = 0.0,
    repeats: int = 1,
    volume: float = 0.5,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """A sine beep (5 ms fades), repeated with ``gap_s`` silence between; int16 mono samples."""
    n = int(round(duration_s * sample_rate))
    t = np.arange(n) / sample_rate
    tone = np.sin(2 * np.pi * freq_hz * t)
    fade = min(int(0.005 * sample_rate), n // 2)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        tone[:fade] *= ramp
        tone[n - fade :] *= ramp[::-1]
    gap = np.zeros(int(round(gap_s * sample_rate)))
    parts = []
    for i in range(repeats):
        parts.append(tone)
        if i + 1 < repeats:
            parts.append(gap)
    out = np.concatenate(parts) if parts else np.zeros(0)
    return np.round(out * volume * 32767).astype(np.int16)


def countdown_tone(phase: str) -> np.ndarray | None:
    """The sound of a phase start: countdown tick, perform (long, high), rest (double beep)."""
    if phase == "countdown":
        return beep(660.0, 0.12)
    if phase == "perform":
        return beep(1320.0, 0.35)
    if phase == "rest":
        return beep(880.0, 0.12, gap_s=0.08, repeats=2)
    return None


class _Audio:
    """simpleaudio or sounddevice when importable; otherwise silent (logged once)."""

    def __init__(self, enabled: bool, log):
        self.backend = None
        self.play_fn = None
        if not enabled:
            return
        try:
            import simpleaudio  # type: ignore[import-not-found]

            self.backend = "simpleaudio"
            self.play_fn = lambda s: simpleaudio.play_buffer(s.tobytes(), 1, 2, SAMPLE_RATE)
        except ImportError:
            try:
                import sounddevice  # type: ignore[import-not-found]

                self.backend = "sounddevice"
                self.play_fn = lambda s: sounddevice.play(s, SAMPLE_RATE)
            except (ImportError, OSError):
                log("no audio backend (pip install simpleaudio or sounddevice): countdown beeps are silent")

    def play(self, samples: np.ndarray | None) -> None:
        if self.play_fn is None or samples is None:
            return
        try:
            self.play_fn(samples)
        except Exception:  # noqa: BLE001 - a sound device error must not stop the protocol
            self.play_fn = None


# -- drawing -------------------------------------------------------------------------------------------------


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


_REGION_Y = {
    "brows": 0.33,
    "eyes": 0.42,
    "cheeks": 0.56,
    "nose": 0.55,
    "mouth": 0.72,
    "chin": 0.85,
    "jaw": 0.82,
    "head": 0.5,
    "gaze": 0.42,
}
_ARROWS = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}


def _text(img, text: str, y: int, scale: float, color=(255, 255, 255), thick: int = 2) -> None:
    import cv2

    (w, _h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    cv2.putText(
        img, text, ((img.shape[1] - w) // 2, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA
    )


def draw_illustration(img: np.ndarray, step: AUStep, phase_t: float = 0.0) -> np.ndarray:
    """Draw a schematic face on ``img`` (in place) with ``step``'s region highlighted and its movement arrow.

    ``phase_t`` in [0, 1) animates the arrow (it grows over one repetition).
    """
    import cv2

    h, w = img.shape[:2]
    cx, cy = w // 2, int(h * 0.45)
    fw, fh = int(min(w, h) * 0.22), int(min(w, h) * 0.3)
    white, grey, hi = (235, 235, 235), (150, 150, 150), (0, 200, 255)
    top = cy - fh
    cv2.ellipse(img, (cx, cy), (fw, fh), 0, 0, 360, white, 3, cv2.LINE_AA)
    ey = top + int(2 * fh * 0.42)
    by = top + int(2 * fh * 0.33)
    for sx in (-1, 1):
        ex = cx + sx * fw // 2
        cv2.ellipse(img, (ex, ey), (fw // 6, fw // 12), 0, 0, 360, white, 2, cv2.LINE_AA)
        cv2.circle(img, (ex, ey), fw // 24 + 1, white, -1, cv2.LINE_AA)
        cv2.line(img, (ex - fw // 5, by), (ex + fw // 5, by - sx * 0), white, 3, cv2.LINE_AA)
    ny = top + int(2 * fh * 0.58)
    cv2.line(img, (cx, ey + fw // 8), (cx - fw // 10, ny), grey, 2, cv2.LINE_AA)
    cv2.line(img, (cx - fw // 10, ny), (cx + fw // 10, ny), grey, 2, cv2.LINE_AA)
    my = top + int(2 * fh * 0.74)
    cv2.ellipse(img, (cx, my), (fw // 3, fw // 10), 0, 0, 180, white, 3, cv2.LINE_AA)
    # highlight the region
    ry = top + int(2 * fh * _REGION_Y.get(step.region, 0.5))
    if step.region == "head":
        cv2.ellipse(img, (cx, cy), (fw + 12, fh + 12), 0, 0, 360, hi, 3, cv2.LINE_AA)
    else:
        cv2.ellipse(img, (cx, ry), (int(fw * 0.8), fh // 7), 0, 0, 360, hi, 3, cv2.LINE_AA)
    # movement arrow
    length = int(fw * (0.35 + 0.5 * (phase_t % 1.0)))
    if step.arrow in _ARROWS:
        dx, dy = _ARROWS[step.arrow]
        x0 = cx + fw + fw // 3 if step.region != "head" else cx
        y0 = ry if step.region != "head" else top - fw // 3
        if step.region in ("head",) and dx:
            x0, y0 = cx + dx * (fw + fw // 4), cy
        cv2.arrowedLine(
            img, (x0, y0), (x0 + dx * length, y0 + dy * length), hi, 5, cv2.LINE_AA, tipLength=0.3
        )
    elif step.arrow in ("in", "out"):
        for sx in (-1, 1):
            a = (cx + sx * fw // 2, ry)
            b = (
                (cx + sx * (fw // 2 + length), ry)
                if step.arrow == "out"
                else (cx + sx * (fw // 2 - length // 2), ry)
            )
            cv2.arrowedLine(img, a, b, hi, 4, cv2.LINE_AA, tipLength=0.3)
    return img


def render_screen(
    size: tuple[int, int],
    phase: str,
    step: AUStep | None,
    *,
    instruction: str = "",
    remaining_s: float = 0.0,
    phase_t: float = 0.0,
    clip_frame: np.ndarray | None = None,
    progress: tuple[int, int] = (0, 0),
    trial: int = 1,
) -> np.ndarray:
    """The subject's screen for a state: (height, width) -> bgr8 image."""
    import cv2

    h, w = size
    img = np.zeros((h, w, 3), np.uint8)
    s = min(w, h) / 720.0
    if phase == "demo" and step is not None:
        if clip_frame is not None:
            fh, fw = clip_frame.shape[:2]
            k = min(w / fw, (h * 0.8) / fh)
            frame = cv2.resize(clip_frame, (max(1, int(fw * k)), max(1, int(fh * k))))
            y0, x0 = (int(h * 0.8) - frame.shape[0]) // 2, (w - frame.shape[1]) // 2
            img[y0 : y0 + frame.shape[0], x0 : x0 + frame.shape[1]] = frame
        else:
            draw_illustration(img, step, phase_t)
            _text(img, step.instruction, int(h * 0.84), 0.9 * s)
        _text(img, instruction, int(h * 0.93), 1.0 * s, (200, 200, 200))
    elif phase == "countdown":
        _text(img, str(max(1, int(np.ceil(remaining_s)))), int(h * 0.6), 6.0 * s, (0, 200, 255), 8)
        _text(img, instruction, int(h * 0.85), 1.1 * s)
    elif phase == "perform":
        cv2.rectangle(img, (10, 10), (w - 11, h - 11), (0, 220, 0), max(4, int(16 * s)))
        _text(img, instruction, int(h * 0.5), 2.0 * s, (0, 255, 0), 4)
    elif phase == "rest":
        _text(img, instruction, int(h * 0.5), 1.4 * s, (220, 220, 220))
    elif phase in ("paused", "done"):
        _text(
            img, instruction, int(h * 0.5), 1.4 * s, (0, 180, 255) if phase == "paused" else (255, 255, 255)
        )
    if step is not None and phase != "done":
        _text(
            img,
            f"{step.code} {step.name}  -  {progress[0] + 1}/{progress[1]}  take {trial}",
            int(h * 0.06),
            0.7 * s,
            (140, 140, 140),
            1,
        )
    return img


class _Clip:
    """Frames of a demo clip, read once (downscaled to at most 1280 px wide)."""

    def __init__(self, path: str):
        import cv2

        cap = cv2.VideoCapture(path)
        if not cap.isOpened():
            raise ProtocolError(f"cannot open demo clip {path}")
        self.frames = []
        try:
            while len(self.frames) < 900:
                ok, frame = cap.read()
                if not ok:
                    break
                if frame.shape[1] > 1280:
                    k = 1280 / frame.shape[1]
                    frame = cv2.resize(frame, (1280, int(frame.shape[0] * k)))
                self.frames.append(frame)
        finally:
            cap.release()
        if not self.frames:
            raise ProtocolError(f"demo clip {path} has no readable frames")

    def frame(self, t: float) -> np.ndarray:
        """Frame at fraction ``t`` in [0, 1) of one repetition."""
        return self.frames[min(int((t % 1.0) * len(self.frames)), len(self.frames) - 1)]


# -- the node ---------------------------------------------------------------------------------------------


def _resolve_protocol(name: str) -> Path:
    p = Path(name)
    if p.is_file():
        return p
    from ros2_evmicro.graphs import config_dir

    q = config_dir() / name
    if q.is_file():
        return q
    raise ProtocolError(f"protocol file {name!r} not found (neither a path nor a file in {config_dir()})")


class ProtocolPlayer(EvmicroNode):
    SPEC = SPEC

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        p = self.p
        try:
            self.definition = load_protocol(_resolve_protocol(p.protocol))
            self.sm = ProtocolStateMachine(
                self.definition, p.run, p.subject, p.session, time_scale=p.time_scale
            )
        except ProtocolError as err:
            raise ParamError(f"node {self.get_name()}: protocol: {err}") from None
        self.pub = self.create_publisher(String, "protocol/marker", MARKER_QOS)
        self.finished = False
        self.markers_sent = 0
        self._t0 = self.now_ns()
        self._done_at: int | None = None
        self._last_second = None
        self.headless = p.headless or not has_display()
        if not p.headless and self.headless:
            self.get_logger().warning("no DISPLAY: running headless (markers only)")
        self.window = None
        self._clips: dict[int, _Clip | None] = {}
        self.audio = _Audio(p.audio and not self.headless, self.get_logger().warning)
        for name in ("start", "pause", "resume", "redo", "skip", "abort"):
            self.create_service(Trigger, f"~/{name}", self._service(name))
        if not self.headless:
            self._open_window()
        self.timer = self.create_timer(1.0 / p.tick_rate_hz, self._tick)
        self.diag.set("run", p.run)
        self.diag.set("aus", len(self.sm.run.steps))
        self.get_logger().info(
            f"protocol {self.definition.name} run {p.run}: {len(self.sm.run.steps)} AUs, "
            f"{self.sm.run.duration_s * p.time_scale:.1f} s"
        )

    # -- markers -------------------------------------------------------------------------------------------
    def _publish(self, markers: list[dict]) -> None:
        for m in markers:
            self.pub.publish(marker_to_msg(m))
            self.markers_sent += 1
            self.diag.count("markers")
            self.diag.set("phase", m["phase"])
            self.diag.set("segment", m["segment"])
            self.get_logger().info(f"{m['phase']:<9} {m['segment'] or m['run']}")
            self.audio.play(countdown_tone(m["phase"]))
            if m["phase"] == "done":
                self._done_at = self.now_ns()

    def _tick(self) -> None:
        now = self.now_ns()
        if not self.sm.started and (not self.p.autostart or now - self._t0 < self.p.start_delay_s * 1e9):
            return
        if not self.sm.done:
            self._publish(self.sm.tick(now))
            if self.sm.phase == "countdown":
                sec = int(np.ceil(self.sm.remaining_s(now)))
                if sec != self._last_second and self._last_second is not None:
                    self.audio.play(countdown_tone("countdown"))
                self._last_second = sec
            else:
                self._last_second = None
        if self.window is not None:
            self._draw(now)
        if self._done_at is not None and now - self._done_at >= self.p.finish_delay_s * 1e9:
            self.finished = True

    def control(self, name: str) -> tuple[bool, str]:
        """Apply an operator control now ('pause', 'resume', 'redo', 'skip', 'abort'); (success, message)."""
        now = self.now_ns()
        if name == "start":
            if self.sm.started:
                return False, "the protocol has already started"
            self._publish(self.sm.start(now))
            return True, f"started: {self.sm.phase} {self.sm.segment}"
        try:
            if not self.sm.started and name != "abort":
                self._publish(self.sm.start(now))
            if name == "pause" and self.sm.paused:
                raise ProtocolError("already paused")
            markers = getattr(self.sm, name)(now)
        except ProtocolError as err:
            return False, str(err)
        self._publish(markers)
        self.diag.count(f"control_{name}")
        return True, f"{name}: {self.sm.phase} {self.sm.segment}"

    def _service(self, name: str):
        def cb(_req, resp):
            resp.success, resp.message = self.control(name)
            return resp

        return cb

    # -- window --------------------------------------------------------------------------------------------
    def _open_window(self) -> None:
        import cv2

        self.window = "evmicro protocol"
        try:
            cv2.namedWindow(self.window, cv2.WINDOW_NORMAL)
            cv2.resizeWindow(self.window, self.p.window_width, self.p.window_height)
            cv2.moveWindow(self.window, int(self.p.monitor), 0)
            if self.p.fullscreen:
                cv2.setWindowProperty(self.window, cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_FULLSCREEN)
        except cv2.error as err:
            self.get_logger().warning(f"cannot open a window ({err}); running headless")
            self.window = None
            self.headless = True

    def _clip(self, step: AUStep) -> _Clip | None:
        if step.au not in self._clips:
            clip = None
            if step.clip:
                try:
                    clip = _Clip(step.clip)
                except ProtocolError as err:
                    self.get_logger().error(f"{err}; showing the illustration")
            self._clips[step.au] = clip
        return self._clips[step.au]

    def _draw(self, now: int) -> None:
        import cv2

        sm = self.sm
        step = sm.step
        phase = sm.phase
        phase_t = 0.0
        frame = None
        if phase == "demo" and step is not None:
            rep_s = max(step.demo_clip_s * sm.time_scale, 1e-6)
            phase_t = (sm.phase_elapsed_s(now) / rep_s) % 1.0
            clip = self._clip(step)
            frame = clip.frame(phase_t) if clip is not None else None
        try:
            rect = cv2.getWindowImageRect(self.window)
            size = (
                (rect[3], rect[2])
                if rect[2] > 0 and rect[3] > 0
                else (self.p.window_height, self.p.window_width)
            )
        except cv2.error:
            size = (self.p.window_height, self.p.window_width)
        img = render_screen(
            size,
            phase,
            step,
            instruction=self.definition.instruction(phase, step),
            remaining_s=sm.remaining_s(now),
            phase_t=phase_t,
            clip_frame=frame,
            progress=sm.progress,
            trial=sm.trial,
        )
        cv2.imshow(self.window, img)
        key = cv2.waitKey(1) & 0xFF
        if key == 255:
            return
        if key == ord(" "):
            self.control("resume" if sm.paused else "pause")
        elif key in (ord("r"), ord("R")):
            self.control("redo")
        elif key in (ord("s"), ord("S")):
            self.control("skip")
        elif key in (ord("q"), ord("Q"), 27):
            self.control("abort")

    def close(self) -> None:
        if self.window is not None:
            import cv2

            try:
                cv2.destroyWindow(self.window)
            except cv2.error:
                pass
            self.window = None


NODE = ProtocolPlayer


def main(args=None) -> int:
    return run_node(ProtocolPlayer, args)


if __name__ == "__main__":
    raise SystemExit(main())
