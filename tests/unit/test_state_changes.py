"""Every change of a job's or a part's state is written by one module, and every change is announced from
there: a new transition cannot forget its notification or its end-of-job hooks by being written elsewhere."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = [
    path
    for top in ("cesar", "cesar_api", "cesar_common", "cesar_worker")
    for path in (ROOT / top).rglob("*.py")
]
STATE = ROOT / "cesar_common" / "db" / "state.py"
FEED = ROOT / "cesar_common" / "db" / "feed.py"
#: the columns that make a job's or a part's state (what clients follow, what claims and ends depend on)
STATE_COLUMNS = {"status", "progress", "segment_count", "cancel_requested", "published"}
STATE_TABLES = {"jobs", "job_parts"}


def calls(path: Path) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)]


def named(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def test_only_the_state_module_writes_a_state() -> None:
    """Outside db/state.py no statement inserts or deletes jobs or parts, and no UPDATE of them sets a
    state column (leases, idempotency keys and an upload's liveness are written elsewhere: not states)."""
    found = []
    for path in PRODUCT:
        if path == STATE:
            continue
        for call in calls(path):
            name = named(call)
            if name in ("insert", "delete") and call.args and ast.unparse(call.args[0]) in STATE_TABLES:
                found.append(f"{path.relative_to(ROOT)}:{call.lineno} {name}({ast.unparse(call.args[0])})")
            if name == "values" and isinstance(call.func, ast.Attribute):
                chain = ast.unparse(call.func.value)
                if any(f"update({table})" in chain for table in STATE_TABLES):
                    written = {keyword.arg for keyword in call.keywords} & STATE_COLUMNS
                    if written or any(keyword.arg is None for keyword in call.keywords):
                        found.append(f"{path.relative_to(ROOT)}:{call.lineno} sets {sorted(written) or '**'}")
    assert found == []


def test_only_the_state_module_announces_and_only_the_feed_listens() -> None:
    announcing = sorted(
        str(path.relative_to(ROOT))
        for path in PRODUCT
        if any(named(call) == "announce" for call in calls(path))
    )
    assert announcing == ["cesar_common/db/state.py"]
    notifying = sorted(str(path.relative_to(ROOT)) for path in PRODUCT if "pg_notify" in path.read_text())
    listening = sorted(
        str(path.relative_to(ROOT))
        for path in PRODUCT
        if '"LISTEN ' in path.read_text() or 'f"LISTEN' in path.read_text()
    )
    assert notifying == listening == [str(FEED.relative_to(ROOT))]
