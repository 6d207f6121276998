"""Parameters of the driver monitor (drowsiness and distraction from the AU stream).

Every threshold is explained, with the commonly used value it follows, in ``docs/driver_monitor.md``.
The same declaration configures the pure :class:`ros2_evmicro.core.monitor.DriverMonitor` and the node.
"""

from ros2_evmicro.core.params import Param, ParamSpec

SPEC = ParamSpec(
    "driver_monitor",
    (
        # -- when is an AU "active" ------------------------------------------------------------------------
        Param("on_threshold", 0.5, "an AU becomes active when its score reaches this", "", (0.0, 1.0)),
        Param("off_threshold", 0.35, "an active AU ends when its score falls below this (hysteresis)", "",
              (0.0, 1.0)),
        Param("min_active_frames", 2, "consecutive active samples before an activation counts (debounce)",
              "samples", (1, 100)),
        Param("onset_mode", "threshold", "onset rule: score over on_threshold, or also the arg-max AU by "
              "argmax_margin over the runner-up", choices=("threshold", "argmax")),
        Param("argmax_margin", 0.1, "lead over the second-highest score needed for an onset in argmax mode", "",
              (0.0, 1.0)),
        # -- windows -----------------------------------------------------------------------------------------
        Param("window_s", 60.0, "sliding window of the rates and fractions (blink rate, PERCLOS, ...)", "s",
              (1.0, 3600.0)),
        Param("warmup_s", 30.0, "rates and fractions divide by at least this much covered time", "s",
              (0.0, 3600.0)),
        Param("max_gap_ms", 200.0, "a sample stands for at most this much time (longer gaps: missing input)",
              "ms", (1.0, 60000.0)),
        # -- drowsiness --------------------------------------------------------------------------------------
        Param("closure_aus", [41, 43, 45], "AUs of the upper lid closing, summed (at most 1) into the eye-closure "
              "channel whose activations are the blinks and closures ([45]: AU45 alone)", "AU number"),
        Param("closure_gap_ms", 400.0, "eye-closure activations this close count as one closure (the lid's "
              "closing and reopening seen apart, with the shut lid silent between them)", "ms", (0.0, 5000.0)),
        Param("closure_spread_ms", 200.0, "how much the AU stream lengthens an eye closure (its sliding window; "
              "measured per model, docs/driver_monitor.md): subtracted from every closure's duration", "ms",
              (0.0, 5000.0)),
        Param("long_blink_ms", 400.0, "a blink (eye-closure activation) longer than this is a long blink", "ms",
              (50.0, 5000.0)),
        Param("min_blinks", 3, "blinks in the window needed before the mean blink duration is scored", "",
              (1, 1000)),
        Param("blink_ms_warn", 350.0, "mean blink duration in the window for WARN", "ms", (10.0, 10000.0)),
        Param("blink_ms_error", 500.0, "mean blink duration in the window for ERROR", "ms", (10.0, 10000.0)),
        Param("long_blinks_warn_per_min", 3.0, "rate of long blinks for WARN", "1/min", (0.0, 1000.0)),
        Param("long_blinks_error_per_min", 6.0, "rate of long blinks for ERROR", "1/min", (0.0, 1000.0)),
        Param("perclos_warn", 0.15, "fraction of the window with the eye-closure channel active for WARN", "",
              (0.0, 1.0)),
        Param("perclos_error", 0.3, "fraction of the window with the eyes closed for ERROR", "", (0.0, 1.0)),
        Param("eyes_closed_warn_s", 1.0, "one continuous eye closure this long: WARN", "s",
              (0.05, 600.0)),
        Param("eyes_closed_error_s", 2.0, "one continuous eye closure this long: ERROR (microsleep)",
              "s", (0.05, 600.0)),
        Param("droop_warn", 0.2, "fraction of the window with lid droop (AU41) for WARN", "", (0.0, 1.0)),
        Param("droop_error", 0.4, "fraction of the window with lid droop (AU41) for ERROR", "", (0.0, 1.0)),
        Param("blink_rate_high_per_min", 30.0, "blink rate counted as supporting evidence of fatigue", "1/min",
              (0.0, 1000.0)),
        Param("support_aus", [2, 15, 17, 9], "AUs cited as drowsiness signs, used as supporting evidence",
              "AU number"),
        Param("support_fraction", 0.2, "fraction of the window with any support AU active that counts as "
              "supporting evidence", "", (0.0, 1.0)),
        Param("support_weight", 0.3, "score added by each piece of supporting evidence (2 pieces stay "
              "below WARN alone)", "", (0.0, 1.0)),
        # -- distraction -------------------------------------------------------------------------------------
        Param("away_warn_s", 2.0, "head turned (AU51-54) or gaze away (AU61-64) this long: WARN", "s",
              (0.1, 600.0)),
        Param("away_error_s", 4.0, "head or gaze away this long: ERROR", "s", (0.1, 600.0)),
        Param("away_gap_ms", 500.0, "an away episode survives dips of its AUs shorter than this", "ms",
              (0.0, 10000.0)),
        Param("away_total_warn_s", 12.0, "total head/gaze-away time in the window for WARN", "s",
              (0.1, 3600.0)),
        Param("away_total_error_s", 24.0, "total head/gaze-away time in the window for ERROR", "s",
              (0.1, 3600.0)),
        # -- levels ------------------------------------------------------------------------------------------
        Param("level_hysteresis", 0.2, "a level is left only when the score falls this far below its entry "
              "(entry: 1 = WARN, 2 = ERROR)", "", (0.0, 0.9)),
        Param("level_hold_s", 3.0, "minimum time a level is held before it may fall", "s", (0.0, 600.0)),
        # -- node --------------------------------------------------------------------------------------------
        Param("report_period_s", 1.0, "period of the /diagnostics report", "s", (0.05, 3600.0), dynamic=False),
        Param("stale_s", 3.0, "no AU message this long: statuses go STALE", "s", (0.1, 3600.0)),
        Param("publish_blinks", False, "also publish every ordinary blink on evmicro/alerts"),
        Param("max_events", 10000, "events kept in memory for the summary (oldest dropped)", "", (10, 10**7)),
    ),
    "Drowsiness (blinks, eye closure, lid droop, supporting AUs) and distraction (head turns, gaze away) from "
    "the AU stream; OK/WARN/ERROR on /diagnostics as evmicro/drowsiness and evmicro/distraction, events on "
    "evmicro/alerts.",
)
