"""Shared by the `tfx serve` tests: a live uvicorn server on a free loopback port in a thread
(the quick-start model it serves is the ``synthetic_model`` fixture, tests/deploy/conftest.py)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from transfusion_cli.deploy.serve.app import create_app
from transfusion_cli.deploy.serve.runner import bind, make_server
from transfusion_cli.deploy.serve.settings import ServeSettings


@dataclass(frozen=True)
class SyntheticModel:
    """An exported synthetic-retina model (with test metrics in its card) and test images."""

    model: Path
    images: tuple[Path, ...]


@contextmanager
def live_server(settings: ServeSettings, classifier=None) -> Iterator[str]:
    """Serve ``settings`` (its host and port are replaced by 127.0.0.1 and a free port) with
    uvicorn in a thread; yields the base URL."""
    app = create_app(settings, classifier)
    sock = bind("127.0.0.1", 0)
    server = make_server(app, sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def settings_for(model: Path, **changes) -> ServeSettings:
    """ServeSettings for ``model`` with ``changes``."""
    return dataclasses.replace(ServeSettings(model=model), **changes)
