"""`kositp demo` as processes: each stage runs in a child, and Ctrl-C while serving stops everything cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from kositp.demo import call_in_child
from kositp.errors import KositpError
from kositp.serve.process import free_port
from kositp.ui.config import read_api_key


def test_a_stage_runs_in_another_process_and_returns_its_result():
    assert call_in_child(os.getpid) != os.getpid()
    assert call_in_child(json.loads, '{"scores": [0.5, 1]}') == {"scores": [0.5, 1]}


def test_a_user_error_in_the_child_is_the_same_one_line_error_here(tmp_path):
    with pytest.raises(KositpError, match=r"^API key file not found: .*missing\.txt$"):
        call_in_child(read_api_key, tmp_path / "missing.txt")


def test_a_crash_in_the_child_names_the_function():
    with pytest.raises(KositpError, match=r"loads failed in its child process \(exit code 1\)"):
        call_in_child(json.loads, "{not json")


def kositp_children(pid: int) -> dict[int, str]:
    """Direct children of `pid` that run a kositp command, with their command line (from /proc)."""
    found = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            cmdline = (status.parent / "cmdline").read_text().replace("\0", " ")
        except OSError:
            continue  # the process ended while we looked
        if fields.get("PPid", "").strip() == str(pid) and "kositp.cli" in cmdline:
            found[int(status.parent.name)] = cmdline
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_while_serving_stops_both_servers_and_exits_130(tmp_path):
    api_port, ui_port = free_port(), free_port()
    log_path = tmp_path / "demo.log"
    with log_path.open("wb") as log:
        # A session of its own: SIGINT to its process group is what a terminal's Ctrl-C sends.
        demo = subprocess.Popen(
            [sys.executable, "-m", "kositp.cli", "demo", "--quick", "--out", str(tmp_path / "demo"),
             "--eval-limit", "2", "--api-port", str(api_port), "--ui-port", str(ui_port)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 900
        while "Ctrl-C stops both." not in log_path.read_text(errors="replace"):
            assert demo.poll() is None, "the demo ended before serving:\n" + log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the demo did not reach serving within 15 minutes"
            time.sleep(1)
        servers = kositp_children(demo.pid)
        assert sorted(cmd.split("kositp.cli ")[1].split()[0] for cmd in servers.values()) == ["serve", "ui"], servers
        deadline = time.monotonic() + 120
        while True:  # the chat page answers
            try:
                if httpx.get(f"http://127.0.0.1:{ui_port}/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the chat page never answered"
            time.sleep(0.5)
        # The stages ran in children: the demo process itself never loaded torch.
        assert "libtorch" not in Path(f"/proc/{demo.pid}/maps").read_text()

        os.killpg(demo.pid, signal.SIGINT)
        code = demo.wait(timeout=90)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    output = log_path.read_text(errors="replace")
    tail = output[output.index("Ctrl-C stops both."):]
    assert code == 130, tail
    assert re.search(r"^stopped: the API server and the chat page are shut down$", tail, re.M), tail
    assert "Traceback" not in tail and "error:" not in tail and "unexpectedly" not in tail, tail
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in servers):  # both stopped by the demo before it exited
        assert time.monotonic() < deadline, [pid for pid in servers if alive(pid)]
        time.sleep(0.2)
