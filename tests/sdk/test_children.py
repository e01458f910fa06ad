from __future__ import annotations

import pytest

from runyard import Experiment, UserError


@pytest.fixture
def parent(ws):
    return Experiment(ws, "kids").start_logging(snapshot_directory=None)


def test_child_run_as_context_manager(parent):
    with parent.child_run("first") as child:
        child.log("x", 1)
    assert child.get_status() == "Completed"
    assert child.parent.id == parent.id and child.display_name == "first"
    assert child.name == f"{parent.name}>first"
    fetched = type(parent)(parent.experiment, child.id)
    assert fetched.parent.id == parent.id
    assert parent.get_status() == "Running"


def test_create_children_with_count_and_tag_values(parent):
    kids = parent.create_children(count=3)
    assert [k.get_tags() for k in kids] == [
        {"azureml.batch_child_number": str(i)} for i in range(3)
    ]
    assert all(k.get_status() == "Running" for k in kids)
    assert [k.number for k in kids] == [parent.number + i for i in (1, 2, 3)]
    tagged = parent.create_children(tag_key="alpha", tag_values=[0.1, 0.2])
    assert [k.get_tags() for k in tagged] == [{"alpha": "0.1"}, {"alpha": "0.2"}]
    assert len(list(parent.get_children())) == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "Either count or tag_key and tag_values must be set"),
        ({"tag_key": "a"}, "tag_values must not be null when tag_key is set"),
        ({"tag_values": [1]}, "tag_key must not be null when tag_values is set"),
        ({"count": 2, "tag_key": "a", "tag_values": [1]}, "count can not be set"),
        ({"count": 101}, "can not create more than 100 runs"),
        ({"count": 0}, "positive integer"),
    ],
)
def test_create_children_errors(parent, kwargs, message):
    with pytest.raises(UserError, match=message):
        parent.create_children(**kwargs)
    assert list(parent.get_children()) == []


def test_get_children_filters_and_recursion(parent):
    a = parent.child_run("a")
    b = parent.child_run("b")
    b.tag("keep")
    b.add_properties({"p": "1"})
    a.complete()
    deep = b.child_run("deep")
    assert [c.id for c in parent.get_children()] == [b.id, a.id]
    assert {c.id for c in parent.get_children(recursive=True)} == {a.id, b.id, deep.id}
    assert [c.id for c in parent.get_children(tags="keep")] == [b.id]
    assert [c.id for c in parent.get_children(properties={"p": "1"})] == [b.id]
    assert [c.id for c in parent.get_children(status="Completed")] == [a.id]
    assert [c.id for c in deep.parent.get_children()] == [deep.id]
    assert list(parent.get_children(type="hyperdrive")) == []
