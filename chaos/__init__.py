"""The project's own chaos suite on the real stack (TARGETS.md R1-R8): each scenario starts
`tally serve` (and its workers as processes of their own where it kills them) on a scratch
database, drives it over HTTP, injects its fault and checks its invariants.

Not product code: this package stays in the source tree (not in the wheel), like
benchmarks/; `tally chaos stack` imports it lazily. Run it with `make chaos` or
`tally chaos stack [--scenario R3]` (docs/operations.md, "Chaos suite")."""
