"""Entitlements read model: may tenant T use feature F now? (projector, rules and queries)."""
