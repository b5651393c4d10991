"""Job entrypoints that run inside the quantizer/evaluator images (heavy ML imports live here only)."""
