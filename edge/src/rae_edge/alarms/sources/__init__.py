"""The alarm source plugins; importing this package registers them by ``type``.

Modules: ``base`` (the plugin interface and its health), ``opcua``, ``sparkplug``.
"""

from rae_edge.alarms.sources import opcua, sparkplug
from rae_edge.alarms.sources.base import AlarmSource, SourceContext

__all__ = ["AlarmSource", "SourceContext", "opcua", "sparkplug"]
