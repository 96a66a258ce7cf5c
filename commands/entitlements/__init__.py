"""Manual feature grants and revokes (support overrides) for one tenant."""
