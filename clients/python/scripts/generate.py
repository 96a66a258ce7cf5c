"""Regenerate the typed layer of tally-client from Tally's OpenAPI document.

    python clients/python/scripts/generate.py                # from this checkout's app
    python clients/python/scripts/generate.py openapi.json   # or a file
    python clients/python/scripts/generate.py http://127.0.0.1:8000/openapi.json

Writes, under src/tally_client/:
- `openapi.json`: the document generated from (kept for reference and review);
- `models.py`: pydantic models of every schema, by datamodel-code-generator (the `dev` extra
  pins it: `pip install './clients/python[dev]'`);
- `_operations.py`: one `Operation` per route and the `SyncOperations` / `AsyncOperations`
  mixins with one typed method per route (the names below; a route not named here keeps its
  FastAPI function name).

tests/clients/test_openapi_coverage.py fails when the live document has a route, parameter or
field that these files lack: run this script and commit what it wrote.
"""

from __future__ import annotations

import json
import keyword
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parent / "src" / "tally_client"
REPO = HERE.parents[2]

# FastAPI function names that say too little outside their module.
NAMES = {
    "cancel": "cancel_subscription",
    "undo_cancel": "undo_cancel_subscription",
    "pause": "pause_subscription",
    "resume": "resume_subscription",
    "ingest": "record_usage",
    "usage": "get_usage",
    "current_usage": "get_current_usage",
    "all_entitlements": "list_entitlements",
    "entitlement": "get_entitlement",
    "check": "check_entitlements",
    "grant": "grant_feature",
    "revoke": "revoke_feature",
    "draft": "draft_invoice",
    "add_line": "add_invoice_line",
    "finalize": "finalize_invoice",
    "pay": "pay_invoice",
    "void": "void_invoice",
    "uncollectible": "mark_invoice_uncollectible",
    "issue": "issue_credit_note",
    "invoice_pdf": "get_invoice_pdf",
    "credit_note_pdf": "get_credit_note_pdf",
    "explain": "explain_invoice",
    "recompute": "recompute_invoice",
    "set_profile": "set_billing_profile",
    "get_profile": "get_billing_profile",
    "billing_run": "run_billing",
    "rate_quantity": "rate",
    "simulate": "simulate_pricing",
    "revenue": "get_revenue",
    "subscription_metrics": "get_subscription_metrics",
    "events": "list_events",
    "run": "run_command",
    "create_checkout": "create_checkout_session",
    "create_portal": "create_portal_session",
    "attach_method": "attach_payment_method",
    "list_methods": "list_payment_methods",
    "last_reconciliation": "get_stripe_reconciliation",
}

LIST_REPLIES: set[str] = set()  # routes answering JSON arrays (none today: all objects)
SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}
COMMON = ("min_position", "timeout")  # every method takes these (keyword only)


def load_document(source: str | None) -> dict[str, Any]:
    """The OpenAPI document from a file, a URL, or this checkout's app (default)."""
    if source is None:
        return document_of_this_checkout()
    if source.startswith(("http://", "https://")):
        import httpx

        return dict(httpx.get(source, timeout=30).raise_for_status().json())
    return dict(json.loads(Path(source).read_text()))


def document_of_this_checkout() -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from adapters.bootstrap import bootstrap  # type: ignore[import-untyped,unused-ignore]
    from adapters.http.app import create_app  # type: ignore[import-untyped,unused-ignore]
    from adapters.settings import Settings  # type: ignore[import-untyped,unused-ignore]

    system = bootstrap(Settings(database_url="sqlite:///:memory:"), deliver_in_process=False)
    try:
        return dict(create_app(system).openapi())
    finally:
        system.close()


# --- operations -----------------------------------------------------------------------------


def method_name(operation_id: str, path: str, method: str) -> str:
    """FastAPI's operation id is `<function><path as word characters>_<method>`."""
    suffix = re.sub(r"\W", "_", path) + "_" + method
    base = operation_id[: -len(suffix)] if operation_id.endswith(suffix) else operation_id
    return NAMES.get(base, base)


def python_name(name: str) -> str:
    safe = re.sub(r"\W", "_", name)
    return f"{safe}_" if keyword.iskeyword(safe) else safe


def annotation(schema: dict[str, Any]) -> str:
    """A Python annotation for a parameter's schema (enums as Literal, refs as str)."""
    if "anyOf" in schema:
        parts = [annotation(s) for s in schema["anyOf"] if s.get("type") != "null"]
        return " | ".join(dict.fromkeys(parts)) or "Any"
    if "enum" in schema:
        return "Literal[" + ", ".join(json.dumps(v) for v in schema["enum"]) + "]"
    if "$ref" in schema:
        return "str"
    kind = schema.get("type")
    if kind == "array":
        return f"list[{annotation(schema.get('items', {}))}]"
    if kind == "string" and schema.get("format") == "date-time":
        return "datetime | str"
    if kind == "string" and schema.get("format") == "uuid":
        return "UUID | str"
    return SCALARS.get(str(kind), "Any")


def body_type(operation: dict[str, Any]) -> tuple[str | None, bool]:
    """(annotation of the JSON body or None, whether it is required)."""
    body = operation.get("requestBody")
    if not body:
        return None, False
    schema = body.get("content", {}).get("application/json", {}).get("schema", {})
    return schema_type(schema), bool(body.get("required"))


def schema_type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return "models." + str(schema["$ref"]).rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            parts = [schema_type(s) for s in schema[key] if s.get("type") != "null"]
            return " | ".join(parts)
    return "dict[str, Any]"


def returns(name: str, operation: dict[str, Any]) -> str:
    content = _ok_content(operation)
    if "application/pdf" in content:
        return "bytes"
    if not content or "application/json" not in content:
        return "text"
    return "list" if name in LIST_REPLIES else "json"


def operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            name = method_name(operation["operationId"], path, method)
            params = [p for p in operation.get("parameters", []) if p["name"] not in COMMON]
            found.append(
                {
                    "name": name,
                    "method": method.upper(),
                    "path": path,
                    "summary": operation.get("summary") or name,
                    "path_params": [p for p in params if p["in"] == "path"],
                    "query_params": [p for p in params if p["in"] == "query"],
                    "body": body_type(operation),
                    "returns": returns(name, operation),
                    "csv": "text/csv" in _ok_content(operation),
                    "operation_id": operation["operationId"],
                }
            )
    names = [o["name"] for o in found]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise SystemExit(f"two routes would get the same method name: {sorted(duplicates)}")
    return found


def _ok_content(operation: dict[str, Any]) -> dict[str, Any]:
    for code, response in operation["responses"].items():
        if code.startswith("2"):
            return dict(response.get("content") or {})
    return {}


RETURNS = {"json": "Reply", "list": "ReplyList", "bytes": "bytes", "text": "str"}


def signature(op: dict[str, Any], returns_as: str) -> str:
    params = ["self"]
    params += [f"{python_name(p['name'])}: {annotation(p['schema'])}" for p in op["path_params"]]
    body = op["body"][0]
    if body is not None:
        params.append(f"body: {body} | Mapping[str, Any] | None = None")
    if op["path_params"] or body is not None:
        params.append("/")
    params.append("*")
    for p in op["query_params"]:
        kind = annotation(p["schema"])
        params.append(
            f"{python_name(p['name'])}: {kind}"
            if p.get("required")
            else f"{python_name(p['name'])}: {kind} | None = None"
        )
    params.append("min_position: int | None = None")
    params.append("timeout: float | None = None")
    if body is not None:
        params.append("**fields: Any")
    return f"({', '.join(params)}) -> {RETURNS[returns_as]}"


def arguments(params: list[dict[str, Any]]) -> str:
    """`"wire name": python_name, ...` for a dict literal."""
    return ", ".join(f"{json.dumps(p['name'])}: {python_name(p['name'])}" for p in params)


def call(op: dict[str, Any], returns_as: str, accept: str | None) -> str:
    path, query = arguments(op["path_params"]), arguments(op["query_params"])
    body = "body, fields" if op["body"][0] is not None else "None, {}"
    accept_arg = f", accept={json.dumps(accept)}" if accept else ""
    return (
        f"self._call(OPERATIONS[{json.dumps(op['name'])}], {{{path}}}, {{{query}}}, {body}, "
        f"min_position=min_position, timeout=timeout"
        f"{accept_arg}, returns={json.dumps(returns_as)})"
    )


def methods(op: dict[str, Any], asynchronous: bool) -> list[str]:
    variants: list[tuple[str, str, str | None, str]] = [
        (op["name"], op["returns"], None, op["summary"])
    ]
    if op["csv"]:
        variants.append((f"{op['name']}_csv", "text", "text/csv", op["summary"] + " as CSV"))
    out = []
    for name, returns_as, accept, summary in variants:
        prefix, wait = ("async def", "await ") if asynchronous else ("def", "")
        doc = f"{summary} ({op['method']} {op['path']})."
        out.append(
            f"    {prefix} {name}{signature(op, returns_as)}:\n"
            f"        {json.dumps(doc)}\n"
            f"        answer: {RETURNS[returns_as]} = {wait}{call(op, returns_as, accept)}\n"
            f"        return answer\n"
        )
    return out


def operation_entry(op: dict[str, Any]) -> str:
    body, required = op["body"]
    return (
        f"    {json.dumps(op['name'])}: Operation(\n"
        f"        name={json.dumps(op['name'])},\n"
        f"        method={json.dumps(op['method'])},\n"
        f"        path={json.dumps(op['path'])},\n"
        f"        operation_id={json.dumps(op['operation_id'])},\n"
        f"        path_params={tuple(p['name'] for p in op['path_params'])!r},\n"
        f"        query_params={tuple(p['name'] for p in op['query_params'])!r},\n"
        f"        body={body or 'None'},\n"
        f"        body_required={required!r},\n"
        f"        returns={json.dumps(op['returns'])},\n"
        f"    ),\n"
    )


HEADER = '''"""Generated by clients/python/scripts/generate.py from Tally's /openapi.json.

Do not edit. One `Operation` per route, and one typed method per route in `SyncOperations`
(for `Tally`) and `AsyncOperations` (for `AsyncTally`).
"""

# ruff: noqa: E501, F401

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from tally_client import models
from tally_client._core import Operation, Reply, ReplyList

'''


def operations_module(ops: list[dict[str, Any]]) -> str:
    parts = [HEADER, "OPERATIONS: dict[str, Operation] = {\n"]
    parts += [operation_entry(op) for op in ops]
    parts.append("}\n\n\n")
    for asynchronous in (False, True):
        kind = "AsyncOperations" if asynchronous else "SyncOperations"
        parts.append(f"class {kind}:\n")
        flavour = "async" if asynchronous else "sync"
        parts.append(f'    """Every route of the API as a method ({flavour})."""\n\n')
        parts.append("    _call: Any  # Tally._call / AsyncTally._call (tally_client.http)\n\n")
        for op in ops:
            parts += [m + "\n" for m in methods(op, asynchronous)]
        parts.append("\n\n")
    return "".join(parts).rstrip() + "\n"


# --- models ---------------------------------------------------------------------------------


def generate_models(document_path: Path, target: Path) -> None:
    codegen = shutil.which("datamodel-codegen")
    if codegen is None:
        raise SystemExit("datamodel-codegen is missing: pip install './clients/python[dev]'")
    subprocess.run(
        [
            codegen,
            "--input", str(document_path),
            "--input-file-type", "openapi",
            "--output", str(target),
            "--output-model-type", "pydantic_v2.BaseModel",
            "--target-python-version", "3.11",
            "--use-annotated",
            "--field-constraints",
            "--use-standard-collections",
            "--use-union-operator",
            "--use-schema-description",
            "--use-field-description",
            "--disable-timestamp",
            "--use-subclass-enum",
            "--set-default-enum-member",
            "--use-double-quotes",
            "--no-formatters",
            "--custom-file-header",
            '"""Generated by datamodel-code-generator from Tally\'s /openapi.json '
            '(clients/python/scripts/generate.py): do not edit."""\n# ruff: noqa',
        ],
        check=True,
    )  # fmt: skip


def ruff(*paths: Path) -> None:
    """Tidy the generated files with ruff when it is installed (the main venv has it)."""
    command = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(command).exists() and shutil.which(command) is None:
        return
    files = [str(p) for p in paths]
    subprocess.run([command, "check", "--fix", "--quiet", *files], check=False)
    subprocess.run([command, "format", "--quiet", *files], check=True)


def main(argv: list[str]) -> None:
    document = load_document(argv[1] if len(argv) > 1 else None)
    snapshot = PACKAGE / "openapi.json"
    snapshot.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "openapi.json"
        source.write_text(json.dumps(document))
        generate_models(source, PACKAGE / "models.py")
    (PACKAGE / "_operations.py").write_text(operations_module(operations(document)))
    ruff(PACKAGE / "models.py", PACKAGE / "_operations.py")
    print(textwrap.dedent(f"wrote {snapshot.parent}/{{openapi.json,models.py,_operations.py}}"))


if __name__ == "__main__":
    main(sys.argv)
