"""Deterministic simulation (TARGETS.md R9): the whole system in one process on a test clock.

One `random.Random(seed)` drives a scenario (tenants, plans, subscriptions, usage, payments,
credit notes and billing runs over simulated months) and the faults injected into it
(optimistic conflicts, crashes between commit and publish, redeliveries, lost acknowledgements,
projector restarts). Every step is written to a trace; the same seed gives the same trace,
byte for byte. At checkpoints and at the end every invariant is checked (`checks.py`,
`money.py`). `tally chaos --seed N` runs one seed (`cli.py`).
"""
