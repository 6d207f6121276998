"""Fake ``metavision_hal`` (OpenEB's HAL bindings): DeviceDiscovery.open(serial) -> Device with the facilities
the EVK4 driver uses. Configure with :data:`FAKE` before opening:

- ``FAKE.devices``: {serial: FakeCamera}; ``open('')`` opens the first; an unknown serial gives None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

EVENT_CD = np.dtype({"names": ["x", "y", "p", "t"], "formats": ["<u2", "<u2", "<i2", "<i8"],
                     "offsets": [0, 2, 4, 8], "itemsize": 16})
EXT_TRIGGER = np.dtype([("p", "<i2"), ("t", "<i8"), ("id", "<i2")])

# IMX636 allowed ranges (Metavision docs, biases page)
BIAS_RANGES = {"bias_diff_on": (-85, 140), "bias_diff_off": (-35, 190), "bias_fo": (-35, 55),
               "bias_hpf": (0, 120), "bias_refr": (-20, 235), "bias_diff": (-25, 23)}


@dataclass
class FakeCamera:
    """What the fake device streams: ``events`` (EVENT_CD), ``triggers`` (EXT_TRIGGER), and after how many
    slices it is "unplugged" (None: at the end of its events the iterator just ends)."""

    events: np.ndarray
    triggers: np.ndarray = field(default_factory=lambda: np.zeros(0, EXT_TRIGGER))
    width: int = 1280
    height: int = 720
    unplug_after: int | None = None
    realtime: bool = False
    calls: list = field(default_factory=list)
    biases: dict = field(default_factory=lambda: {k: 0 for k in BIAS_RANGES})
    erc: dict = field(default_factory=lambda: {"enabled": False, "rate": 0})
    roi: dict = field(default_factory=lambda: {"enabled": False, "window": None})
    trigger_in: dict = field(default_factory=dict)
    raw_log: list = field(default_factory=list)


class _Fake:
    def __init__(self):
        self.devices: dict[str, FakeCamera] = {}


FAKE = _Fake()


class I_LL_Biases:  # noqa: N801 - SDK name
    def __init__(self, cam: FakeCamera):
        self.cam = cam

    def set(self, bias_name: str, bias_value: int) -> bool:
        self.cam.calls.append(("set_bias", bias_name, bias_value))
        lo, hi = BIAS_RANGES.get(bias_name, (None, None))
        if lo is None:
            raise RuntimeError(f"unknown bias {bias_name}")
        if not lo <= bias_value <= hi:
            return False
        self.cam.biases[bias_name] = bias_value
        return True

    def get(self, bias_name: str) -> int:
        return self.cam.biases[bias_name]

    def get_all_biases(self) -> dict:
        return dict(self.cam.biases)


class I_ErcModule:  # noqa: N801
    def __init__(self, cam: FakeCamera):
        self.cam = cam

    def enable(self, b: bool) -> None:
        self.cam.erc["enabled"] = bool(b)

    def is_enabled(self) -> bool:
        return self.cam.erc["enabled"]

    def set_cd_event_rate(self, events_per_sec: int) -> None:
        self.cam.erc["rate"] = int(events_per_sec)

    def get_cd_event_rate(self) -> int:
        return self.cam.erc["rate"]


class I_ROI:  # noqa: N801
    class Window:
        def __init__(self, x: int, y: int, width: int, height: int):
            self.x, self.y, self.width, self.height = x, y, width, height

    def __init__(self, cam: FakeCamera):
        self.cam = cam

    def set_window(self, roi: I_ROI.Window) -> None:
        self.cam.roi["window"] = (roi.x, roi.y, roi.width, roi.height)

    def enable(self, enable: bool) -> None:
        self.cam.roi["enabled"] = bool(enable)


class I_TriggerIn:  # noqa: N801
    class Channel:
        MAIN = 0
        AUX = 1
        LOOPBACK = 2

    def __init__(self, cam: FakeCamera):
        self.cam = cam

    def enable(self, channel: int) -> bool:
        self.cam.trigger_in[channel] = True
        return True

    def disable(self, channel: int) -> bool:
        self.cam.trigger_in[channel] = False
        return True

    def is_enabled(self, channel: int) -> bool:
        return self.cam.trigger_in.get(channel, False)


class I_Geometry:  # noqa: N801
    def __init__(self, cam: FakeCamera):
        self.cam = cam

    def get_width(self) -> int:
        return self.cam.width

    def get_height(self) -> int:
        return self.cam.height


class I_HW_Identification:  # noqa: N801
    def __init__(self, serial: str):
        self.serial = serial

    def get_serial(self) -> str:
        return self.serial


class I_EventsStream:  # noqa: N801
    def __init__(self, cam: FakeCamera):
        self.cam = cam

    def log_raw_data(self, f: str) -> bool:
        Path(f).write_bytes(b"% evt 3.0\n% end\n")
        self.cam.raw_log.append(("start", f))
        return True

    def stop_log_raw_data(self) -> None:
        self.cam.raw_log.append(("stop",))


class Device:
    def __init__(self, serial: str, cam: FakeCamera):
        self.serial = serial
        self.cam = cam

    def get_i_ll_biases(self):
        return I_LL_Biases(self.cam)

    def get_i_erc_module(self):
        return I_ErcModule(self.cam)

    def get_i_roi(self):
        return I_ROI(self.cam)

    def get_i_trigger_in(self):
        return I_TriggerIn(self.cam)

    def get_i_geometry(self):
        return I_Geometry(self.cam)

    def get_i_hw_identification(self):
        return I_HW_Identification(self.serial)

    def get_i_events_stream(self):
        return I_EventsStream(self.cam)


class DeviceDiscovery:
    @staticmethod
    def open(serial: str):
        if not FAKE.devices:
            return None
        if not serial:
            serial = next(iter(FAKE.devices))
        cam = FAKE.devices.get(serial)
        return Device(serial, cam) if cam is not None else None

    @staticmethod
    def list() -> list[str]:
        return list(FAKE.devices)
