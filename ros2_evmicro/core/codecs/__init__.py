"""Event-file codecs: Prophesee EVT 3.0 / EVT 2.0 (RAW files), EventPacket bags, libcaer, AEDAT4.

Every decoder returns arrays of :data:`ros2_evmicro.core.events.EVENT_DTYPE` with time unwrapped to int64
microseconds, and trigger edges as :data:`TRIGGER_DTYPE`. Errors are :class:`CodecError`.
Heavy optional dependencies (rosbags, dv-processing) are imported only when a bag or AEDAT4 file is used.
"""

from ros2_evmicro.core.codecs._common import TRIGGER_DTYPE, CodecError, empty_triggers
from ros2_evmicro.core.codecs.aedat4 import IMU_DTYPE, Aedat4Data, Aedat4Frame, Aedat4Reader, write_aedat4
from ros2_evmicro.core.codecs.eventpacket import (
    BagEventPacket,
    EventPacketInfo,
    read_eventpacket_bag,
    write_eventpacket_bag,
)
from ros2_evmicro.core.codecs.evt2 import Evt2Decoder, decode_evt2, decode_evt2_with_triggers, encode_evt2
from ros2_evmicro.core.codecs.evt3 import Evt3Decoder, decode_evt3, decode_evt3_with_triggers, encode_evt3
from ros2_evmicro.core.codecs.libcaer import LibcaerDecoder, decode_libcaer, encode_libcaer
from ros2_evmicro.core.codecs.raw import (
    RawHeader,
    RawReader,
    RawTruncatedWarning,
    parse_raw_header,
    read_raw,
    write_raw,
)

__all__ = [
    "IMU_DTYPE",
    "TRIGGER_DTYPE",
    "Aedat4Data",
    "Aedat4Frame",
    "Aedat4Reader",
    "BagEventPacket",
    "CodecError",
    "EventPacketInfo",
    "Evt2Decoder",
    "Evt3Decoder",
    "LibcaerDecoder",
    "RawHeader",
    "RawReader",
    "RawTruncatedWarning",
    "decode_evt2",
    "decode_evt2_with_triggers",
    "decode_evt3",
    "decode_evt3_with_triggers",
    "decode_libcaer",
    "empty_triggers",
    "encode_evt2",
    "encode_evt3",
    "encode_libcaer",
    "parse_raw_header",
    "read_eventpacket_bag",
    "read_raw",
    "write_aedat4",
    "write_eventpacket_bag",
    "write_raw",
]
