"""The demonstration: a hub and three simulated jurisdictions on this machine, and the story of MISSION.md.

`exchange.running_exchange` starts the hub (exactly as `gateway serve` builds it) and one
simulator per jurisdiction on loopback ports; `story.tell` runs the flows and the refusals
and returns what happened. `gateway demo` prints it; the end-to-end tests assert it.
"""
