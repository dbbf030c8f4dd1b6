"""Run the `tfx serve` app with uvicorn: our access log instead of uvicorn's (which would log
client addresses and full request paths), no server header, a socket bound before serving."""

from __future__ import annotations

import socket
from typing import Any

from transfusion_cli.deploy.serve.settings import ServeSettings
from transfusion_cli.errors import ConfigError

LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain",
                            "stream": "ext://sys.stderr"}},
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
        "tfx.serve": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one); ConfigError if refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that name it (without
    # it, Nagle + delayed ACKs add 40 ms to every response).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another "
                          "--port, or stop what uses it.") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def make_server(app, sock: socket.socket):
    """A uvicorn Server for ``app`` on the bound ``sock`` (call ``.run(sockets=[sock])``)."""
    import uvicorn

    config = uvicorn.Config(app, access_log=False, log_config=LOG_CONFIG, server_header=False,
                            proxy_headers=False, timeout_keep_alive=5, lifespan="off",
                            fd=None)
    return uvicorn.Server(config)


def serve(settings: ServeSettings, announce=print) -> None:
    """Load the model, bind, announce the URL, serve until interrupted."""
    from transfusion_cli.deploy.serve.app import create_app

    app = create_app(settings)
    sock = bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    announce(f"serving {settings.model.name} on http://{shown}:{port}/ (API docs: /docs; "
             f"{'bearer token required' if settings.auth_required else 'no token'}); "
             "Ctrl-C stops.")
    make_server(app, sock).run(sockets=[sock])
