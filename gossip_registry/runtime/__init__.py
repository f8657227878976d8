"""The trio runtime: a node's lifetime and public API, the effect driver, transport, watches,
checks, events and storage."""
