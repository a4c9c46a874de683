"""The embedded local Ray and the embedded MLflow server listen on loopback only: every
listening TCP socket of their processes (found through /proc: the sockets of each process's
file descriptors, matched with /proc/net/tcp and tcp6) is bound to 127.0.0.1 or ::1 (or
127.0.0.1 as an IPv4-mapped address on an IPv6 socket), never to all interfaces."""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc"),
]


def _address(hexaddr: str) -> tuple[str, int]:
    ip, port = hexaddr.split(":")
    raw = bytes.fromhex(ip)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1]), int(port, 16)
    # /proc writes an IPv6 address as four host-order 32-bit words.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words), int(port, 16)


def _listening() -> dict[int, tuple[str, int]]:
    """{socket inode: (address, port)} of every listening TCP socket."""
    out = {}
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                out[int(fields[9])] = _address(fields[1])
    return out


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(p.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _with_text(text: str) -> set[int]:
    """Processes whose command line holds ``text`` (Ray's processes name their session)."""
    pids = set()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if text in (p / "cmdline").read_bytes().decode(errors="replace"):
                    pids.add(int(p.name))
            except OSError:
                continue
    return pids


def listening_sockets(pids: set[int]) -> list[tuple[int, str, str, int]]:
    """``(pid, command, address, port)`` of each listening TCP socket the processes hold."""
    table = _listening()
    out = []
    for pid in sorted(pids):
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            # The program's own name first: a long venv path would otherwise push it out of the
            # shortened text (CI's venv lives under a mktemp folder).
            command = " ".join([Path(argv[0]).name, *argv[1:]])[:80]
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:[") and int(link[8:-1]) in table:
                out.append((pid, command, *table[int(link[8:-1])]))
    return out


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def test_is_loopback_reads_proc_addresses():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.0.2.2")
    assert _address("0100007F:1F90") == ("127.0.0.1", 8080)
    assert _address("00000000000000000000000001000000:0050") == ("::1", 80)


@pytest.mark.slow
def test_the_local_ray_listens_on_loopback_only():
    import ray

    from study.search.tune import _init_ray

    assert not ray.is_initialized()
    assert _init_ray(None)
    try:

        @ray.remote
        def node_ip() -> str:
            return ray.util.get_node_ip_address()

        assert ray.get([node_ip.remote() for _ in range(2)]) == ["127.0.0.1"] * 2  # workers started too
        time.sleep(2)  # agents that start late
        session = Path(ray._private.worker._global_node.get_session_dir_path()).name
        pids = _descendants(os.getpid()) | _with_text(session) | {os.getpid()}
        sockets = listening_sockets(pids)
    finally:
        ray.shutdown()
    commands = " | ".join(command for _, command, _, _ in sockets)
    for part in ("gcs_server", "raylet", "RuntimeEnvAgent"):
        assert part in commands, f"no listening socket of {part} found: {sockets}"
    assert [(pid, command) for pid, command, *_ in sockets if pid == os.getpid()], "the driver's server"
    wide = [s for s in sockets if not is_loopback(s[2])]
    assert not wide, f"listening beyond loopback: {wide}"


@pytest.mark.slow
def test_the_embedded_mlflow_server_listens_on_loopback_only(tmp_path, monkeypatch):
    from study.tracking.server import local_tracking_uri

    monkeypatch.setenv("FREQSTUDY_HOME", str(tmp_path))
    with local_tracking_uri(None) as uri:
        assert uri.startswith("http://127.0.0.1:")
        # The server started here (its command line names the store) and its workers.
        server = _descendants(os.getpid()) & _with_text(str(tmp_path))
        sockets = listening_sockets(server | {c for p in server for c in _descendants(p)})
    assert int(uri.rsplit(":", 1)[1]) in {port for *_, port in sockets}, sockets
    wide = [s for s in sockets if not is_loopback(s[2])]
    assert not wide, f"listening beyond loopback: {wide}"
