"""Reading what a process listens on from /proc: the local endpoint's bind check."""

from __future__ import annotations

import os
import socket
import sys
from typing import TYPE_CHECKING

import pytest

from activities._local.listening import is_loopback, listeners, listening_sockets

if TYPE_CHECKING:
    from pathlib import Path

HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode\n"
)

#: Every IPv4 interface, as the tables show it (data here: nothing binds to it).
ANY = "0.0.0.0"  # noqa: S104


def row(host: str, port: int, inode: int, state: str = "0A") -> str:
    """A line of /proc/net/tcp{,6} as the kernel prints it: 32-bit words in host order."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    packed = socket.inet_pton(family, host)
    words = "".join(
        f"{int.from_bytes(packed[i : i + 4], sys.byteorder):08X}" for i in range(0, len(packed), 4)
    )
    remote = "0" * len(words)
    return (
        f"   0: {words}:{port:04X} {remote}:0000 {state} 00000000:00000000 00:00000000 "
        f"00000000  1000        0 {inode} 1 0000000000000000 100 0 0 10 0\n"
    )


def fake_proc(tmp_path: Path, tcp: list[str], tcp6: list[str] | None = None) -> Path:
    """A /proc with the given TCP tables and no processes."""
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(HEADER + "".join(tcp))
    if tcp6 is not None:
        (tmp_path / "net" / "tcp6").write_text(HEADER + "".join(tcp6))
    return tmp_path


def fake_process(proc: Path, pid: int, pgid: int, inodes: list[int]) -> None:
    """A process of group ``pgid`` in a fake /proc, holding sockets with these inodes."""
    (proc / str(pid) / "fd").mkdir(parents=True)
    (proc / str(pid) / "stat").write_text(f"{pid} (python (x)) S 1 {pgid} {pgid} 0 -1\n")
    for fd, inode in enumerate(inodes):
        os.symlink(f"socket:[{inode}]", proc / str(pid) / "fd" / str(fd))
    os.symlink("/dev/null", proc / str(pid) / "fd" / "99")


class TestListeningSockets:
    def test_reads_ipv4_and_ipv6_listeners(self, tmp_path: Path) -> None:
        """Hosts, ports and inodes of listening sockets; connected ones are left out."""
        proc = fake_proc(
            tmp_path,
            [row("127.0.0.1", 8080, 11), row(ANY, 2024, 12), row("10.1.2.3", 22, 13, "01")],
            [row("::1", 8080, 21), row("::", 443, 22)],
        )
        assert listening_sockets(proc) == [
            ("127.0.0.1", 8080, 11),
            (ANY, 2024, 12),
            ("::1", 8080, 21),
            ("::", 443, 22),
        ]

    def test_none_without_tcp_tables(self, tmp_path: Path) -> None:
        """A system without /proc/net/tcp (macOS) answers None: nothing could be checked."""
        assert listening_sockets(tmp_path) is None
        assert listeners(8080, 1, tmp_path) is None

    def test_reads_this_machine(self) -> None:
        """A socket this test listens on shows in the real /proc/net/tcp."""
        if not os.path.exists("/proc/net/tcp"):
            pytest.skip("no /proc/net/tcp on this system")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            port = sock.getsockname()[1]
            found = listening_sockets()
        assert found is not None
        assert ("127.0.0.1", port) in {(host, at) for host, at, _ in found}


class TestListeners:
    def test_the_port_and_the_groups_sockets(self, tmp_path: Path) -> None:
        """Whoever listens on the port, and every socket the process group listens on."""
        proc = fake_proc(
            tmp_path,
            [row("127.0.0.1", 4566, 1), row(ANY, 53, 2), row(ANY, 2024, 3)],
            [row("::", 4566, 4)],
        )
        fake_process(proc, 100, 100, [1, 2])
        fake_process(proc, 101, 100, [])
        fake_process(proc, 200, 200, [3])
        assert listeners(4566, 100, proc) == [(ANY, 53), ("127.0.0.1", 4566), ("::", 4566)]

    def test_a_process_gone_meanwhile_is_skipped(self, tmp_path: Path) -> None:
        """A /proc entry without a readable stat does not stop the check."""
        proc = fake_proc(tmp_path, [row("127.0.0.1", 4566, 1)])
        (proc / "300").mkdir()
        (proc / "self").mkdir()
        assert listeners(4566, 300, proc) == [("127.0.0.1", 4566)]


class TestIsLoopback:
    @pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"])
    def test_loopback(self, host: str) -> None:
        """Loopback addresses, IPv4-mapped ones included."""
        assert is_loopback(host)

    @pytest.mark.parametrize("host", [ANY, "::", "192.0.2.2", "::ffff:0.0.0.0", "fe80::1"])
    def test_not_loopback(self, host: str) -> None:
        """Every interface, and any other address, is not."""
        assert not is_loopback(host)
