"""The jurisdiction simulator: a real jurisdiction endpoint for integrators and the demo (docs/simulator.md).

It receives deliveries by push (its `POST /v1/deliveries`) or pull (the hub's inbox),
verifies them, answers with signed receipts, de-duplicates by message id, makes the
jurisdiction's decisions by its rules, and sends its own messages to the hub.
"""

from gateway.simulator.rules import Rules, RulesError, load_rules
from gateway.simulator.simulator import Simulator
from gateway.simulator.state import CaseView, OutgoingView

__all__ = ["CaseView", "OutgoingView", "Rules", "RulesError", "Simulator", "load_rules"]
