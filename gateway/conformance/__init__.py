"""The conformance suite (docs/conformance.md): cases as data in conformance/cases/, the suite's own message
crafting, and the runner with its reports. Nothing here imports the hub's validators."""
