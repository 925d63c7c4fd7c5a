"""Joining Ray: a local instance by default, a cluster with ``address``; a clear error when Ray is absent or unreachable.

Ray is the optional ``distributed`` extra: nothing here imports it at module load.
"""

from __future__ import annotations

import socket
from typing import Any

CONNECT_TIMEOUT_S = 3.0
"""how long to wait for a cluster's head node to answer before giving up"""


def available() -> bool:
    """True when Ray is installed."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def require(what: str) -> Any:
    """The ``ray`` module, or a ValueError that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ValueError(f"{what} needs Ray: pip install 'hyperrl[distributed]'") from err
    return ray


def check_address(address: str) -> None:
    """Fail now, not mid-run, when nothing listens at ``address`` (``host:port`` or ``ray://host:port``).

    ``auto`` (the cluster this machine belongs to) is left to ``ray.init`` to find.
    """
    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--address must be HOST:PORT, ray://HOST:PORT or auto, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise ValueError(f"--address {address}: no Ray head node answers there ({err})") from err


def connect(address: str | None, *, num_cpus: int | None = None, what: str = "this command") -> Any:
    """Ray, initialised: the running instance if there is one, else the cluster at ``address``, else a local one.

    A local instance gets ``num_cpus`` CPUs (all when None); joining a cluster takes its resources as they are.
    """
    ray = require(what)
    if ray.is_initialized():
        return ray
    if address is not None:
        check_address(address)
    try:
        if address is None:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except ConnectionError as err:
        raise ValueError(f"--address {address}: could not join the Ray cluster ({err})") from err
    return ray
