"""Online models: river-style detectors over window rows or raw series."""
