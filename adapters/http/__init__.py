"""Tally's HTTP API (FastAPI): `create_app(system)`; `serve(...)` runs it with uvicorn."""
