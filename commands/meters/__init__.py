"""Meters of an app's catalog: define them, resolve the meters plan features name."""
