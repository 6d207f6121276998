"""Parameters of the bag player: a session bag (or a foreign EventPacket bag) republished on its timing."""

from ros2_evmicro.core.params import Param, ParamSpec

SPEC = ParamSpec(
    "bag_player",
    (
        Param("bag", "", "session folder or rosbag2 folder to play (required)", dynamic=False),
        Param("rate", 1.0, "playback rate (1 = the bag's timing, 2 = twice as fast; 0 = as fast as possible "
              "without losing messages: see lockstep)", "x", (0.0, 1000.0), dynamic=False),
        Param("loop", False, "start again at start_s after the end (never finishes)", dynamic=False),
        Param("start_s", 0.0, "skip this much bag time after the first message (the last camera_info before it "
              "is still published)", "s", (0.0, 1e9), dynamic=False),
        Param("end_s", 0.0, "stop at this bag-time offset from the first message (0 = the end)", "s", (0.0, 1e9),
              dynamic=False),
        Param("topics", [""], "bag topics to play (empty: all); foreign EventPacket topics by their bag name",
              dynamic=False),
        Param("camera", [""], "foreign EventPacket topics -> camera, as 'TOPIC=davis' or 'TOPIC=evk4' (default: by "
              "sensor size: 346x260 davis, 1280x720 evk4); published as /<camera>/events (PointCloud2)",
              dynamic=False),
        Param("publish_clock", False, "publish rosgraph_msgs/Clock on /clock (bag time) before every message and "
              "at clock_rate_hz, for nodes with use_sim_time", dynamic=False),
        Param("clock_rate_hz", 100.0, "rate of /clock between messages (rate > 0)", "Hz", (1.0, 10000.0),
              dynamic=False),
        Param("wait_for_subscribers_s", 5.0, "before playing, wait until every played topic has a subscriber (or "
              "1 s after the event topics got theirs), at most this long (0 = do not wait)", "s", (0.0, 3600.0),
              dynamic=False),
        Param("wait_for_topics", [""], "further topics (e.g. a recorder's /davis/frames) that must have a "
              "subscriber before playing (within wait_for_subscribers_s)", dynamic=False),
        Param("lockstep", True, "rate 0: publish from the executor, burst messages per executor cycle, so that "
              "nodes in the same process take each message before the next one (bag order kept across topics, "
              "nothing lost in shallow queues); false: a thread publishes as fast as reliable subscribers "
              "acknowledge", dynamic=False),
        Param("burst", 1, "rate 0 with lockstep: messages per executor cycle (1 keeps the bag order across "
              "topics)", "", (1, 100000), dynamic=False),
        Param("drain_s", 0.5, "after the last message keep running this long (wall time) before reporting "
              "finished, so downstream nodes publish their last outputs", "s", (0.0, 60.0), dynamic=False),
    ),
    "Publishes a recorded session (rosbag2, MCAP or sqlite3) on its original timing: raw CDR bytes for the "
    "standard types, foreign event_camera_msgs/EventPacket topics decoded into the contract's PointCloud2; "
    "camera_info latched; optional /clock for use_sim_time; finishes at the end unless loop.",
)
