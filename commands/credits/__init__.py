"""Prepaid credit commands: grant credits to a tenant, void a grant, expire by the clock."""
