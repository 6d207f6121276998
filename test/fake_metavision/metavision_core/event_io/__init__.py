"""Fake ``metavision_core.event_io.EventsIterator`` over a fake HAL device: slices of ``delta_t`` us, external
trigger events through ``get_ext_trigger_events()``; a device with ``unplug_after`` raises the SDK's error.
Slices are served in real time (like a camera) when the fake camera's ``realtime`` is set."""

from __future__ import annotations

import time

import numpy as np


class EventsIterator:
    def __init__(self, device, delta_t: int = 10000, **kwargs):
        self.device = device
        self.delta_t = int(delta_t)
        self._trig = np.zeros(0, dtype=device.cam.triggers.dtype)

    @classmethod
    def from_device(cls, device, start_ts=0, n_events=10000, delta_t=50000, mode="delta_t", max_duration=None,
                    relative_timestamps=False, **kwargs):
        return cls(device, delta_t=delta_t)

    def get_size(self):
        return self.device.cam.height, self.device.cam.width

    def __iter__(self):
        cam = self.device.cam
        ev = cam.events
        if not len(ev):
            return
        t = ev["t"]
        t0 = (int(t[0]) // self.delta_t) * self.delta_t
        k = 0
        wall0 = time.monotonic()
        while t0 <= int(t[-1]):
            if getattr(cam, "realtime", False):
                time.sleep(max(0.0, wall0 + (k + 1) * self.delta_t / 1e6 - time.monotonic()))
            if cam.unplug_after is not None and k >= cam.unplug_after:
                raise RuntimeError("Camera disconnected (fake)")
            a, b = np.searchsorted(t, [t0, t0 + self.delta_t])
            tr = cam.triggers
            self._trig = tr[tr["t"] < t0 + self.delta_t]
            yield ev[a:b].copy()
            t0 += self.delta_t
            k += 1

    def get_ext_trigger_events(self):
        return self._trig.copy()
