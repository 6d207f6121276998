"""MTCNN face detector (Zhang et al. 2016) on the P/R/O-Net weights shipped with facenet-pytorch.

The three networks are defined here with the same layer names as ``facenet_pytorch.models.mtcnn``
so that its state dicts (``site-packages/facenet_pytorch/data/{pnet,rnet,onet}.pt``) load as they
are; ``import facenet_pytorch`` itself is never executed (its ``__init__`` pulls in requests and
torchvision). The cascade follows ``facenet_pytorch.models.utils.detect_face`` step for step
(image pyramid, P-Net proposals with per-scale NMS 0.5 and cross-scale NMS 0.7, R-Net refinement,
O-Net with landmarks and "Min" NMS 0.7), with a numpy :func:`batched_nms` in place of torchvision's.

Input images are RGB uint8 ``(H, W, 3)`` (see :class:`ros2_evmicro.core.face.FaceDetector` for BGR
and grey input). Boxes are ``(x0, y0, x1, y1)`` in pixels of the input image.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.functional import interpolate

__all__ = [
    "MTCNN",
    "MtcnnError",
    "ONet",
    "PNet",
    "RNet",
    "batched_nms",
    "default_weights_dir",
    "nms",
]


class MtcnnError(RuntimeError):
    """The MTCNN weights cannot be found or loaded, or the input image is unusable."""


def default_weights_dir() -> Path:
    """Folder of facenet-pytorch's ``pnet.pt``, ``rnet.pt``, ``onet.pt`` (without importing the package)."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise MtcnnError(
            "facenet-pytorch is not installed: `pip install --no-deps facenet-pytorch` provides the MTCNN "
            "weights (or pass weights_dir= a folder with pnet.pt, rnet.pt, onet.pt)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


# ---------------------------------------------------------------------------------------------
# networks (layer names as in facenet-pytorch so that its state dicts load)
# ---------------------------------------------------------------------------------------------


class PNet(nn.Module):
    """Proposal net: fully convolutional, 12x12 receptive field, stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.softmax4_1 = nn.Softmax(dim=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return self.conv4_2(x), self.softmax4_1(self.conv4_1(x))


class RNet(nn.Module):
    """Refinement net on 24x24 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.softmax5_1 = nn.Softmax(dim=1)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
        return self.dense5_2(x), self.softmax5_1(self.dense5_1(x))


class ONet(nn.Module):
    """Output net on 48x48 crops: score, box regression, 5 landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.softmax6_1 = nn.Softmax(dim=1)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
        return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))


# ---------------------------------------------------------------------------------------------
# NMS
# ---------------------------------------------------------------------------------------------


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression; indices of the kept boxes, highest score first.

    ``boxes`` is ``(N, 4)`` as ``(x0, y0, x1, y1)``; a box is suppressed when its overlap with a
    kept box is above ``threshold``. Overlap is intersection over union (``method='union'``) or
    intersection over the smaller area (``'min'``, MTCNN's last stage). Areas are continuous
    (``(x1 - x0) * (y1 - y0)``); degenerate boxes have zero area and never suppress anything.
    """
    if method not in ("union", "min"):
        raise ValueError(f"nms method must be 'union' or 'min', got {method!r}")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if boxes.shape[0] != scores.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {scores.shape[0]} scores")
    if boxes.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    x0, y0, x1, y1 = boxes.T
    area = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
        ih = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
        inter = iw * ih
        if method == "min":
            denom = np.minimum(area[i], area[rest])
        else:
            denom = area[i] + area[rest] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            overlap = np.where(denom > 0, inter / np.where(denom > 0, denom, 1.0), 0.0)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, threshold: float, method: str = "union"
) -> np.ndarray:
    """NMS done independently within each group (image or class); indices kept, by score.

    Same contract as ``torchvision.ops.batched_nms`` (which uses IoU): boxes of different groups
    never suppress each other.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    groups = np.asarray(groups).reshape(-1)
    if not (boxes.shape[0] == scores.shape[0] == groups.shape[0]):
        raise ValueError(f"boxes, scores and groups differ in length: {boxes.shape[0]}, {scores.shape[0]}, "
                         f"{groups.shape[0]}")  # fmt: skip
    if boxes.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    kept = []
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        kept.append(idx[nms(boxes[idx], scores[idx], threshold, method)])
    keep = np.concatenate(kept)
    return keep[np.argsort(-scores[keep], kind="stable")]


# ---------------------------------------------------------------------------------------------
# the cascade
# ---------------------------------------------------------------------------------------------


def _imresample(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return interpolate(img, size=size, mode="area")


def _generate_boxes(reg: torch.Tensor, probs: torch.Tensor, scale: float, thresh: float) -> np.ndarray:
    """P-Net map -> candidate boxes ``(N, 9)``: x0, y0, x1, y1, score, 4 regression offsets."""
    stride, cell = 2, 12
    reg_np = reg[0].numpy()  # (4, h, w)
    prob_np = probs[0, 1].numpy()  # (h, w)
    ys, xs = np.nonzero(prob_np >= thresh)
    if ys.size == 0:
        return np.zeros((0, 9), dtype=np.float32)
    q1x = np.floor((stride * xs + 1) / scale)
    q1y = np.floor((stride * ys + 1) / scale)
    q2x = np.floor((stride * xs + cell) / scale)
    q2y = np.floor((stride * ys + cell) / scale)
    out = np.stack([q1x, q1y, q2x, q2y, prob_np[ys, xs], *(reg_np[k, ys, xs] for k in range(4))], axis=1)
    return out.astype(np.float32)


def _rerec(b: np.ndarray) -> np.ndarray:
    """Make boxes square around their centres (side = longer side)."""
    b = b.copy()
    h = b[:, 3] - b[:, 1]
    w = b[:, 2] - b[:, 0]
    side = np.maximum(w, h)
    b[:, 0] = b[:, 0] + w * 0.5 - side * 0.5
    b[:, 1] = b[:, 1] + h * 0.5 - side * 0.5
    b[:, 2] = b[:, 0] + side
    b[:, 3] = b[:, 1] + side
    return b


def _bbreg(b: np.ndarray, reg: np.ndarray) -> np.ndarray:
    b = b.copy()
    w = b[:, 2] - b[:, 0] + 1
    h = b[:, 3] - b[:, 1] + 1
    b[:, 0] += reg[:, 0] * w
    b[:, 1] += reg[:, 1] * h
    b[:, 2] += reg[:, 2] * w
    b[:, 3] += reg[:, 3] * h
    return b


def _crops(img: torch.Tensor, boxes: np.ndarray, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """Crops of the (clipped) boxes resized to ``size``; also the indices of the usable boxes."""
    _, _, h, w = img.shape
    bi = np.trunc(boxes[:, :4]).astype(np.int64)
    x = np.maximum(bi[:, 0], 1)
    y = np.maximum(bi[:, 1], 1)
    ex = np.minimum(bi[:, 2], w)
    ey = np.minimum(bi[:, 3], h)
    crops, ok = [], []
    for k in range(len(bi)):
        if ey[k] > y[k] - 1 and ex[k] > x[k] - 1:
            crops.append(_imresample(img[:, :, y[k] - 1 : ey[k], x[k] - 1 : ex[k]], (size, size)))
            ok.append(k)
    if not crops:
        return torch.zeros((0, 3, size, size)), np.zeros(0, dtype=np.int64)
    return (torch.cat(crops, dim=0) - 127.5) * 0.0078125, np.asarray(ok, dtype=np.int64)


class MTCNN:
    """The three-stage MTCNN cascade on one RGB image.

    Args:
        min_face_size: smallest face side searched for (pixels).
        thresholds: score thresholds of the P, R and O stages.
        factor: scale step of the image pyramid.
        device: torch device.
        weights_dir: folder with ``pnet.pt``, ``rnet.pt``, ``onet.pt`` (default: facenet-pytorch's).
        num_threads: torch intra-op threads while detecting (restored afterwards); None leaves torch's
            setting. The nets are small: on a loaded machine 1 thread is often faster than several.
    """

    def __init__(
        self,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        device: str = "cpu",
        weights_dir: str | Path | None = None,
        num_threads: int | None = 1,
    ) -> None:
        if min_face_size < 12:
            raise MtcnnError(f"min_face_size must be >= 12 pixels (P-Net's cell), got {min_face_size}")
        if not 0 < factor < 1:
            raise MtcnnError(f"pyramid factor must be in (0, 1), got {factor}")
        self.min_face_size = int(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self.device = torch.device(device)
        self.num_threads = None if num_threads is None else max(1, int(num_threads))
        wdir = Path(weights_dir) if weights_dir is not None else default_weights_dir()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        for net, name in ((self.pnet, "pnet"), (self.rnet, "rnet"), (self.onet, "onet")):
            path = wdir / f"{name}.pt"
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                net.load_state_dict(state)
            except (OSError, RuntimeError) as err:
                raise MtcnnError(f"could not load MTCNN weights {path}: {err}") from None
            net.to(self.device).eval()

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Faces in one RGB uint8 image: ``(boxes (N,4), scores (N,), landmarks (N,5,2))``, best first."""
        if self.num_threads is None:
            return self._detect(rgb)
        before = torch.get_num_threads()
        torch.set_num_threads(self.num_threads)
        try:
            return self._detect(rgb)
        finally:
            torch.set_num_threads(before)

    @torch.inference_mode()
    def _detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise MtcnnError(f"MTCNN needs an RGB image (H, W, 3), got shape {rgb.shape}")
        empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
        h, w = rgb.shape[:2]
        img = torch.as_tensor(np.ascontiguousarray(rgb), device=self.device).permute(2, 0, 1)[None].float()

        # stage 1: pyramid + P-Net
        m = 12.0 / self.min_face_size
        minl = min(h, w) * m
        scales = []
        scale = m
        while minl >= 12:
            scales.append(scale)
            scale *= self.factor
            minl *= self.factor
        cands = []
        for scale in scales:
            im = _imresample(img, (int(h * scale + 1), int(w * scale + 1)))
            reg, probs = self.pnet((im - 127.5) * 0.0078125)
            b = _generate_boxes(reg.cpu(), probs.cpu(), scale, self.thresholds[0])
            if len(b):
                cands.append(b[nms(b[:, :4], b[:, 4], 0.5)])
        if not cands:
            return empty
        boxes = np.concatenate(cands)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        regw = boxes[:, 2] - boxes[:, 0]
        regh = boxes[:, 3] - boxes[:, 1]
        boxes = np.stack(
            [
                boxes[:, 0] + boxes[:, 5] * regw,
                boxes[:, 1] + boxes[:, 6] * regh,
                boxes[:, 2] + boxes[:, 7] * regw,
                boxes[:, 3] + boxes[:, 8] * regh,
                boxes[:, 4],
            ],
            axis=1,
        )
        boxes = _rerec(boxes)

        # stage 2: R-Net
        data, ok = _crops(img, boxes, 24)
        if not len(ok):
            return empty
        boxes = boxes[ok]
        reg, probs = self.rnet(data)
        score = probs[:, 1].cpu().numpy()
        keep = score > self.thresholds[1]
        boxes = np.concatenate([boxes[keep, :4], score[keep, None]], axis=1)
        reg = reg.cpu().numpy()[keep]
        if not len(boxes):
            return empty
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
        boxes = _rerec(_bbreg(boxes[pick], reg[pick]))

        # stage 3: O-Net
        data, ok = _crops(img, boxes, 48)
        if not len(ok):
            return empty
        boxes = boxes[ok]
        reg, pts, probs = self.onet(data)
        score = probs[:, 1].cpu().numpy()
        keep = score > self.thresholds[2]
        boxes = np.concatenate([boxes[keep, :4], score[keep, None]], axis=1)
        reg = reg.cpu().numpy()[keep]
        pts = pts.cpu().numpy()[keep]
        if not len(boxes):
            return empty
        wi = boxes[:, 2] - boxes[:, 0] + 1
        hi = boxes[:, 3] - boxes[:, 1] + 1
        px = wi[:, None] * pts[:, :5] + boxes[:, 0:1] - 1
        py = hi[:, None] * pts[:, 5:10] + boxes[:, 1:2] - 1
        landmarks = np.stack([px, py], axis=2)
        boxes = _bbreg(boxes, reg)
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7, method="min")
        boxes, landmarks = boxes[pick], landmarks[pick]
        return boxes[:, :4].astype(np.float32), boxes[:, 4].astype(np.float32), landmarks.astype(np.float32)
