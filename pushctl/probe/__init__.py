"""The probe: synthetic devices, a paced sender and the exact delivery ledger.

from pushctl.probe import Probe, ProbeOptions
summary = await Probe(inventory, ProbeOptions(devices=300, rate=200, duration=10)).run()
"""

from __future__ import annotations

from pushctl.probe.device import Device, DeviceConfig, DeviceStats, ReconnectEvent
from pushctl.probe.duration import format_duration, parse_duration
from pushctl.probe.ledger import Counts, Latency, Ledger, LedgerSummary, Progress, Second
from pushctl.probe.probe import DrainStats, Probe, ProbeOptions, ProbeSnapshot
from pushctl.probe.sender import Pacer, Sender, SenderStats

__all__ = [
    "Counts",
    "Device",
    "DeviceConfig",
    "DeviceStats",
    "DrainStats",
    "Latency",
    "Ledger",
    "LedgerSummary",
    "Pacer",
    "Probe",
    "ProbeOptions",
    "ProbeSnapshot",
    "Progress",
    "ReconnectEvent",
    "Second",
    "Sender",
    "SenderStats",
    "format_duration",
    "parse_duration",
]
