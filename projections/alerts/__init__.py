"""The alerts read model: every alert with its thresholds, and every time one fired."""
