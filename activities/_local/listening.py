"""What a process listens on, read from ``/proc`` (Linux): the local endpoint's bind check.

:class:`activities.local.LocalStepFunctions` asks, once LocalStack is ready, which TCP
sockets listen on its port or belong to its process group, and refuses to run it if any
listens on an address other than loopback. Where ``/proc/net/tcp`` cannot be read (macOS,
BSD), :func:`listeners` answers ``None`` and the check is skipped.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path

__all__ = ["PROC", "is_loopback", "listeners", "listening_sockets"]

#: Where the kernel's process and network tables are mounted.
PROC = Path("/proc")

#: The state ``/proc/net/tcp`` shows for a listening socket (``TCP_LISTEN``).
_LISTEN = "0A"


def listening_sockets(proc: Path | None = None) -> list[tuple[str, int, int]] | None:
    """The listening TCP sockets of this network namespace, as ``(host, port, inode)``.

    Args:
        proc: where ``/proc`` is; :data:`PROC` by default.

    Returns:
        IPv4 and IPv6 sockets, hosts written as ``inet_ntop`` writes them; ``None`` if
        neither ``net/tcp`` nor ``net/tcp6`` can be read.
    """
    proc = proc if proc is not None else PROC
    sockets: list[tuple[str, int, int]] = []
    readable = False
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:  # noqa: PLR2004 - the inode's column
                continue
            host_hex, port_hex = fields[1].split(":")
            sockets.append((_host(host_hex), int(port_hex, 16), int(fields[9])))
    return sockets if readable else None


def _host(hex_address: str) -> str:
    """An address as ``/proc/net/tcp*`` prints it: 32-bit words in the machine's byte order."""
    packed = bytes.fromhex(hex_address)
    if sys.byteorder == "little":
        packed = b"".join(packed[i : i + 4][::-1] for i in range(0, len(packed), 4))
    family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6  # noqa: PLR2004 - IPv4
    return socket.inet_ntop(family, packed)


def _group_socket_inodes(pgid: int, proc: Path) -> set[int]:
    """The inodes of the sockets open in the processes of process group ``pgid``."""
    inodes: set[int] = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # After the command's closing parenthesis: state, parent pid, process group.
            group = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2])
            if group != pgid:
                continue
            for fd in (entry / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(int(target[len("socket:[") : -1]))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or not ours to read
    return inodes


def listeners(port: int, pgid: int, proc: Path | None = None) -> list[tuple[str, int]] | None:
    """Where something listens on ``port``, or a process of group ``pgid`` listens at all.

    Args:
        port: the port to report whoever listens on it.
        pgid: the process group whose every listening socket is reported.
        proc: where ``/proc`` is; :data:`PROC` by default.

    Returns:
        Sorted ``(host, port)`` pairs; ``None`` where ``/proc`` has no TCP tables.
    """
    proc = proc if proc is not None else PROC
    sockets = listening_sockets(proc)
    if sockets is None:
        return None
    inodes = _group_socket_inodes(pgid, proc)
    return sorted({(host, at) for host, at, inode in sockets if at == port or inode in inodes})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address) is a loopback address, IPv4-mapped ones included."""
    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
