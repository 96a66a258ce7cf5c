"""`tally verify` and `tally seal`: recompute the event log's hash chains, or seal what was
committed since the sealer last ran (ADR 0016)."""

from __future__ import annotations

from collections.abc import Callable

from adapters.bootstrap import bootstrap
from adapters.eventstore.chain import Verification
from adapters.eventstore.seal import Sealer, SealStore, verify_all, verify_app
from adapters.eventstore.seal_worker import sealer_lock

Echo = Callable[[str], None]


def run_verify(app_id: str | None, echo: Echo, err: Echo) -> int:
    """Print each chain's result; 0 when every chain holds, 1 at a break."""
    system = bootstrap(deliver_in_process=False)
    try:
        store = SealStore(system.ledger.recorder)
        results = [verify_app(store, app_id)] if app_id else verify_all(store)
    finally:
        system.close()
    for result in results:
        (echo if result.intact else err)(describe(result, named=app_id is None))
    if app_id is None and all(r.intact for r in results):
        echo(f"chain intact ({sum(r.checked for r in results)} events)")
    pending = sum(r.not_yet_sealed for r in results)
    if pending:
        echo(f"{pending} newer events not sealed yet (not covered; the sealer seals them)")
    return 0 if all(r.intact for r in results) else 1


def describe(result: Verification, named: bool) -> str:
    """One line: "chain intact (N events)", or where and why the chain breaks."""
    prefix = f"{result.app_id or '(no app)'}: " if named else ""
    broken = result.broken
    if broken is None:
        return f"{prefix}chain intact ({result.checked} events)"
    return (
        f"{prefix}chain broken at position {broken.position} (event {broken.event_id}): "
        f"{broken.reason}: {broken.detail}; {result.checked} events verified before it"
    )


def run_seal(echo: Echo) -> int:
    """Seal everything committed now, unless another sealer is active (it does the same)."""
    system = bootstrap(deliver_in_process=False)
    try:
        lock = sealer_lock(system)
        if not lock.try_acquire():
            echo("another sealer is running; it seals events as they commit")
            return 0
        try:
            sealed = Sealer(SealStore(system.ledger.recorder)).seal_pending()
        finally:
            lock.release()
    finally:
        system.close()
    echo(f"sealed {sealed} events")
    return 0
