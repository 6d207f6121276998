"""Parameters of the AU node: event frames -> 21 Action Unit scores with the PLIF SNN."""

from ros2_evmicro.core.params import Param, ParamSpec

SPEC = ParamSpec(
    "au",
    (
        Param("checkpoint", "au_snn_davis_21subj", "SNN checkpoint (path, or a name in the package's models/)",
              dynamic=False),
        Param("device", "auto", "inference device: auto (CUDA when available), cpu, cuda, cuda:N", dynamic=False),
        Param("half", False, "half precision on GPU (ignored on CPU)", dynamic=False),
        Param("mode", "stream", "stream: one score per frame; clip: one score per protocol segment (paper)",
              choices=("stream", "clip"), dynamic=False),
        Param("reset_policy", "sliding", "stream mode: sliding window of window_frames, or reset at each protocol "
              "segment start", choices=("sliding", "segment"), dynamic=False),
        Param("window_frames", 16, "sliding window length (16 = the clip length the shipped SNNs learn from, "
              "0.53 s)", "frames", (1, 1000), dynamic=False),
        Param("hop_frames", 8, "sliding window restart hop (1 = exact sliding window, more lanes)", "frames",
              (1, 1000), dynamic=False),
        Param("sensor", "davis", "event camera the frames come from (checked against the checkpoint card)",
              choices=("davis", "evk4", "webcam"), dynamic=False),
        Param("window_ms", 33.0, "slicer window (checked against the card)", "ms", (1.0, 1000.0), dynamic=False),
        Param("normalization", "none", "frame normalisation applied by the slicer (checked against the card)",
              choices=("none", "max", "log1p", "clip"), dynamic=False),
        Param("queue_depth", 4, "frames kept when inference falls behind (newest wins; drops counted): 4 windows "
              "(132 ms) ride out a scheduling hiccup, a model that stays behind still drops", "frames", (1, 100),
              dynamic=False),
        Param("clip_phase", "perform", "clip mode: the protocol phase whose frames form a clip", dynamic=False),
        Param("worker_nice", 0, "nice value of the inference thread (Linux; inference_thread on): higher = "
              "lower priority; the AU SNN is the latency-critical path", "",
              (0, 19), dynamic=False),
        Param("inference_thread", False, "run the SNN on a thread of its own instead of in the frame callback. Off "
              "by default: the AU is the latency-critical output, and on the 2-core reference machine the SNN in "
              "the callback (with the cVAE on its thread) gave the lowest event->AU latency (docs/benchmarks.md); "
              "on when the executor must keep taking other messages while the SNN runs", dynamic=False),
        Param("threads", 1, "torch intra-op threads (1 keeps inference from fighting the drivers for the cores; "
              "torch threads are per process)", "", (1, 64), dynamic=False),
        Param("warm_up", True, "run the model once at start so the first frame is not slow", dynamic=False),
    ),
    "Consumes <cam>/frames (32FC2), publishes evmicro/au (JointState, the 21 AU codes of Table 1, score = mean "
    "firing rate of the class's voting group).",
)
