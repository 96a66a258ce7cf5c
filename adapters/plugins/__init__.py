"""Plugins: lifecycle hooks fed from the event log and strategy ports, found by entry point."""
