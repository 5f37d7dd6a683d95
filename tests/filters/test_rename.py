"""Filter rename."""

from helpers import make_plugin


def test_rename_keeps_order_and_leaves_absent_fields_alone():
    f = make_plugin("filter", "rename", fields={"id": "worker_id", "missing": "x"})
    shared = {"id": 1, "a": 2}
    assert [r for _, _, r in f.process([("t", 1, shared), ("t", 2, {"b": 3})])] == [
        {"worker_id": 1, "a": 2}, {"b": 3}]
    assert shared == {"id": 1, "a": 2}  # records shared with other branches are not changed
