"""The Sparkplug B payload (``org.eclipse.tahu.protobuf.Payload``), wire-compatible.

Built at import from a descriptor written here with the field numbers of the published
``sparkplug_b.proto`` (Eclipse Tahu), for the parts the node reads: the payload's
timestamp, metrics, seq and uuid, and each metric's name, alias, timestamp, datatype,
flags and scalar value. Other fields (data sets, templates, properties) are skipped as
unknown fields by protobuf; no generated code or ``protoc`` is needed.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "org.eclipse.tahu.protobuf"
# datatypes (Sparkplug B spec, "Data Types")
INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64 = range(1, 9)
FLOAT, DOUBLE, BOOLEAN, STRING, DATETIME, TEXT = 9, 10, 11, 12, 13, 14

_F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED


def _field(msg: Any, name: str, number: int, ftype: int, label: int = _OPT,
           type_name: str | None = None, oneof: int | None = None) -> None:
    f = msg.field.add(name=name, number=number, type=ftype, label=label)
    if type_name:
        f.type_name = type_name
    if oneof is not None:
        f.oneof_index = oneof


def _build() -> Any:
    fd = descriptor_pb2.FileDescriptorProto(name="rae_sparkplug_b.proto", package=PACKAGE,
                                            syntax="proto2")
    payload = fd.message_type.add(name="Payload")
    metric = payload.nested_type.add(name="Metric")
    for name, num, t in [("name", 1, _F.TYPE_STRING), ("alias", 2, _F.TYPE_UINT64),
                         ("timestamp", 3, _F.TYPE_UINT64), ("datatype", 4, _F.TYPE_UINT32),
                         ("is_historical", 5, _F.TYPE_BOOL), ("is_transient", 6, _F.TYPE_BOOL),
                         ("is_null", 7, _F.TYPE_BOOL)]:
        _field(metric, name, num, t)
    metric.oneof_decl.add(name="value")
    for name, num, t in [("int_value", 10, _F.TYPE_UINT32), ("long_value", 11, _F.TYPE_UINT64),
                         ("float_value", 12, _F.TYPE_FLOAT), ("double_value", 13, _F.TYPE_DOUBLE),
                         ("boolean_value", 14, _F.TYPE_BOOL), ("string_value", 15, _F.TYPE_STRING),
                         ("bytes_value", 16, _F.TYPE_BYTES)]:
        _field(metric, name, num, t, oneof=0)
    _field(payload, "timestamp", 1, _F.TYPE_UINT64)
    _field(payload, "metrics", 2, _F.TYPE_MESSAGE, _REP, f".{PACKAGE}.Payload.Metric")
    _field(payload, "seq", 3, _F.TYPE_UINT64)
    _field(payload, "uuid", 4, _F.TYPE_STRING)
    _field(payload, "body", 5, _F.TYPE_BYTES)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.Payload"))


Payload: Any = _build()

_SIGNED = {INT8: 8, INT16: 16, INT32: 32, INT64: 64}


def metric_value(m: Any) -> Any:
    """A metric's value as Python (None when null); signed ints are two's complement."""
    if m.is_null:
        return None
    which = m.WhichOneof("value")
    if which is None:
        return None
    value = getattr(m, which)
    bits = _SIGNED.get(m.datatype)
    if bits and isinstance(value, int) and value >= 1 << (bits - 1):
        value -= 1 << (32 if which == "int_value" and bits < 64 else bits)
    return value


def set_value(m: Any, datatype: int, value: Any) -> None:
    """Fills a metric's value field for ``datatype`` (for tests, the simulator, NCMD)."""
    m.datatype = datatype
    if value is None:
        m.is_null = True
    elif datatype == BOOLEAN:
        m.boolean_value = bool(value)
    elif datatype in (STRING, TEXT):
        m.string_value = str(value)
    elif datatype in (FLOAT,):
        m.float_value = float(value)
    elif datatype == DOUBLE:
        m.double_value = float(value)
    elif datatype in (INT64, UINT64, DATETIME):
        m.long_value = int(value) % (1 << 64)
    else:
        m.int_value = int(value) % (1 << 32)
