"""A test Stripe server: localstripe 1.15.10 with what Tally's gateway needs added or fixed.

`stripe_server()` starts `python -m tests.stripe_server --port N` on a free port, waits until it
answers and stops it at the end; `stripe_api_fixture` is the same as a pytest fixture function
(tests/conftest.py registers it as the session fixture `stripe_api`, the base URL).
`StripeTestKnobs` does to the server what the fake's test knobs do to the fake: make a card,
pay or void an invoice outside Tally, delete a customer.

localstripe lacks prices, checkout sessions, billing portal sessions, invoice finalization and
idempotency keys, and predates parameters the current SDK sends. `main()` patches exactly
those, each patch saying why, before `localstripe.server` is imported (it registers
`localstripe.resources.extra_apis` as routes at import time). The server side imports
localstripe only in the server process; the test side needs only the standard library.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

API_KEY = "sk_test_tally"
GOOD_CARD = "4242424242424242"
DECLINING_CARD = "4000000000000341"  # attaches, then every charge is declined
REPO = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 20.0


# the test side ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def stripe_server(startup_timeout: float = STARTUP_TIMEOUT) -> Iterator[str]:
    """A fresh test Stripe server for the block; yields its base URL."""
    port = free_port()
    with tempfile.NamedTemporaryFile(prefix="localstripe-", suffix=".log") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.stripe_server", "--port", str(port)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_until_ready(base, process, Path(log.name), startup_timeout)
            yield base
        finally:
            _stop(process)


def stripe_api_fixture() -> Iterator[str]:
    """Pytest fixture function: the base URL of a test Stripe server for the session."""
    with stripe_server() as base:
        yield base


def _wait_until_ready(
    base: str, process: subprocess.Popen[bytes], log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the test Stripe server exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            request(base, "GET", "/v1/balance")
            return
        time.sleep(0.05)
    raise RuntimeError(f"the test Stripe server did not answer within {timeout} s at {base}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def request(
    base: str, method: str, path: str, params: dict[str, str] | None = None
) -> dict[str, Any]:
    """One form-encoded API call, as the SDK makes them; raises OSError on an HTTP error."""
    data = urllib.parse.urlencode(params or {}).encode() if method == "POST" else None
    call = urllib.request.Request(
        base + path, data=data, method=method, headers={"Authorization": f"Bearer {API_KEY}"}
    )
    with urllib.request.urlopen(call, timeout=10) as answer:
        body: dict[str, Any] = json.loads(answer.read())
        return body


class StripeTestKnobs:
    """The fake's test knobs (make_card, drift outside Tally) on a test Stripe server."""

    def __init__(self, api_base: str) -> None:
        self.api_base = api_base

    def make_card(self, number: str = GOOD_CARD) -> str:
        return make_card(self.api_base, number)

    def attach_card_only(self, customer_id: str, payment_method: str) -> None:
        """Attached without becoming the invoices' default (as Checkout saves a card)."""
        path = f"/v1/payment_methods/{payment_method}/attach"
        request(self.api_base, "POST", path, {"customer": customer_id})

    def pay_outside(self, invoice_id: str) -> None:
        request(
            self.api_base, "POST", f"/v1/invoices/{invoice_id}/pay", {"paid_out_of_band": "true"}
        )

    def void_outside(self, invoice_id: str) -> None:
        request(self.api_base, "POST", f"/v1/invoices/{invoice_id}/void")

    def delete_customer(self, customer_id: str) -> None:
        request(self.api_base, "DELETE", f"/v1/customers/{customer_id}")


def make_card(api_base: str, number: str = GOOD_CARD) -> str:
    """A card PaymentMethod, not attached (https://docs.stripe.com/api/payment_methods/create)."""
    card = {"number": number, "exp_month": "12", "exp_year": "2034", "cvc": "123"}
    params = {"type": "card", **{f"card[{key}]": value for key, value in card.items()}}
    method_id: str = request(api_base, "POST", "/v1/payment_methods", params)["id"]
    return method_id


# the server side -------------------------------------------------------------------------


def main() -> None:
    """`python -m tests.stripe_server --port N`: localstripe, patched, from an empty store."""
    import localstripe.resources as ls  # type: ignore[import-untyped]

    _patch_resources(ls)
    from localstripe import server  # registers extra_apis as routes at import

    server.app.middlewares.append(_idempotency_middleware(ls))
    if "--from-scratch" not in sys.argv:
        sys.argv.append("--from-scratch")  # never load an earlier run's pickled store
    server.start()


def _patch_resources(ls: Any) -> None:
    _keep_store_in_memory(ls)
    price = _price_class(ls)
    _add_routes(ls, price, "/v1/prices", create=True, update=True, listing=True)
    _add_routes(ls, _checkout_session_class(ls, price), "/v1/checkout/sessions", create=True)
    portal = _portal_session_class(ls)
    ls.extra_apis.append(("POST", "/v1/billing_portal/sessions", portal._api_create))
    _patch_subscriptions(ls, price)
    _patch_invoices(ls)


def _keep_store_in_memory(ls: Any) -> None:
    # localstripe pickles its whole store to /tmp/localstripe.pickle after every write (and
    # loads it at start): servers started side by side would share and clobber that file.
    ls.Store.dump_to_disk = lambda self: None


def _add_routes(
    ls: Any, cls: Any, path: str, *, create: bool, update: bool = False, listing: bool = False
) -> None:
    """Create and retrieve (and update, list) routes for a resource localstripe lacks."""
    routes: list[tuple[str, str, Callable[..., Any]]] = [
        ("GET", path + "/{id}", lambda id, **query: cls._api_retrieve(id))
    ]
    if create:
        routes.append(("POST", path, lambda **data: cls._api_create(**data)))
    if update:
        routes.append(("POST", path + "/{id}", lambda id, **data: cls._api_update(id, **data)))
    if listing:
        routes.append(("GET", path, lambda **query: cls._api_list_all(path, **query)))
    ls.extra_apis.extend(routes)


def _price_class(ls: Any) -> Any:
    """Prices (https://docs.stripe.com/api/prices/object), each with a twin localstripe Plan
    of the same id, as localstripe's subscriptions and invoices bill plans."""

    class Price(ls.StripeObject):  # type: ignore[misc]
        object = "price"
        _id_prefix = "price_"
        _updatable = frozenset({"active", "metadata", "nickname", "lookup_key"})

        def __init__(
            self,
            product: Any = None,
            unit_amount: Any = None,
            currency: Any = None,
            recurring: Any = None,
            metadata: Any = None,
            nickname: Any = None,
            lookup_key: Any = None,
            active: Any = True,
            **unknown: Any,
        ) -> None:
            _refuse_unknown(ls, unknown)
            unit_amount = ls.try_convert_to_int(unit_amount)
            active = ls.try_convert_to_bool(active)
            interval = (recurring or {}).get("interval")
            _require(ls, isinstance(product, str) and isinstance(currency, str))
            _require(ls, isinstance(unit_amount, int) and unit_amount >= 0)
            _require(ls, recurring is None or interval in ("day", "week", "month", "year"))
            ls.Product._api_retrieve(product)  # 404 for an unknown product
            super().__init__()
            count = int((recurring or {}).get("interval_count", 1))
            self.active, self.product, self.currency = active, product, currency.lower()
            self.unit_amount, self.unit_amount_decimal = unit_amount, str(unit_amount)
            self.billing_scheme, self.tax_behavior = "per_unit", "unspecified"
            self.metadata, self.nickname, self.lookup_key = metadata or {}, nickname, lookup_key
            self.type = "recurring" if recurring else "one_time"
            self.recurring = None
            if recurring:
                self.recurring = {"interval": interval, "interval_count": count}
                self.recurring |= {"usage_type": "licensed", "meter": None}
                ls.Plan(
                    id=self.id,
                    product=product,
                    amount=unit_amount,
                    currency=self.currency,
                    interval=interval,
                    interval_count=count,
                )

        def _update(self, **data: Any) -> None:
            _refuse_unknown(ls, {k: v for k, v in data.items() if k not in self._updatable})
            if "active" in data:
                data["active"] = ls.try_convert_to_bool(data["active"])
            super()._update(**data)
            plan = ls.store.get("plan:" + self.id)
            if plan is not None:
                plan.active = self.active

        @classmethod
        def _api_list_all(
            cls, url: str, active: Any = None, product: Any = None, **paging: Any
        ) -> Any:
            listed = super()._api_list_all(url, **paging)
            active = ls.try_convert_to_bool(active)
            listed._list = [
                price
                for price in listed._list
                if (active is None or price.active == active)
                and (product is None or price.product == product)
            ]
            return listed

    return Price


def _checkout_session_class(ls: Any, price_cls: Any) -> Any:
    """Checkout sessions (https://docs.stripe.com/api/checkout/sessions/object): created open,
    never completed here (completing one is the customer's act in a browser)."""

    class CheckoutSession(ls.StripeObject):  # type: ignore[misc]
        object = "checkout.session"
        _id_prefix = "cs_test_"

        def __init__(
            self,
            mode: Any = None,
            customer: Any = None,
            line_items: Any = None,
            success_url: Any = None,
            cancel_url: Any = None,
            metadata: Any = None,
            subscription_data: Any = None,
            client_reference_id: Any = None,
            **unknown: Any,
        ) -> None:
            _refuse_unknown(ls, unknown)
            _require(ls, mode in ("payment", "setup", "subscription"))
            _require(ls, isinstance(success_url, str) and isinstance(line_items, list))
            if customer is not None:
                ls.Customer._api_retrieve(customer)  # 404 for an unknown customer
            prices = [_active_price(ls, price_cls, item.get("price")) for item in line_items]
            trial = ls.try_convert_to_int((subscription_data or {}).get("trial_period_days"))
            _require(ls, trial is None or (isinstance(trial, int) and trial >= 1))
            super().__init__()
            self.mode, self.customer, self.status, self.payment_status = (
                mode,
                customer,
                "open",
                "unpaid",
            )
            self.success_url, self.cancel_url = success_url, cancel_url
            self.metadata, self.client_reference_id = metadata or {}, client_reference_id
            self.currency = prices[0].currency if prices else None
            self.amount_total = sum(
                p.unit_amount * int(i.get("quantity", 1))
                for p, i in zip(prices, line_items, strict=True)
            )
            self.subscription, self.expires_at = None, self.created + 24 * 3600
            self.url = f"https://checkout.stripe.com/c/pay/{self.id}"
            self._line_items, self._subscription_data = line_items, subscription_data or {}

    return CheckoutSession


def _portal_session_class(ls: Any) -> Any:
    """Billing portal sessions (https://docs.stripe.com/api/customer_portal/sessions/object)."""

    class PortalSession(ls.StripeObject):  # type: ignore[misc]
        object = "billing_portal.session"
        _id_prefix = "bps_"

        def __init__(self, customer: Any = None, return_url: Any = None, **unknown: Any) -> None:
            _refuse_unknown(ls, unknown)
            _require(ls, isinstance(customer, str))
            ls.Customer._api_retrieve(customer)  # 404 for an unknown customer
            super().__init__()
            self.customer, self.return_url = customer, return_url
            self.configuration, self.flow, self.locale, self.on_behalf_of = (
                "bpc_test_default",
                None,
                None,
                None,
            )
            self.url = f"https://billing.stripe.com/p/session/test_{self.id}"

    return PortalSession


def _patch_subscriptions(ls: Any, price_cls: Any) -> None:
    """Subscriptions (https://docs.stripe.com/api/subscriptions/object) as the current API
    takes them: items name a `price`, `collection_method` and `days_until_due`,
    `pause_collection`, `proration_behavior`; items show their price."""
    sub = ls.Subscription
    original_init, original_update = sub.__init__, sub._update
    original_invoice = sub._create_invoice

    def init(self: Any, items: Any = None, collection_method: Any = None, **data: Any) -> None:
        _prices_to_plans(ls, price_cls, items)
        method = collection_method or "charge_automatically"
        _require(ls, method in ("charge_automatically", "send_invoice"))
        days = ls.try_convert_to_int(data.pop("days_until_due", None))
        _require(ls, method == "charge_automatically" or isinstance(days, int))
        # set before localstripe's __init__, which makes (and here sends) the first invoice
        self.collection_method, self.days_until_due, self.pause_collection = method, days, None
        original_init(self, items=items, **data)

    def create_invoice(self: Any) -> None:
        if self.collection_method == "charge_automatically":
            original_invoice(self)
            return
        # a send_invoice subscription's invoice is finalized and sent, never charged, and the
        # subscription is active at once (https://docs.stripe.com/billing/collection-method)
        with _invoices_not_paid(ls):
            original_invoice(self)
        self.status = "active"
        ls.Invoice._api_retrieve(self.latest_invoice).collection_method = "send_invoice"

    def update(
        self: Any,
        items: Any = None,
        pause_collection: Any = None,
        proration_behavior: Any = None,
        **data: Any,
    ) -> None:
        if self.status == "canceled":
            raise ls.UserError(400, "A canceled subscription can only update its metadata.")
        _prices_to_plans(ls, price_cls, items)
        pending = set(_pending_item_ids(ls))
        original_update(self, items=items, **data)
        if proration_behavior == "none":  # localstripe always credits the unused time
            for item_id in set(_pending_item_ids(ls)) - pending:
                del ls.store["invoiceitem:" + item_id]
        if pause_collection is not None:  # "" resumes collection
            self.pause_collection = pause_collection or None

    def voided_first_invoice(self: Any, invoice: Any) -> None:
        # localstripe expires the subscription whenever its first invoice is voided; Stripe
        # does so only while the subscription is still incomplete
        if self.status == "incomplete":
            self.status = "incomplete_expired"

    sub.__init__, sub._update, sub._create_invoice = init, update, create_invoice
    sub._on_initial_payment_voided = voided_first_invoice
    ls.SubscriptionItem.price = property(lambda item: _price_export(ls, item.plan.id))


def _prices_to_plans(ls: Any, price_cls: Any, items: Any) -> None:
    """Subscription items naming a price bill its twin plan (an inactive price is refused)."""
    for item in items or []:
        if isinstance(item, dict) and "price" in item:
            item["plan"] = _active_price(ls, price_cls, item.pop("price")).id


def _active_price(ls: Any, price_cls: Any, price_id: Any) -> Any:
    _require(ls, isinstance(price_id, str))
    price = ls.store.get("price:" + price_id)
    if price is None:
        raise ls.UserError(404, f"No such price: '{price_id}'", {"code": "resource_missing"})
    if not price.active:
        message = (
            f"The price specified is inactive. This field only accepts active prices: {price_id}"
        )
        raise ls.UserError(400, message)
    return price


def _price_export(ls: Any, plan_id: str) -> Any:
    price = ls.store.get("price:" + plan_id)
    return price._export() if price is not None else None


def _pending_item_ids(ls: Any) -> list[str]:
    items = ls.InvoiceItem._api_list_all(None, limit=1000)._list
    return [item.id for item in items]


@contextlib.contextmanager
def _invoices_not_paid(ls: Any) -> Iterator[None]:
    """Within the block, localstripe's `pay` of an invoice only returns it (not charged)."""
    pay = ls.Invoice.__dict__["_api_pay_invoice"]
    ls.Invoice._api_pay_invoice = classmethod(lambda cls, id: cls._api_retrieve(id))
    try:
        yield
    finally:
        ls.Invoice._api_pay_invoice = pay


def _patch_invoices(ls: Any) -> None:
    """Invoices (https://docs.stripe.com/api/invoices) as the current API has them."""
    inv = ls.Invoice
    original_pay, original_status = inv._api_pay_invoice, inv.status
    original_cancel = ls.PaymentIntent._api_cancel

    def create_invoice(cls: Any, /, customer: Any = None, **params: Any) -> Any:
        # localstripe's create takes no currency, collection method, auto_advance or metadata
        # and bills every pending item; since 2022 Stripe makes an empty draft unless
        # pending_invoice_items_behavior=include (https://docs.stripe.com/api/invoices/create)
        return _empty_draft(ls, customer, params)

    def create_item(cls: Any, /, **data: Any) -> Any:
        # an item made with `invoice` belongs on that draft's lines; localstripe only sets
        # the field (https://docs.stripe.com/api/invoiceitems/create#create_invoiceitem-invoice)
        draft = ls.Invoice._api_retrieve(data["invoice"]) if data.get("invoice") else None
        if draft is not None and draft.status != "draft":
            raise ls.UserError(400, f"Invoice {draft.id} is no longer a draft.")
        if draft is not None and str(data.get("currency", "")).lower() != draft.currency:
            raise ls.UserError(400, "The invoice item's currency must be the invoice's.")
        item = cls(**data)
        if draft is not None:
            draft.lines._list.append(ls.InvoiceLineItem(item))
        return item

    def pay(id: Any, paid_out_of_band: Any = None, **unknown: Any) -> Any:
        _refuse_unknown(ls, unknown)
        if ls.try_convert_to_bool(paid_out_of_band) is True:
            return _paid_out_of_band(ls, id)
        invoice = original_pay(id)
        charge = invoice.charge
        if invoice.status == "open" and charge is not None and charge.status == "failed":
            # localstripe answers 200 with the invoice still open; Stripe answers 402 with
            # the card error (https://docs.stripe.com/api/invoices/pay)
            raise _card_error(ls, charge)
        return invoice

    def status(self: Any) -> str:
        if getattr(self, "paid_out_of_band", False) and not self._voided:
            return "paid"
        result: str = original_status.fget(self)
        return result

    def cancel(cls: Any, /, id: Any = None, **data: Any) -> Any:
        # voiding calls this for the invoice's PaymentIntent, failing (400) for an invoice
        # never charged, which has none
        return None if id is None else original_cancel(id, **data)

    inv._api_create, inv.status = classmethod(create_invoice), property(status)
    # only the route changes: localstripe's own subscriptions still pay as before
    _replace_route(ls, "POST", "/v1/invoices/{id}/pay", pay)
    ls.InvoiceItem._api_create = classmethod(create_item)
    ls.PaymentIntent._api_cancel = classmethod(cancel)
    ls.extra_apis.append(("POST", "/v1/invoices/{id}/finalize", _finalize_route(ls)))


def _replace_route(ls: Any, method: str, path: str, func: Callable[..., Any]) -> None:
    index = next(i for i, (m, p, _) in enumerate(ls.extra_apis) if (m, p) == (method, path))
    ls.extra_apis[index] = (method, path, func)


def _empty_draft(ls: Any, customer: Any, params: dict[str, Any]) -> Any:
    allowed = {"currency", "collection_method", "auto_advance", "metadata", "description"}
    allowed |= {"pending_invoice_items_behavior", "days_until_due"}
    _refuse_unknown(ls, {k: v for k, v in params.items() if k not in allowed})
    _require(ls, isinstance(customer, str))
    pending = ls.InvoiceItem._api_list_all(None, customer=customer, limit=1000)._list
    draft = ls.Invoice(
        customer=customer, metadata=params.get("metadata"), description=params.get("description")
    )
    if params.get("pending_invoice_items_behavior") != "include":
        for item in pending:
            item.invoice = None
        draft.lines._list = []
    draft.currency = str(params.get("currency") or "eur").lower()
    draft.collection_method = params.get("collection_method") or "charge_automatically"
    draft.auto_advance = ls.try_convert_to_bool(params.get("auto_advance", False))
    return draft


def _finalize_route(ls: Any) -> Callable[..., Any]:
    """POST /v1/invoices/{id}/finalize (https://docs.stripe.com/api/invoices/finalize)."""

    def finalize(id: str, auto_advance: Any = None, **unknown: Any) -> Any:
        _refuse_unknown(ls, unknown)
        invoice = ls.Invoice._api_retrieve(id)
        if invoice.status != "draft":
            raise ls.UserError(400, "This invoice is already finalized.")
        invoice._finalize()
        if auto_advance is not None:
            invoice.auto_advance = ls.try_convert_to_bool(auto_advance)
        return invoice

    return finalize


def _paid_out_of_band(ls: Any, invoice_id: str) -> Any:
    invoice = ls.Invoice._api_retrieve(invoice_id)
    if invoice.status not in ("open", "draft"):
        raise ls.UserError(400, f"You cannot pay an invoice that is {invoice.status}.")
    invoice._draft, invoice.paid_out_of_band = False, True
    return invoice


def _card_error(ls: Any, charge: Any) -> Exception:
    error = ls.UserError(402, charge.failure_message, {"code": charge.failure_code})
    error.body["error"] |= {"type": "card_error", "charge": charge.id}
    return error  # type: ignore[no-any-return]


def _idempotency_middleware(ls: Any) -> Any:
    """Idempotency-Key on POST (https://docs.stripe.com/api/idempotent_requests): a key seen
    with the same request replays the saved answer; with another request it is refused."""
    from aiohttp import web

    seen: dict[str, tuple[str, int, bytes]] = {}

    @web.middleware
    async def idempotent(request: Any, handler: Any) -> Any:
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key:
            return await handler(request)
        fingerprint = f"{request.path}?{(await request.read()).decode()}"
        if key in seen:
            return _replay(web, seen[key], fingerprint)
        response = await handler(request)
        if 200 <= response.status < 300:  # Stripe keeps no result of a refused request
            seen[key] = (fingerprint, response.status, response.body)
        return response

    return idempotent


def _replay(web: Any, saved: tuple[str, int, bytes], fingerprint: str) -> Any:
    known, status, body = saved
    if known != fingerprint:
        message = (
            "Keys for idempotent requests can only be used with the same parameters "
            "they were first used with."
        )
        error = {"error": {"type": "idempotency_error", "message": message}}
        return web.json_response(error, status=400)
    headers = {"Idempotent-Replayed": "true"}
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def _refuse_unknown(ls: Any, unknown: dict[str, Any]) -> None:
    if unknown:
        raise ls.UserError(400, "Received unknown parameter: " + ", ".join(sorted(unknown)))


def _require(ls: Any, condition: bool) -> None:
    if not condition:
        raise ls.UserError(400, "Bad request")


if __name__ == "__main__":
    main()
