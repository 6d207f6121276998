"""Sensor sources for the driver nodes: recorded files and live cameras, as lists of stream items.

Every source follows :class:`~ros2_evmicro.core.stream.Source`: ``info`` (:class:`SourceInfo`: sensor size,
serial, live or not), ``read(timeout_s) -> list | None`` (the next :class:`EventsItem`, :class:`FrameItem`,
:class:`ImuItem` and :class:`TriggerItem`, in device time order, microseconds; an empty list when nothing
arrived in time; None at the end of a file) and ``close()``. A source that cannot be opened or that fails
while streaming raises :class:`SourceError` with a reason a person can act on; a damaged file ends normally
after its last complete event and says what was wrong in ``damage`` (the driver reports it).

===========================  ====================================================================
source                       reads
===========================  ====================================================================
:class:`Aedat4FileSource`    AEDAT 4.0 (iniVation DV) through dv-processing: events, APS frames
                             (mono8), IMU (m/s^2, rad/s) and triggers, merged in time order
:class:`DavisCameraSource`   a live DAVIS (dv-processing): the same streams, settings applied live
:class:`DvNetworkSource`     a DV network stream (``dv.io.NetworkReader``, TCP)
:class:`RawFileSource`       Prophesee RAW (EVT 3.0 / 2.0) through the project's codecs, triggers too
:class:`EventPacketBagSource`  bags of ``event_camera_msgs/msg/EventPacket`` (evt3 and libcaer)
:class:`MetavisionCameraSource`  a live Prophesee camera (EVK4) through the Metavision SDK (OpenEB)
:class:`WebcamSource`        a webcam or a video file through OpenCV (bgr8 frames)
===========================  ====================================================================

Hardware SDKs (``dv_processing``, ``metavision_hal``, ``metavision_core``, ``cv2``) are imported when a
source is opened, never at import time. This module imports no rclpy.
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from ros2_evmicro.core.codecs import CodecError
from ros2_evmicro.core.codecs.aedat4 import dv_events_to_array
from ros2_evmicro.core.events import EVENT_DTYPE, empty_events
from ros2_evmicro.core.stream import EventsItem, FrameItem, ImuItem, SourceError, SourceInfo, TriggerItem

if TYPE_CHECKING:
    from ros2_evmicro.core.codecs.eventpacket import BagEventPacket

__all__ = [
    "DAVIS_BIASES",
    "EVK4_BIASES",
    "Aedat4FileSource",
    "DavisCameraSource",
    "DvNetworkSource",
    "EventPacketBagSource",
    "MetavisionCameraSource",
    "RawFileSource",
    "Evt3FileWriter",
    "WebcamSource",
    "interleave",
    "item_time_us",
]

_FALLING = {2, 5, 7, 9}  # dv TriggerType codes of falling edges / ends (see codecs.aedat4)
_G = 9.81

DAVIS_BIASES = {
    "bias_on": "On",
    "bias_off": "Off",
    "bias_diff": "Diff",
    "bias_refr": "Refractory",
    "bias_pr": "Photoreceptor",
    "bias_pr_sf": "PhotoreceptorSourceFollower",
}
"""DAVIS346 coarse/fine biases the driver exposes: parameter name -> ``DAVIS.Davis346BiasCF`` member."""

EVK4_BIASES = ("bias_diff_on", "bias_diff_off", "bias_fo", "bias_hpf", "bias_refr")
"""IMX636 (EVK4) biases the driver exposes, by their Metavision names."""


def item_time_us(item: Any) -> int:
    """Device time of an item (an events item: its first event), microseconds."""
    if isinstance(item, EventsItem):
        return int(item.events["t"][0]) if len(item.events) else 0
    return int(item.t_us)


def interleave(events: np.ndarray, others: list) -> list:
    """Items of one event array and other items (sorted by time) in time order.

    An item at time t goes after the events with ``t_event <= t``; empty event runs are left out.
    """
    if not others:
        return [EventsItem(events)] if len(events) else []
    if not len(events):
        return list(others)
    ts = np.fromiter((item_time_us(o) for o in others), dtype=np.int64, count=len(others))
    cuts = np.searchsorted(events["t"], ts, side="right")
    out: list = []
    start = 0
    for cut, o in zip(cuts.tolist(), others, strict=True):
        if cut > start:
            out.append(EventsItem(events[start:cut]))
            start = cut
        out.append(o)
    if start < len(events):
        out.append(EventsItem(events[start:]))
    return out


def _first_line(err: BaseException) -> str:
    s = str(err).strip()
    return s.splitlines()[0] if s else type(err).__name__


# ---------------------------------------------------------------------------------------------- dv-processing


def _dv():
    try:
        import dv_processing
    except ImportError as err:
        raise SourceError(
            f"dv-processing is not installed (pip install dv-processing): {err}; DAVIS cameras and AEDAT4 "
            "files need it") from None
    return dv_processing


def _dv_frame_item(fr) -> FrameItem:
    img = np.asarray(fr.image)
    if img.ndim == 3:
        if img.shape[2] == 1:
            img = img[:, :, 0]
        else:  # BGR(A) -> grey, ITU-R BT.601 weights
            img = (img[..., 0] * 0.114 + img[..., 1] * 0.587 + img[..., 2] * 0.299 + 0.5).astype(np.uint8)
    exposure = getattr(fr, "exposure", None)
    exp_us = int(exposure.total_seconds() * 1e6) if isinstance(exposure, _dt.timedelta) else 0
    return FrameItem(int(fr.timestamp), np.ascontiguousarray(img, dtype=np.uint8), "mono8", exp_us)


def _dv_imu_item(s) -> ImuItem:
    acc = np.asarray(s.getAccelerations(), dtype=np.float64).reshape(3)  # m/s^2
    gyr = np.asarray(s.getAngularVelocities(), dtype=np.float64).reshape(3)  # rad/s
    return ImuItem(int(s.timestamp), acc, gyr, float(s.temperature))


def _dv_trigger_item(tr) -> TriggerItem:
    code = int(tr.type.value)
    return TriggerItem(int(tr.timestamp), code, 0 if code in _FALLING else 1)


class _Lane:
    """One non-event stream of a dv input with a look-ahead buffer (for the k-way merge by time)."""

    def __init__(self, name: str, pull: Callable[[], list | None]):
        self.name = name
        self.pull = pull
        self.buf: deque = deque()
        self.done = False

    def fill_past(self, t_us: float) -> None:
        """Pull until the buffer holds an item later than ``t_us`` or the stream ends."""
        while not self.done and (not self.buf or item_time_us(self.buf[-1]) <= t_us):
            got = self.pull()
            if got is None:
                self.done = True
            else:
                self.buf.extend(got)

    def pop_until(self, t_us: float) -> list:
        out = []
        while self.buf and item_time_us(self.buf[0]) <= t_us:
            out.append(self.buf.popleft())
        return out


class _DvInput:
    """Shared reading of a dv-processing input (recording, camera or network reader).

    Reads event batches one at a time and merges the frame, IMU and trigger streams in time order; an
    optional background-activity noise filter (``dv.noise.BackgroundActivityNoiseFilter``) works on dv's
    own event stores; an optional native AEDAT4 writer (``dv.io.MonoCameraWriter``) records what is read.
    """

    live = False

    def _setup_dv(self, reader, name: str, width: int, height: int) -> None:
        self._reader = reader
        self._name = name
        self._size = (int(width), int(height))
        self._lock = threading.RLock()
        self._noise = None
        self._writer = None
        self._writer_path: Path | None = None
        self.counts = {"events": 0, "frames": 0, "imu": 0, "triggers": 0}
        self._events_on = bool(reader.isEventStreamAvailable())
        self._events_done = not self._events_on
        self._lanes: list[_Lane] = []
        if reader.isFrameStreamAvailable():
            self._lanes.append(_Lane("frames", self._pull_frame))
        if reader.isImuStreamAvailable():
            self._lanes.append(_Lane("imu", self._pull_imu))
        if reader.isTriggerStreamAvailable():
            self._lanes.append(_Lane("triggers", self._pull_triggers))

    # -- the optional software noise filter -------------------------------------------------------------
    def set_noise_filter(self, duration_us: int) -> None:
        """Background-activity filter: keep an event only if a neighbour fired within ``duration_us`` (0: off)."""
        dv = _dv()
        with self._lock:
            if duration_us <= 0:
                self._noise = None
            elif self._noise is None:
                self._noise = dv.noise.BackgroundActivityNoiseFilter(
                    self._size, backgroundActivityDuration=_dt.timedelta(microseconds=int(duration_us)))
            else:
                self._noise.setBackgroundActivityDuration(_dt.timedelta(microseconds=int(duration_us)))

    # -- native recording ----------------------------------------------------------------------------------
    def start_native(self, path: str | os.PathLike) -> None:
        """Record every stream read from now on to an AEDAT4 file (dv's MonoCameraWriter, LZ4)."""
        dv = _dv()
        path = Path(path)
        if path.is_dir():
            path = path / f"{self._name or 'davis'}_{time.strftime('%Y%m%d_%H%M%S')}.aedat4"
        if not path.parent.is_dir():
            raise SourceError(f"cannot record AEDAT4 to {path}: folder {path.parent} does not exist")
        cfg = dv.io.MonoCameraWriter.Config(self._name or "DAVIS346_evmicro")
        r = self._reader
        if r.isEventStreamAvailable():
            cfg.addEventStream(self._size)
        if r.isFrameStreamAvailable():
            res = r.getFrameResolution()
            cfg.addFrameStream(tuple(int(v) for v in res) if res is not None else self._size)
        if r.isImuStreamAvailable():
            cfg.addImuStream()
        if r.isTriggerStreamAvailable():
            cfg.addTriggerStream()
        try:
            writer = dv.io.MonoCameraWriter(str(path), cfg)
        except RuntimeError as err:
            raise SourceError(f"cannot record AEDAT4 to {path}: {_first_line(err)}") from None
        with self._lock:
            self._writer = writer
            self._writer_path = path

    def stop_native(self) -> Path | None:
        """Finish the AEDAT4 file (dv writes its data table when the writer is released)."""
        with self._lock:
            path, self._writer, self._writer_path = self._writer_path, None, None
        return path

    @property
    def native_path(self) -> Path | None:
        return self._writer_path

    # -- reading -------------------------------------------------------------------------------------------
    def _pull_frame(self) -> list | None:
        fr = self._reader.getNextFrame()
        if fr is None:
            return [] if self.live else None
        if self._writer is not None:
            self._writer.writeFrame(fr)
        self.counts["frames"] += 1
        return [_dv_frame_item(fr)]

    def _pull_imu(self) -> list | None:
        batch = self._reader.getNextImuBatch()
        if batch is None:
            return [] if self.live else None
        if self._writer is not None:
            for s in batch:
                self._writer.writeImu(s)
        out = [_dv_imu_item(s) for s in batch]
        self.counts["imu"] += len(out)
        return out

    def _pull_triggers(self) -> list | None:
        batch = self._reader.getNextTriggerBatch()
        if batch is None:
            return [] if self.live else None
        if self._writer is not None:
            for tr in batch:
                self._writer.writeTrigger(tr)
        out = [_dv_trigger_item(tr) for tr in batch]
        self.counts["triggers"] += len(out)
        return out

    def _next_events(self) -> np.ndarray | None:
        """The next event batch (EVENT_DTYPE, filtered), None when the stream has ended (or has none now)."""
        batch = self._reader.getNextEventBatch()
        if batch is None:
            return None
        with self._lock:
            if self._writer is not None:
                self._writer.writeEvents(batch)
            self.counts["events"] += len(batch)
            if self._noise is not None and len(batch):
                self._noise.accept(batch)
                batch = self._noise.generateEvents()
        return dv_events_to_array(batch)

    def _read_merged(self) -> list | None:
        """One step of the time-ordered merge (files: None at the end of every stream)."""
        if not self._events_done:
            ev = self._next_events()
            if ev is None:
                if self.live:
                    return self._live_others()
                self._events_done = True
            else:
                if not len(ev):
                    return []
                if self.live:  # whatever else has arrived goes out now
                    return interleave(ev, self._live_others())
                t_hi = int(ev["t"][-1])
                others: list = []
                for lane in self._lanes:
                    lane.fill_past(t_hi)
                    others += lane.pop_until(t_hi)
                others.sort(key=item_time_us)
                return interleave(ev, others)
        # the event stream has ended (or there is none): merge the other streams
        lanes = [ln for ln in self._lanes if not ln.done or ln.buf]
        if not lanes:
            return None
        for ln in lanes:
            if not ln.buf:
                ln.fill_past(-np.inf)
        pending = [ln for ln in lanes if ln.buf]
        if not pending:
            return None
        horizon = min((item_time_us(ln.buf[-1]) for ln in pending if not ln.done), default=np.inf)
        out: list = []
        for ln in pending:
            out += ln.pop_until(horizon)
        out.sort(key=item_time_us)
        return out

    def _live_others(self) -> list:
        out: list = []
        for lane in self._lanes:
            out += lane.pull() or []
        out.sort(key=item_time_us)
        return out

    def _close_dv(self) -> None:
        self.stop_native()
        self._reader = None


class Aedat4FileSource(_DvInput):
    """An AEDAT 4.0 file: events, APS frames (mono8), IMU and triggers, merged in device time order.

    The file is read one stored packet at a time (dv-processing's sequential reader), so big files are
    never held in memory. ``noise_filter_us`` > 0 applies dv's background-activity filter to the events.
    A file that cannot be opened (missing, truncated: dv needs the data table written last, corrupt)
    raises :class:`SourceError`; a read error later ends the file after the last good packet, with the
    reason in :attr:`damage`.
    """

    def __init__(self, path: str | os.PathLike, noise_filter_us: int = 0):
        from ros2_evmicro.core.codecs.aedat4 import Aedat4Reader

        self.path = Path(path)
        try:
            rd = Aedat4Reader(self.path)
        except CodecError as err:
            raise SourceError(str(err)) from None
        self.damage: str | None = None
        self.info = SourceInfo(rd.width, rd.height, serial=rd.camera_name, live=False,
                               meta={"path": str(self.path), "streams": rd.streams, "format": "aedat4"})
        self._setup_dv(rd._rec, rd.camera_name, rd.width, rd.height)
        if noise_filter_us:
            self.set_noise_filter(noise_filter_us)

    def read(self, timeout_s: float = 0.05) -> list | None:
        if self._reader is None:
            return None
        if self.damage:
            return self._drain()
        try:
            return self._read_merged()
        except RuntimeError as err:
            self.damage = (f"reading failed after {self.counts} ({_first_line(err)}): the file is truncated or "
                           "corrupt")
            return self._drain()

    def _drain(self) -> list | None:
        out = []
        for ln in self._lanes:
            out += list(ln.buf)
            ln.buf.clear()
            ln.done = True
        out.sort(key=item_time_us)
        return out or None

    def close(self) -> None:
        if self._reader is not None:
            self._close_dv()


class DavisCameraSource(_DvInput):
    """A live iniVation DAVIS camera through dv-processing (``dv.io.camera``).

    ``serial`` picks a camera (empty: the first found). ``settings`` are applied at start and may be changed
    while streaming with :meth:`apply` (see :meth:`apply` for the keys). Reads are non-blocking: each
    ``read`` returns what arrived (an empty list when nothing did, after up to ``timeout_s``). A camera that
    stops (unplugged) raises :class:`SourceError`.
    """

    live = True

    def __init__(self, serial: str = "", settings: Mapping[str, Any] | None = None):
        dv = _dv()
        try:
            found = list(dv.io.camera.discover())
        except RuntimeError as err:
            raise SourceError(f"cannot list DAVIS cameras: {_first_line(err)}") from None
        if not found:
            raise SourceError("no DAVIS camera found (plug it in, or use source:=file path:=FILE.aedat4)")
        try:
            cam = dv.io.camera.open(serial) if serial else dv.io.camera.open()
        except RuntimeError as err:
            raise SourceError(f"cannot open DAVIS camera {serial or '(first found)'}: {_first_line(err)}") from None
        if cam is None:
            raise SourceError(f"DAVIS camera {serial!r} not found among {len(found)} connected camera(s)")
        self.camera = cam
        res = cam.getEventResolution() if cam.isEventStreamAvailable() else cam.getFrameResolution()
        w, h = (int(res[0]), int(res[1])) if res is not None else (346, 260)
        name = str(cam.getCameraName())
        sn = str(cam.getSerialNumber()) if hasattr(cam, "getSerialNumber") else name
        self.info = SourceInfo(w, h, serial=sn, live=True, meta={"camera_name": name})
        self._setup_dv(cam, name, w, h)
        self.applied: dict[str, Any] = {}
        if settings:
            self.apply(settings)

    def apply(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Apply camera settings now; returns what was applied. Keys (all optional):

        - ``bias_on``/``bias_off``/``bias_diff``/``bias_refr``/``bias_pr``/``bias_pr_sf``: ``[coarse, fine]``
          (coarse 0-7, fine 0-255; ``[-1, -1]`` leaves the camera's value) -> ``setDavis346BiasCoarseFine``;
        - ``exposure_us`` (0: auto exposure) -> ``setExposureDuration`` / ``setAutoExposure``;
        - ``frame_interval_us`` -> ``setFrameInterval``;
        - ``noise_filter_us`` (0: off): software background-activity filter (dv.noise);
        - ``hw_noise_filter_us`` (0: off): the camera's own background-activity filter (in 250 us steps);
        - ``roi``: ``[x, y, width, height]`` (an empty list or width 0: full sensor) -> ``setCropArea``.
        Raises ValueError for a value out of range; SDK errors become :class:`SourceError`.
        """
        dv = _dv()
        cam = self.camera
        done: dict[str, Any] = {}
        if cam is None:  # closed: the node applies its parameters at the next open
            return done
        with self._lock:
            try:
                for key, member in DAVIS_BIASES.items():
                    if key not in settings:
                        continue
                    coarse, fine = (int(v) for v in settings[key])
                    if coarse < 0 and fine < 0:
                        continue
                    if not (0 <= coarse <= 7 and 0 <= fine <= 255):
                        raise ValueError(f"{key}=[{coarse}, {fine}]: coarse must be 0-7 and fine 0-255")
                    cam.setDavis346BiasCoarseFine(getattr(dv.io.camera.DAVIS.Davis346BiasCF, member), coarse, fine)
                    done[key] = [coarse, fine]
                if "exposure_us" in settings:
                    exp = int(settings["exposure_us"])
                    if exp <= 0:
                        cam.setAutoExposure(True)
                    else:
                        cam.setAutoExposure(False)
                        cam.setExposureDuration(_dt.timedelta(microseconds=exp))
                    done["exposure_us"] = exp
                if int(settings.get("frame_interval_us", 0)) > 0:
                    cam.setFrameInterval(_dt.timedelta(microseconds=int(settings["frame_interval_us"])))
                    done["frame_interval_us"] = int(settings["frame_interval_us"])
                if "hw_noise_filter_us" in settings:
                    steps = int(settings["hw_noise_filter_us"]) // 250
                    cam.setBackgroundActivityFilter(max(steps, 0))
                    done["hw_noise_filter_us"] = steps * 250
                if "roi" in settings:
                    roi = [int(v) for v in settings["roi"]]
                    if len(roi) != 4 or roi[2] <= 0 or roi[3] <= 0:
                        roi = [0, 0, self.info.width, self.info.height]
                    x, y, w, h = roi
                    if x < 0 or y < 0 or x + w > self.info.width or y + h > self.info.height:
                        raise ValueError(f"roi {roi} lies outside the {self.info.width}x{self.info.height} sensor")
                    cam.setCropArea((x, y, w, h))
                    done["roi"] = roi
            except RuntimeError as err:
                raise SourceError(f"DAVIS camera refused a setting: {_first_line(err)}") from None
        if "noise_filter_us" in settings:
            self.set_noise_filter(int(settings["noise_filter_us"]))
            done["noise_filter_us"] = int(settings["noise_filter_us"])
        self.applied.update(done)
        return done

    def read(self, timeout_s: float = 0.05) -> list | None:
        if self._reader is None:
            raise SourceError("DAVIS camera is closed")
        t_end = time.monotonic() + timeout_s
        while True:
            try:
                running = self.camera.isRunning()
                items = self._read_merged() if running else None
            except RuntimeError as err:
                raise SourceError(f"DAVIS camera failed: {_first_line(err)}") from None
            if not running:
                raise SourceError("DAVIS camera stopped streaming (unplugged?)")
            if items or time.monotonic() >= t_end:
                return items or []
            time.sleep(0.001)

    def close(self) -> None:
        if self._reader is not None:
            self._close_dv()
            self.camera = None


class DvNetworkSource(_DvInput):
    """A DV network event stream (``dv.io.NetworkReader`` over TCP: DV's "Output to network" module)."""

    live = True

    def __init__(self, host: str = "127.0.0.1", port: int = 7777):
        dv = _dv()
        try:
            rd = dv.io.NetworkReader(str(host), int(port))
        except RuntimeError as err:
            raise SourceError(f"cannot connect to the DV stream at {host}:{port}: {_first_line(err)}") from None
        res = rd.getEventResolution() if rd.isEventStreamAvailable() else rd.getFrameResolution()
        w, h = (int(res[0]), int(res[1])) if res is not None else (346, 260)
        name = str(rd.getCameraName())
        self.info = SourceInfo(w, h, serial=name, live=True, meta={"host": host, "port": int(port)})
        self._setup_dv(rd, name, w, h)

    def read(self, timeout_s: float = 0.05) -> list | None:
        if self._reader is None:
            raise SourceError("DV network stream is closed")
        try:
            if not self._reader.isRunning():
                raise SourceError("DV network stream ended (server stopped or connection lost)")
            return self._read_merged() or []
        except RuntimeError as err:
            raise SourceError(f"DV network stream failed: {_first_line(err)}") from None

    def close(self) -> None:
        if self._reader is not None:
            self._close_dv()


# ------------------------------------------------------------------------------------------------- RAW / bags


class RawFileSource:
    """A Prophesee RAW file (EVT 3.0 or 2.0), decoded ``chunk_bytes`` at a time, trigger edges included.

    ``width``/``height`` (pixels) are used when the header gives no geometry (old headers of unknown plugins;
    0: the header must say). A file
    that ends inside an event word ends after its last complete event, with :attr:`damage` set. An unknown
    format or a missing file raises :class:`SourceError`.
    """

    def __init__(self, path: str | os.PathLike, width: int = 0, height: int = 0, chunk_bytes: int = 1 << 20):
        from ros2_evmicro.core.codecs import Evt2Decoder, Evt3Decoder, RawReader

        self.path = Path(path)
        try:
            try:
                self.reader = RawReader(self.path, chunk_bytes=chunk_bytes)
            except CodecError as err:
                if not (width and height and "geometry" in str(err)):
                    raise
                self.reader = RawReader(self.path, width=width, height=height, chunk_bytes=chunk_bytes)
            self._dec = (Evt3Decoder if self.reader.fmt == "evt3" else Evt2Decoder)(self.reader.width,
                                                                                    self.reader.height)
        except CodecError as err:
            raise SourceError(str(err)) from None
        hdr = self.reader.header
        serial = hdr.fields.get("serial_number", "")
        self.info = SourceInfo(self.reader.width, self.reader.height, serial=serial, live=False,
                               meta={"path": str(self.path), "format": self.reader.fmt, "header": dict(hdr.fields)})
        self.damage: str | None = None
        self.chunk_bytes = int(chunk_bytes)
        self._fh: BinaryIO | None = self.path.open("rb")
        self._fh.seek(hdr.payload_offset)

    def read(self, timeout_s: float = 0.05) -> list | None:
        if self._fh is None:
            return None
        chunk = self._fh.read(self.chunk_bytes)
        if not chunk:
            self._finish()
            return None
        try:
            ev, trig = self._dec.decode_with_triggers(chunk)
        except CodecError as err:
            self.damage = f"decoding stopped at byte {self._fh.tell()}: {err}"
            self._finish()
            return None
        others = [TriggerItem(int(t), int(i), int(v)) for t, i, v in trig.tolist()]
        return interleave(ev, others)

    def _finish(self) -> None:
        pend = self._dec.pending_bytes
        if pend and not self.damage:
            self.damage = (f"the file ends inside an event word: {pend} trailing byte(s) ignored after "
                           f"{self._dec.n_events} events")
        self.stats = self._dec.stats()
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class EventPacketBagSource:
    """A bag of ``event_camera_msgs/msg/EventPacket`` (ros-event-camera drivers; evt3 or libcaer payloads).

    ``topic`` picks the topic (empty: every EventPacket topic). The first message is decoded when the source
    opens, so a bag of another type fails at once with :class:`SourceError`.
    """

    def __init__(self, path: str | os.PathLike, topic: str = ""):
        from ros2_evmicro.core.codecs import read_eventpacket_bag

        self.path = Path(path)
        self._it: Iterator | None = read_eventpacket_bag(self.path, topic=topic or None)
        try:
            first = next(self._it)
        except StopIteration:
            raise SourceError(f"bag {self.path} holds no EventPacket message") from None
        except CodecError as err:
            raise SourceError(str(err)) from None
        self._first: BagEventPacket | None = first
        self.damage: str | None = None
        self.n_messages = 0
        self.info = SourceInfo(first.info.width, first.info.height, serial=first.info.frame_id, live=False,
                               meta={"path": str(self.path), "topic": first.info.topic,
                                     "encoding": first.info.encoding})

    def read(self, timeout_s: float = 0.05) -> list | None:
        if self._it is None:
            return None
        if self._first is not None:
            pk, self._first = self._first, None
        else:
            try:
                pk = next(self._it)
            except StopIteration:
                self._it = None
                return None
            except CodecError as err:
                self.damage = f"stopped after {self.n_messages} messages: {err}"
                self._it = None
                return None
        self.n_messages += 1
        others = [TriggerItem(int(t), int(i), int(v)) for t, i, v in pk.triggers.tolist()]
        return interleave(pk.events, others)

    def close(self) -> None:
        if self._it is not None:
            close = getattr(self._it, "close", None)
            if callable(close):
                close()
            self._it = None


class Evt3FileWriter:
    """Write items as a Prophesee RAW EVT 3.0 file (modern header), chunk by chunk.

    Each ``write`` encodes its events and trigger edges as a self-contained EVT 3.0 run (it starts with a
    full time), so the concatenation decodes to the same events. Used for the EVK4's native recording of
    recorded or bag sources (a live camera logs the SDK's own bytes instead).
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, serial: str = ""):
        path = Path(path)
        if path.is_dir():
            path = path / f"evk4_{time.strftime('%Y%m%d_%H%M%S')}.raw"
        if not path.parent.is_dir():
            raise SourceError(f"cannot record RAW to {path}: folder {path.parent} does not exist")
        self.path = path
        self.n_events = 0
        self._fh: BinaryIO | None = path.open("wb")
        header = (
            "% camera_integrator_name Prophesee\n"
            f"% date {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
            "% evt 3.0\n"
            f"% format EVT3;height={int(height)};width={int(width)}\n"
            f"% geometry {int(width)}x{int(height)}\n"
            + (f"% serial_number {serial}\n" if serial else "")
            + "% end\n"
        )
        self._fh.write(header.encode("ascii"))

    def write(self, items: list) -> None:
        from ros2_evmicro.core.codecs import TRIGGER_DTYPE, encode_evt3

        if self._fh is None:
            return
        evs = [it.events for it in items if isinstance(it, EventsItem) and len(it.events)]
        trig = [(it.t_us, it.channel, it.value) for it in items if isinstance(it, TriggerItem)]
        if not evs and not trig:
            return
        ev = np.concatenate(evs) if evs else empty_events(0)
        tr = np.array(trig, dtype=TRIGGER_DTYPE) if trig else None
        self._fh.write(encode_evt3(ev, tr))
        self.n_events += len(ev)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


# ------------------------------------------------------------------------------------------------- Metavision


def _metavision():
    try:
        import metavision_hal
        from metavision_core.event_io import EventsIterator
    except ImportError as err:
        raise SourceError(
            f"Metavision SDK (metavision_hal) not found: install OpenEB (https://github.com/prophesee-ai/openeb) "
            f"or the Metavision SDK and source its setup script, or use source:=file ({err})") from None
    return metavision_hal, EventsIterator


def _mv_events(a: np.ndarray) -> np.ndarray:
    """Metavision EventCD array (x, y, p, t) -> EVENT_DTYPE."""
    out = np.empty(len(a), dtype=EVENT_DTYPE)
    if len(a):
        out["x"] = a["x"]
        out["y"] = a["y"]
        out["p"] = a["p"] > 0
        out["t"] = a["t"]
    return out


class MetavisionCameraSource:
    """A live Prophesee camera (EVK4, IMX636) through the Metavision SDK / OpenEB Python API.

    Opened with ``metavision_hal.DeviceDiscovery.open(serial)`` (empty serial: the first camera); biases
    (``bias_diff_on``, ``bias_diff_off``, ``bias_fo``, ``bias_hpf``, ``bias_refr``) through
    ``device.get_i_ll_biases()``, event rate control through ``get_i_erc_module()`` (``erc_rate`` events/s,
    0: off), the hardware ROI through ``get_i_roi()`` (``roi`` = (x, y, width, height) or None) and the
    external trigger input through ``get_i_trigger_in()``. Events come from
    ``metavision_core.event_io.EventsIterator.from_device`` in slices of ``delta_t_us``; trigger edges from
    its ``get_ext_trigger_events()``. The SDK is imported when the source opens.
    """

    def __init__(self, serial: str = "", biases: Mapping[str, int] | None = None, erc_rate: int = 0,
                 roi: tuple[int, int, int, int] | list[int] | None = None, trigger_in: bool = False,
                 delta_t_us: int = 10_000):
        hal, events_iterator = _metavision()
        self._hal = hal
        try:
            device = hal.DeviceDiscovery.open(serial)
        except Exception as err:  # noqa: BLE001 - the SDK raises its own exception classes
            raise SourceError(f"cannot open Prophesee camera {serial or '(first found)'}: {_first_line(err)}") from None
        if device is None:
            raise SourceError(f"no Prophesee camera found{' with serial ' + serial if serial else ''} "
                              "(plug the EVK4 in, or use source:=file path:=FILE.raw)")
        self.device = device
        geom = device.get_i_geometry()
        w, h = (int(geom.get_width()), int(geom.get_height())) if geom is not None else (1280, 720)
        ident = device.get_i_hw_identification()
        sn = str(ident.get_serial()) if ident is not None else serial
        self.info = SourceInfo(w, h, serial=sn, live=True, meta={"sdk": "metavision"})
        self._lock = threading.RLock()
        self.applied: dict[str, Any] = {}
        self.raw_log_path: Path | None = None
        self.apply({**dict(biases or {}), "erc_rate": erc_rate, "roi": list(roi) if roi else [],
                    "trigger_in": trigger_in})
        try:
            self._mv_it = events_iterator.from_device(device=device, delta_t=int(delta_t_us))
            self._it = iter(self._mv_it)
        except Exception as err:  # noqa: BLE001
            raise SourceError(f"cannot start the Prophesee event stream: {_first_line(err)}") from None
        self._n_trig = 0

    def apply(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Apply settings now (biases by name, ``erc_rate`` ev/s, ``roi`` [x, y, w, h] or [], ``trigger_in``);
        returns what was applied ({} once the source is closed)."""
        d = self.device
        done: dict[str, Any] = {}
        if d is None:
            return done
        with self._lock:
            try:
                biases = {k: int(v) for k, v in settings.items() if k in EVK4_BIASES}
                if biases:
                    ll = d.get_i_ll_biases()
                    if ll is None:
                        raise SourceError("this Prophesee camera has no bias control")
                    for name, value in biases.items():
                        if not ll.set(name, value):
                            raise ValueError(f"the camera refused {name}={value} (out of its allowed range?)")
                        done[name] = value
                if "erc_rate" in settings:
                    rate = int(settings["erc_rate"])
                    erc = d.get_i_erc_module()
                    if erc is None:
                        if rate > 0:
                            raise SourceError("this Prophesee camera has no event rate control (ERC)")
                    else:
                        if rate > 0:
                            erc.set_cd_event_rate(rate)
                        erc.enable(rate > 0)
                        done["erc_rate"] = rate
                if "roi" in settings:
                    roi = [int(v) for v in settings["roi"]]
                    i_roi = d.get_i_roi()
                    if roi and (len(roi) != 4 or roi[2] <= 0 or roi[3] <= 0):
                        raise ValueError(f"roi must be [x, y, width, height] with a positive size, got {roi}")
                    if i_roi is None:
                        if roi:
                            raise SourceError("this Prophesee camera has no ROI facility")
                    elif roi:
                        i_roi.set_window(self._hal.I_ROI.Window(*roi))
                        i_roi.enable(True)
                        done["roi"] = roi
                    else:
                        i_roi.enable(False)
                        done["roi"] = []
                if "trigger_in" in settings:
                    on = bool(settings["trigger_in"])
                    trig = d.get_i_trigger_in()
                    if trig is None:
                        if on:
                            raise SourceError("this Prophesee camera has no trigger input")
                    else:
                        ch = self._hal.I_TriggerIn.Channel.MAIN
                        trig.enable(ch) if on else trig.disable(ch)
                        done["trigger_in"] = on
            except (SourceError, ValueError):
                raise
            except Exception as err:  # noqa: BLE001 - SDK exceptions
                raise SourceError(f"Prophesee camera refused a setting: {_first_line(err)}") from None
        self.applied.update(done)
        return done

    def start_raw_log(self, path: str | os.PathLike) -> Path:
        """Log the camera's own RAW bytes to ``path`` (``get_i_events_stream().log_raw_data``)."""
        path = Path(path)
        if path.is_dir():
            path = path / f"evk4_{time.strftime('%Y%m%d_%H%M%S')}.raw"
        stream = self.device.get_i_events_stream()
        if stream is None or not stream.log_raw_data(str(path)):
            raise SourceError(f"the Prophesee SDK could not log RAW data to {path}")
        self.raw_log_path = path
        return path

    def stop_raw_log(self) -> None:
        if self.raw_log_path is not None and self.device is not None:
            stream = self.device.get_i_events_stream()
            if stream is not None:
                stream.stop_log_raw_data()
        self.raw_log_path = None

    def read(self, timeout_s: float = 0.05) -> list | None:
        if self._it is None:
            raise SourceError("Prophesee camera is closed")
        try:
            with self._lock:
                a = next(self._it)
        except StopIteration:
            raise SourceError("Prophesee camera stopped streaming (unplugged?)") from None
        except Exception as err:  # noqa: BLE001
            raise SourceError(f"Prophesee camera failed: {_first_line(err)}") from None
        ev = _mv_events(a)
        others: list = []
        try:
            trig = self._mv_it.get_ext_trigger_events()
        except (RuntimeError, AttributeError):
            trig = None
        if trig is not None and len(trig) > self._n_trig:
            new = trig[self._n_trig:]
            self._n_trig = len(trig)
            others = [TriggerItem(int(t), int(i), int(p)) for p, t, i in zip(new["p"].tolist(), new["t"].tolist(),
                                                                            new["id"].tolist(), strict=True)]
        return interleave(ev, others)

    def close(self) -> None:
        self.stop_raw_log()
        self._it = None
        self._mv_it = None
        self.device = None


# ------------------------------------------------------------------------------------------------- webcam


class WebcamSource:
    """A webcam (``device`` = index like '0' or a /dev/video path) or a video file, through OpenCV.

    Live devices are opened with CAP_V4L2 (where available) and asked for ``width`` x ``height`` at ``fps``
    with the ``fourcc`` pixel format and a manual ``exposure`` (-1: automatic); each frame's device time is
    the host monotonic clock at grab (microseconds). Files play their frames with device time = frame
    index / the file's fps. Frames are bgr8. A device or file that cannot be opened raises
    :class:`SourceError`.
    """

    def __init__(self, device: str = "0", width: int = 1920, height: int = 1080, fps: float = 60.0,
                 fourcc: str = "MJPG", exposure: float = -1, live: bool | None = None):
        try:
            import cv2
        except ImportError as err:
            raise SourceError(f"OpenCV is not installed (pip install opencv-python-headless): {err}") from None
        self._cv2 = cv2
        dev = str(device)
        if live is None:
            live = dev.isdigit() or dev.startswith("/dev/")
        self.live = bool(live)
        if self.live:
            api = getattr(cv2, "CAP_V4L2", cv2.CAP_ANY)
            cap = cv2.VideoCapture(int(dev) if dev.isdigit() else dev, api)
            if not cap.isOpened():
                cap.release()
                raise SourceError(f"no webcam at {dev!r} (plug it in, check /dev/video*, or use source:=file)")
            if fourcc:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*fourcc[:4].ljust(4)))
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, int(width))
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, int(height))
            cap.set(cv2.CAP_PROP_FPS, float(fps))
            if exposure >= 0:
                cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, 1)  # V4L2: 1 = manual
                cap.set(cv2.CAP_PROP_EXPOSURE, float(exposure))
        else:
            if not Path(dev).is_file():
                raise SourceError(f"video file {dev} does not exist")
            cap = cv2.VideoCapture(dev)
            if not cap.isOpened():
                cap.release()
                raise SourceError(f"OpenCV cannot open the video file {dev} (unknown container or codec)")
        self.cap: cv2.VideoCapture | None = cap
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) or int(width)
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) or int(height)
        f = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = f if f > 0 else float(fps)
        self.n_frames = 0
        self.damage: str | None = None
        self.info = SourceInfo(w, h, serial=dev, live=self.live, meta={"fps": self.fps, "device": dev})

    def read(self, timeout_s: float = 0.05) -> list | None:
        if self.cap is None:
            return None if not self.live else []
        ok = self.cap.grab()
        t_us = time.monotonic_ns() // 1000 if self.live else int(round(self.n_frames * 1e6 / self.fps))
        if ok:
            ok, img = self.cap.retrieve()
        if not ok:
            if self.live:
                raise SourceError(f"webcam {self.info.serial} stopped delivering frames (unplugged?)")
            return None
        if img.ndim == 2:
            img = self._cv2.cvtColor(img, self._cv2.COLOR_GRAY2BGR)
        self.n_frames += 1
        return [FrameItem(int(t_us), np.ascontiguousarray(img), "bgr8")]

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None
