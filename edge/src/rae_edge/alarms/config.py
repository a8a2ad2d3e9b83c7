"""The ``alarms`` settings section: kept in :mod:`rae_edge.alarm_settings` (the settings
tree imports no feature package) and re-exported here under its former name."""

from rae_edge.alarm_settings import (
    AlarmMapping,
    AlarmsSettings,
    OpcUaEvents,
    OpcUaSourceSettings,
    OpcUaTag,
    SimulatedPlc,
    SparkplugMetric,
    SparkplugSourceSettings,
)

__all__ = ["AlarmMapping", "AlarmsSettings", "OpcUaEvents", "OpcUaSourceSettings", "OpcUaTag",
           "SimulatedPlc", "SparkplugMetric", "SparkplugSourceSettings"]
