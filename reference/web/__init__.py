"""The control plane: one HTTPS listener with the admin API, the control panel, /metrics,
/healthz and /readyz."""

from reference.web.server import MAX_BODY, WebServer

__all__ = ["MAX_BODY", "WebServer"]
