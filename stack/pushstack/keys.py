"""Redis key names of the reference stack: private to its services (pushctl never reads them)."""

from __future__ import annotations

KEY_ROUTES = "routes"  # store hash: device -> broker name
KEY_REGION_DEVICES = "region-devices:{region}"  # store set: devices seen in a region
KEY_OFFLINE = "offline:{device}"  # store hash: message id -> message JSON
KEY_ONLINE_EVENTS = "online-events"  # store list: devices that came back (logic pops)
KEY_ROUTING = "routing:weights"  # store hash: idc -> weight
KEY_PAYLOAD = "payload:{id}"  # cache string: single-push payload
KEY_GROUP_PAYLOAD = "group-payload:{id}"  # cache string: group payload (disk KV holds it too)
