"""Redis adapters: the hot copy of the entitlement read model."""
