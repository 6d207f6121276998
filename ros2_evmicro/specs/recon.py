"""Parameters of the reconstruction node: event frames -> grayscale face with the conditional VAE."""

from ros2_evmicro.core.params import Param, ParamSpec

SPEC = ParamSpec(
    "recon",
    (
        Param("checkpoint", "cvae_davis", "cVAE checkpoint (path, or a name in the package's models/)",
              dynamic=False),
        Param("device", "auto", "inference device: auto, cpu, cuda, cuda:N", dynamic=False),
        Param("half", False, "half precision on GPU", dynamic=False),
        Param("sensor", "davis", "event camera of the frames (checked against the card)",
              choices=("davis", "evk4"), dynamic=False),
        Param("window_ms", 33.0, "slicer window (checked against the card)", "ms", (1.0, 1000.0), dynamic=False),
        Param("normalization", "none", "frame normalisation applied by the slicer (checked against the card)",
              choices=("none", "max", "log1p", "clip"), dynamic=False),
        Param("sample", False, "draw z ~ N(0, I) (seeded) instead of the deterministic z = 0"),
        Param("seed", 0, "seed of the latent draws when sample is on", "", (0, 2**31 - 1)),
        Param("every_n", 1, "reconstruct every n-th frame (bounds CPU)", "frames", (1, 1000)),
        Param("queue_depth", 4, "frames kept when inference falls behind (newest wins; drops counted): 4 windows "
              "(132 ms) ride out a scheduling hiccup, a model that stays behind still drops", "frames", (1, 100),
              dynamic=False),
        Param("worker_nice", 10, "nice value of the inference thread (Linux; inference_thread on): higher = "
              "lower priority; the reconstruction is for display: under load it yields the cores to the AU path", "",
              (0, 19), dynamic=False),
        Param("inference_thread", True, "run the cVAE on a thread of its own, so that in a shared process it "
              "never holds up the AU SNN or the slicer (a SingleThreadedExecutor runs ready callbacks in no fixed "
              "node order); off for a lockstep replay (bag_player rate 0), which the single executor thread "
              "paces", dynamic=False),
        Param("threads", 1, "torch intra-op threads (1 keeps inference from fighting the drivers for the cores; "
              "torch threads are per process)", "", (1, 64), dynamic=False),
        Param("warm_up", True, "run the model once at start", dynamic=False),
    ),
    "Consumes <cam>/frames (32FC2), publishes evmicro/face_recon (mono8, header copied from the input frame).",
)
