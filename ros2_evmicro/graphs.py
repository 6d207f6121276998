"""The three uses of the package, described once: which nodes, with which parameters and remappings.

``launch/*.launch.py`` build their actions from these descriptions (:mod:`ros2_evmicro.launch_support`),
and ``evmicro run <graph>`` runs the same nodes in one process (:mod:`ros2_evmicro.ros.runner`). This module
imports neither rclpy nor launch, so the description -> node list step is tested everywhere.

Topic layout: each camera's nodes live in the camera's namespace (``davis``, ``evk4``, ``webcam``), so a
driver publishing ``events`` appears as ``/davis/events`` and the slicer beside it reads it unremapped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["GRAPHS", "Graph", "GraphArg", "GraphError", "NodeDecl", "config_dir", "get_graph"]

PACKAGE = "ros2_evmicro"


class GraphError(ValueError):
    """A graph name or graph argument is unknown or invalid."""


@dataclass(frozen=True)
class NodeDecl:
    """One node of a graph.

    ``kind`` names the node type: its console script is ``<kind>_node``, its class lives in
    ``ros2_evmicro.nodes.<kind>`` and its parameters are declared in ``ros2_evmicro.specs.<kind>``.
    ``param_files`` are names of files in ``config/`` (ROS params format), applied before ``parameters``.
    """

    kind: str
    name: str
    namespace: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    param_files: tuple[str, ...] = ()
    required: bool = False  # the graph ends when this node ends (launch: on_exit Shutdown)
    process: str = ""  # evmicro run: '' = in the main process; a name = in a child process of that name

    @property
    def executable(self) -> str:
        return f"{self.kind}_node"

    @property
    def module(self) -> str:
        return f"{PACKAGE}.nodes.{self.kind}"

    @property
    def fqn(self) -> str:
        ns = self.namespace.strip("/")
        return f"/{ns}/{self.name}" if ns else f"/{self.name}"


@dataclass(frozen=True)
class GraphArg:
    name: str
    default: str
    description: str
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Graph:
    name: str
    description: str
    args: tuple[GraphArg, ...]
    build: Callable[[dict[str, str]], list[NodeDecl]]
    launch_file: str

    def resolve_args(self, given: Mapping[str, Any] | None = None) -> dict[str, str]:
        out = {a.name: a.default for a in self.args}
        known = {a.name: a for a in self.args}
        for k, v in (given or {}).items():
            if k not in known:
                raise GraphError(f"graph {self.name} has no argument {k!r}; known: {', '.join(known)}")
            v = str(v).lower() if isinstance(v, bool) else str(v)
            if known[k].choices and v not in known[k].choices:
                raise GraphError(f"graph {self.name}: {k}={v!r} is not one of {list(known[k].choices)}")
            out[k] = v
        return out

    def nodes(self, args: Mapping[str, Any] | None = None) -> list[NodeDecl]:
        decls = self.build(self.resolve_args(args))
        seen = set()
        for d in decls:
            if d.fqn in seen:
                raise GraphError(f"graph {self.name}: node {d.fqn} appears twice")
            seen.add(d.fqn)
        return decls


def config_dir() -> Path:
    """The package's ``config/`` folder (source tree, or the colcon install's share folder)."""
    here = Path(__file__).resolve().parent.parent / "config"
    if here.is_dir():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE)) / "config"
    except Exception as err:  # noqa: BLE001
        raise GraphError(f"cannot find the config folder of {PACKAGE}: {err}") from None


def _flag(v: str) -> bool:
    return str(v).lower() in ("1", "true", "yes", "on")


def _floatarg(args: dict[str, str], name: str) -> float:
    try:
        return float(args[name])
    except ValueError:
        raise GraphError(f"argument {name} must be a number, got {args[name]!r}") from None


# -- the pieces ----------------------------------------------------------------------------------------------

def _camera_drivers(args: dict[str, str], cameras: list[str]) -> list[NodeDecl]:
    """Driver nodes for the requested cameras; ``source`` sim uses one sim_rig node for all of them."""
    source = args["source"]
    out: list[NodeDecl] = []
    if source == "sim":
        out.append(NodeDecl(
            "sim_rig", "sim_rig", process="sensors",
            parameters={
                "cameras": cameras,
                # in a recording the simulated subject performs what the protocol player asks for
                "scenario": args.get("scenario", "follow"),
                "publish_markers": args.get("scenario", "follow") != "follow",
                "subject_seed": int(args.get("subject", "1").lstrip("S") or 1),
                "lux": _floatarg(args, "lux") if "lux" in args else 600.0,
                "playback_rate": _floatarg(args, "rate") if "rate" in args else 1.0,
            },
            param_files=("sim_rig.yaml",),
        ))
        return out
    for cam in cameras:
        kind = {"davis": "davis", "evk4": "evk4", "webcam": "webcam"}[cam]
        params: dict[str, Any] = {}
        if source == "file":
            key = {"davis": "davis_file", "evk4": "evk4_file", "webcam": "webcam_file"}[cam]
            path = args.get(key, "")
            if not path:
                raise GraphError(f"source:=file needs {key}:=PATH for camera {cam}")
            # a file must not start before the graph's subscribers are there, or its first packets are lost
            params = {"source": "file", "path": path, "playback_rate": _floatarg(args, "rate") if "rate" in args
                      else 1.0, "wait_for_subscribers_s": 20.0}
        else:
            params = {"source": "camera" if cam != "webcam" else "device"}
        out.append(NodeDecl(kind, "driver", namespace=cam, parameters=params, param_files=(f"{kind}.yaml",),
                            process="sensors"))
    return out


def _calibration(args: dict[str, str]) -> str:
    """The rig calibration file: the graph argument, or the simulated rig's own geometry ('sim')."""
    if args.get("calibration"):
        return args["calibration"]
    return "sim" if args.get("source") == "sim" or args.get("camera") == "sim" else ""


def _perception(cam: str, face_from: str, calibration: str = "", max_backlog_ms: float = 0.0) -> list[NodeDecl]:
    """Face ROI and slicer of one event camera (``max_backlog_ms``: the slicer's live load shedding)."""
    out = []
    if face_from == cam:  # APS frames of the same camera (DAVIS346)
        out.append(NodeDecl("face_detector", "face_detector", namespace=cam, param_files=("face_detector.yaml",)))
        slicer_remaps: tuple[tuple[str, str], ...] = ()
    elif face_from in ("webcam", "davis"):
        if not calibration:
            raise GraphError(f"finding the face on {face_from} for {cam} needs calibration:=FILE with the "
                             f"{face_from}->{cam} homography (make it with `evmicro calib homography`)")
        out.append(NodeDecl("face_detector", "face_detector", namespace=face_from,
                            parameters={"map_to": cam, "calibration_file": calibration},
                            param_files=("face_detector.yaml",)))
        slicer_remaps = (("face_roi", f"/{face_from}/face_roi_{cam}"),)
    else:  # no detector: the slicer uses its fixed/central box
        slicer_remaps = ()
    out.append(NodeDecl("slicer", "slicer", namespace=cam,
                        parameters={"roi_mode": "topic" if face_from != "none" else "center",
                                    "max_backlog_ms": max_backlog_ms},
                        remappings=slicer_remaps, param_files=("slicer.yaml",)))
    return out


AU_CHECKPOINTS = {"davis": "au_snn_davis_21subj"}
"""The shipped AU SNN per event camera (models/): for the DAVIS346 the 21-subject model
(docs/results_snn_gpu.md); others ``au_snn_<camera>``."""


def _inference(cam: str, args: dict[str, str]) -> list[NodeDecl]:
    frames = f"/{cam}/frames"
    au_ckpt = args.get("au_checkpoint") or AU_CHECKPOINTS.get(cam, f"au_snn_{cam}")
    return [
        NodeDecl("au", "au", parameters={"device": args.get("device", "auto"), "sensor": cam,
                                         "checkpoint": au_ckpt},
                 remappings=(("frames", frames),), param_files=("au.yaml",)),
        NodeDecl("recon", "recon", parameters={"device": args.get("device", "auto"), "sensor": cam,
                                               "checkpoint": args.get("recon_checkpoint") or f"cvae_{cam}"},
                 remappings=(("frames", frames),), param_files=("recon.yaml",)),
    ]


# -- the graphs ----------------------------------------------------------------------------------------------

DEMO_MAX_BACKLOG_MS = 50.0
"""The live demo's load shedding for a camera (``max_backlog_ms:=auto``): a packet may wait this long for the
slicer before the slicer counts the machine as overloaded (ros2_evmicro.core.shedding)."""


def _demo(args: dict[str, str]) -> list[NodeDecl]:
    camera = args["camera"]
    cam = "davis" if camera in ("sim", "davis") else "evk4"
    a = dict(args)
    if camera == "sim":
        a["source"] = "sim"
    face_from = "davis" if cam == "davis" else ("webcam" if _flag(args["webcam"]) else "none")
    cams = [cam] + (["webcam"] if face_from == "webcam" else [])
    nodes = _camera_drivers(a, cams)
    shed = args["max_backlog_ms"]
    # 'auto': a camera (live or a file played in real time) does not wait for the pipeline, the simulated rig
    # slows down with the machine (its scene time falls behind real time) and needs no shedding
    shed_ms = (0.0 if camera == "sim" else DEMO_MAX_BACKLOG_MS) if shed == "auto" else _floatarg(args, "max_backlog_ms")
    nodes += _perception(cam, face_from, _calibration(a), shed_ms)
    nodes += _inference(cam, args)
    nodes.append(NodeDecl("driver_monitor", "driver_monitor", param_files=("driver_monitor.yaml",)))
    nodes.append(NodeDecl("dashboard", "dashboard",
                          parameters={"camera": cam, "out_dir": args["out_dir"],
                                      "duration_s": _floatarg(args, "duration_s")},
                          param_files=("dashboard.yaml",), required=True))
    return nodes


def _record(args: dict[str, str]) -> list[NodeDecl]:
    cams = [c for c in args["cameras"].split(",") if c]
    bad = [c for c in cams if c not in ("davis", "evk4", "webcam")]
    if bad or not cams:
        raise GraphError(f"cameras must be a comma list of davis, evk4, webcam; got {args['cameras']!r}")
    nodes = _camera_drivers(args, cams)
    face_cam = "davis" if "davis" in cams else ("webcam" if "webcam" in cams else "")
    if face_cam and _flag(args["face_roi"]):
        cal = _calibration(args)
        # the EVK4 box is mapped live when the rig is calibrated; otherwise the dataset builder maps it offline
        params = {"map_to": "evk4", "calibration_file": cal} if ("evk4" in cams and cal) else {}
        nodes.append(NodeDecl("face_detector", "face_detector", namespace=face_cam, parameters=params,
                              param_files=("face_detector.yaml",)))
    nodes.append(NodeDecl("protocol_player", "protocol_player",
                          parameters={"protocol": args["protocol"], "run": args["run"],
                                      "subject": args["subject"], "session": args["session"],
                                      "headless": _flag(args["headless"])},
                          param_files=("protocol_player.yaml",)))
    nodes.append(NodeDecl("recorder", "recorder",
                          parameters={"out_dir": args["out_dir"], "subject": args["subject"],
                                      "session": args["session"], "cameras": cams,
                                      "split": args["split"], "lux": _floatarg(args, "lux")},
                          param_files=("recorder.yaml",)))
    return nodes


def _replay(args: dict[str, str]) -> list[NodeDecl]:
    cam = args["camera"]
    if not args["bag"]:
        raise GraphError("replay needs bag:=PATH (a session folder or a rosbag2 folder)")
    nodes = [NodeDecl("bag_player", "bag_player",
                      parameters={"bag": args["bag"], "rate": _floatarg(args, "rate"), "loop": _flag(args["loop"]),
                                  "publish_clock": True,
                                  # start once the pipeline (and the recorder) listens, so nothing is lost
                                  "wait_for_topics": [f"/{cam}/events"] + ([f"/{cam}/frames", "/evmicro/au"]
                                                                          if args["out_dir"] else [])})]
    nodes.append(NodeDecl("slicer", "slicer", namespace=cam,
                          parameters={"roi_mode": "topic", "use_sim_time": True}, param_files=("slicer.yaml",)))
    # rate 0 replays in lockstep on one executor thread (lossless): the models must run on that thread too
    lockstep = {"inference_thread": False} if _floatarg(args, "rate") == 0 else {}
    for d in _inference(cam, args):
        nodes.append(NodeDecl(d.kind, d.name, d.namespace, {**d.parameters, "use_sim_time": True, **lockstep},
                              d.remappings, d.param_files))
    if args["out_dir"]:
        nodes.append(NodeDecl("recorder", "recorder",
                              parameters={"out_dir": args["out_dir"], "subject": "replay", "session": "replay",
                                          "topics": [f"/{cam}/frames", "/evmicro/au", "/evmicro/face_recon",
                                                     "/protocol/marker"],
                                          "autostart": True, "use_sim_time": True},
                              param_files=("recorder.yaml",)))
    return nodes


GRAPHS: dict[str, Graph] = {
    "demo": Graph(
        "demo",
        "Live driver monitoring: camera -> face ROI -> slicer -> AU SNN + cVAE -> driver monitor -> dashboard",
        (
            GraphArg("camera", "sim", "event camera: the simulated rig, a DAVIS346 or an EVK4",
                     ("sim", "davis", "evk4")),
            GraphArg("source", "camera", "for davis/evk4: live camera or recorded file", ("camera", "file")),
            GraphArg("davis_file", "", "AEDAT4 file when source:=file and camera:=davis"),
            GraphArg("evk4_file", "", "RAW file when source:=file and camera:=evk4"),
            GraphArg("webcam", "false", "with camera:=evk4, find the face on a webcam and map it to the EVK4",
                     ("true", "false")),
            GraphArg("calibration", "", "rig calibration YAML (webcam->evk4 homography; `evmicro calib`)"),
            GraphArg("scenario", "demo", "sim scenario (scripted AUs and a drowsy segment)"),
            GraphArg("rate", "1.0", "playback rate of sim and file sources (1 = real time)"),
            GraphArg("device", "auto", "inference device: auto, cpu, cuda, cuda:N"),
            GraphArg("au_checkpoint", "", "AU SNN checkpoint (default: models/au_snn_davis_21subj for davis, "
                     "else models/au_snn_<camera>)"),
            GraphArg("recon_checkpoint", "", "cVAE checkpoint (default: models/cvae_<camera>)"),
            GraphArg("max_backlog_ms", "auto", "live load shedding: when the machine does not keep up with the "
                     "camera, the slicer drops whole windows so that the AUs stay current (ms of backlog; 0 = off; "
                     "auto = 50 for davis/evk4, off for the simulated rig, which slows down with the machine)"),
            GraphArg("out_dir", "evmicro_demo", "folder for the dashboard video and the summary"),
            GraphArg("duration_s", "0", "stop after this many seconds (0 = when the input ends, or never)"),
        ),
        _demo,
        "live_demo.launch.py",
    ),
    "record": Graph(
        "record",
        "Recording session: camera drivers, the protocol player and the recorder",
        (
            GraphArg("subject", "S01", "subject id"),
            GraphArg("session", "1", "session id"),
            GraphArg("cameras", "davis,evk4,webcam", "comma list of cameras"),
            GraphArg("source", "sim", "drivers' source: sim rig, live cameras, or files", ("sim", "camera", "file")),
            GraphArg("davis_file", "", "AEDAT4 file for source:=file"),
            GraphArg("evk4_file", "", "RAW file for source:=file"),
            GraphArg("webcam_file", "", "video file for source:=file"),
            GraphArg("protocol", "protocol.yaml", "protocol definition (file in config/ or a path)"),
            GraphArg("run", "main", "protocol run: demo (short) or main (about 7 minutes)", ("demo", "main")),
            GraphArg("headless", "false", "protocol player without a window", ("true", "false")),
            GraphArg("face_roi", "true", "run the face detector and record face ROIs", ("true", "false")),
            GraphArg("calibration", "", "rig calibration YAML; with it the face box is also mapped to the EVK4"),
            GraphArg("split", "session", "one bag per session or per AU segment", ("session", "segment")),
            GraphArg("lux", "600", "illuminance at the subject's face (written to session.yaml)"),
            GraphArg("out_dir", "sessions", "where session folders are written"),
            GraphArg("rate", "1.0", "playback rate of sim and file sources"),
        ),
        _record,
        "record_session.launch.py",
    ),
    "replay": Graph(
        "replay",
        "Bag replay: a session bag drives slicer, AU and reconstruction nodes on bag time; outputs recorded",
        (
            GraphArg("bag", "", "session folder or rosbag2 folder"),
            GraphArg("camera", "davis", "which event camera of the bag to process", ("davis", "evk4")),
            GraphArg("rate", "1.0", "replay rate (0 = as fast as possible)"),
            GraphArg("loop", "false", "loop the bag", ("true", "false")),
            GraphArg("device", "auto", "inference device"),
            GraphArg("au_checkpoint", "", "AU SNN checkpoint (default: models/au_snn_davis_21subj for davis, "
                     "else models/au_snn_<camera>)"),
            GraphArg("recon_checkpoint", "", "cVAE checkpoint (default: models/cvae_<camera>)"),
            GraphArg("out_dir", "", "record the outputs here (empty: do not record)"),
        ),
        _replay,
        "replay.launch.py",
    ),
}


def get_graph(name: str) -> Graph:
    try:
        return GRAPHS[name]
    except KeyError:
        raise GraphError(f"unknown graph {name!r}; known: {', '.join(GRAPHS)}") from None


def parse_graph_args(items: list[str]) -> dict[str, str]:
    """``['camera:=sim', 'rate:=2']`` (ros2 launch style) -> dict."""
    out = {}
    for it in items:
        if ":=" not in it:
            raise GraphError(f"graph arguments are written name:=value, got {it!r}")
        k, v = it.split(":=", 1)
        out[k.strip()] = v.strip()
    return out
