"""render's pure pieces: template functions and errors, the --wait rule, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from gossip_registry.client import Instance, Member
from gossip_registry.render.output import write_if_changed
from gossip_registry.render.settle import Quiescence, parse_wait
from gossip_registry.render.template import (
    NODES,
    SERVICES,
    Dependency,
    TemplateFailure,
    load_template,
    render,
)


def web(port: int, address: str = "127.0.0.1") -> Instance:
    return Instance(id=f"web-{port}", name="web", address=address, port=port, tags=("v2",))


def template(tmp_path: Path, text: str, name: str = "t.j2") -> Any:
    (tmp_path / name).write_text(text)
    return load_template(tmp_path / name)


# Template functions.


def test_service_lists_instances_sorted_by_address_and_port_whatever_the_answer_order(
    tmp_path: Path,
) -> None:
    t = template(tmp_path, "{% for i in service('web') %}{{ i.address }}:{{ i.port }};{% endfor %}")
    dep = Dependency("service", "web")
    a = render(t, {dep: [web(9002), web(9001), web(80, "10.0.0.1")]})
    b = render(t, {dep: [web(80, "10.0.0.1"), web(9001), web(9002)]})
    assert a.text == b.text == "10.0.0.1:80;127.0.0.1:9001;127.0.0.1:9002;"
    assert a.needs == {dep}
    assert a.missing == frozenset()


def test_service_passes_tag_and_passing_into_the_view_it_follows(tmp_path: Path) -> None:
    t = template(tmp_path, "{{ service('web', tag='v2', passing=false) | length }}")
    dep = Dependency("service", "web", "v2", False)
    assert render(t, {dep: [web(1), web(2)]}).text == "2"


def test_services_and_nodes_list_by_name(tmp_path: Path) -> None:
    t = template(
        tmp_path,
        "{% for s in services() %}{{ s.name }}={{ s.instances }} {% endfor %}|"
        "{% for n in nodes() %}{{ n.name }}:{{ n.state }} {% endfor %}",
    )
    members = [Member("n2", "127.0.0.2", 7946, "alive"), Member("n1", "127.0.0.1", 7946, "dead")]
    rendering = render(t, {SERVICES: {"web": 2, "api": 1}, NODES: members})
    assert rendering.text == "api=1 web=2 |n1:dead n2:alive "
    assert rendering.needs == {SERVICES, NODES}


def test_a_view_not_fetched_yet_renders_empty_and_is_reported_missing(tmp_path: Path) -> None:
    t = template(
        tmp_path, "{% for s in services() %}{{ s.name }}:{{ service(s.name)|length }} {% endfor %}"
    )
    first = render(t, {})
    assert first.missing == {SERVICES}
    second = render(t, {SERVICES: {"web": 2}})
    assert second.missing == {Dependency("service", "web")}
    third = render(t, {SERVICES: {"web": 2}, Dependency("service", "web"): [web(1), web(2)]})
    assert (third.text, third.missing) == ("web:2 ", frozenset())


# Template errors name the file and line.


def test_a_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(TemplateFailure, match=r"t\.j2:2: .*expression"):
        template(tmp_path, "upstream web {\n{% for %}\n}\n")


def test_a_missing_template_is_a_template_failure(tmp_path: Path) -> None:
    with pytest.raises(TemplateFailure, match="not found"):
        load_template(tmp_path / "absent.j2")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ok\n{{ nosuch }}\n", r"t\.j2:2: UndefinedError: 'nosuch' is undefined"),
        ("ok\nok\n{{ service('') }}", r"t\.j2:3: TypeError: service\(\): name must be"),
        ("{{ service('web', tag=3) }}", r"t\.j2:1: TypeError: service\(\): tag must be"),
        ("{{ service('web')[0].nosuch }}", r"t\.j2:1: UndefinedError"),
    ],
)
def test_a_rendering_error_names_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    t = template(tmp_path, text)
    with pytest.raises(TemplateFailure, match=message):
        render(t, {Dependency("service", "web"): [web(1)]})


def test_an_error_in_an_included_template_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "inner.j2").write_text("\n\n{{ 1 // 0 }}")
    t = template(tmp_path, "{% include 'inner.j2' %}")
    with pytest.raises(TemplateFailure, match=r"inner\.j2:3: ZeroDivisionError"):
        render(t, {})


# --wait MIN[:MAX].


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2s", (2.0, 8.0)), ("500ms:1s", (0.5, 1.0)), ("0s", (0.0, 0.0)), ("1s:1s", (1.0, 1.0))],
)
def test_parse_wait(text: str, expected: tuple[float, float]) -> None:
    assert parse_wait(text) == expected


@pytest.mark.parametrize("text", ["2", "2s:1s", "x", "1s:", ":1s", "-1s"])
def test_parse_wait_refuses(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        parse_wait(text)


def test_quiescence_renders_min_after_the_last_change() -> None:
    q = Quiescence(2.0, 10.0)
    assert q.due() is None
    q.changed(100.0)
    assert q.due() == 102.0
    q.changed(101.5)
    assert q.due() == 103.5


def test_quiescence_renders_at_the_latest_max_after_the_first_change() -> None:
    q = Quiescence(2.0, 10.0)
    for t in range(100, 120):  # a change every second: never quiet for 2 s
        q.changed(float(t))
    assert q.due() == 110.0
    q.rendered()
    assert q.due() is None
    q.changed(130.0)
    assert q.due() == 132.0


# Atomic writes, only on change.


def test_write_if_changed_writes_new_and_changed_text_only(tmp_path: Path) -> None:
    dest = tmp_path / "upstreams.conf"
    assert write_if_changed(dest, "a\n") is True
    inode = dest.stat().st_ino
    mtime = dest.stat().st_mtime_ns
    assert write_if_changed(dest, "a\n") is False
    assert (dest.stat().st_ino, dest.stat().st_mtime_ns) == (inode, mtime)
    assert write_if_changed(dest, "b\n") is True
    assert dest.read_text() == "b\n"
    # Replaced by rename, not rewritten in place: a reader holding the old file keeps it whole.
    assert dest.stat().st_ino != inode
    assert [p.name for p in tmp_path.iterdir()] == ["upstreams.conf"]


def test_write_if_changed_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path) -> None:
    dest = tmp_path / "upstreams.conf"
    dest.write_text("old")
    os.chmod(dest, 0o600)
    write_if_changed(dest, "new")
    assert dest.stat().st_mode & 0o777 == 0o600


def test_write_if_changed_into_a_missing_directory_raises_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    with pytest.raises(OSError, match="missing"):
        write_if_changed(tmp_path / "missing" / "x.conf", "x")
    assert list(tmp_path.iterdir()) == []
