"""Talking to Qualcomm AI Hub through qai-hub: the connection and the device list.

qai_hub is imported here, inside functions, never at module level: it pulls in
requests, protobuf and more, and the dashboard must start without it (and offline).
Every call that can reach the network runs inside `hub_calls()`, which turns qai_hub's
exceptions into HubError.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from antinet_tui.exit_codes import Exit
from antinet_tui.hub.errors import HubError, from_qai_hub


def import_qai_hub() -> Any:
    try:
        import qai_hub
    except ImportError as exc:
        raise HubError(f"qai-hub is not installed ({exc}): pip install qai-hub",
                       exit_code=Exit.NOT_CONFIGURED) from exc
    return qai_hub


@contextlib.contextmanager
def hub_calls() -> Iterator[None]:
    """Run qai_hub calls; their failures come out as HubError."""
    qai_hub = import_qai_hub()
    import requests  # a dependency of qai-hub

    try:
        yield
    except (qai_hub.Error, requests.RequestException) as exc:
        raise from_qai_hub(exc) from exc


def connect() -> Any:
    """A qai_hub.Client with its configuration loaded (so a missing token fails here).

    qai-hub's own progress printing is turned off: stdout is for our results.
    """
    qai_hub = import_qai_hub()
    client = qai_hub.Client()
    with hub_calls():
        client.config.verbose = False
    return client


@dataclass(frozen=True)
class DeviceRow:
    name: str
    os: str  # version, e.g. "11" or "14"
    attributes: tuple[str, ...]  # "key:value"

    def values(self, key: str) -> list[str]:
        prefix = key + ":"
        return [a[len(prefix):] for a in self.attributes if a.startswith(prefix)]

    def as_record(self) -> dict[str, Any]:
        return {"name": self.name, "os": self.os, "attributes": list(self.attributes)}


def list_devices(client: Any, name: str = "", os_version: str = "",
                 attributes: list[str] | None = None) -> list[DeviceRow]:
    """Hosted devices matching the filters, sorted by name.

    `attributes` ("chipset:…", "os:android", "framework:qnn") are AI Hub's own filter;
    `name` matches as a case-insensitive substring and `os_version` exactly, here
    (AI Hub wants an exact name, and refuses an OS version on its own).
    """
    with hub_calls():
        devices = client.get_devices(attributes=attributes or [])
    rows = [DeviceRow(d.name, d.os, tuple(d.attributes)) for d in devices]
    rows = [r for r in rows if name.lower() in r.name.lower()
            and (not os_version or r.os == os_version)]
    return sorted(rows, key=lambda r: (r.name, r.os))


def find_device(client: Any, name: str) -> Any:
    """The qai_hub.Device with exactly this name, or a HubError suggesting near names."""
    qai_hub = import_qai_hub()
    with hub_calls():
        exact = client.get_devices(name=name)
    if exact:
        return qai_hub.Device(name=exact[0].name)  # no OS: AI Hub picks the newest
    near = [r.name for r in list_devices(client, name=name.split()[0] if name.split() else name)]
    hint = f" Similar names: {', '.join(sorted(set(near))[:8])}." if near else ""
    raise HubError(
        f"No Qualcomm AI Hub device is named {name!r}.{hint} "
        "List them with: antinet-tui hub devices --name <part of a name>", exit_code=Exit.USAGE)
