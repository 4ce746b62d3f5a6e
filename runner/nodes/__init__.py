"""Node runners: one module per node kind, each `run(ctx) -> output`; the engine wraps them."""
