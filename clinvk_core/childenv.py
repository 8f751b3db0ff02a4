"""The CLI's environment, built from an allowlist: nothing of the gateway's leaks to the child.

Never passed: AWS credentials (``AWS_*``), the gateway's own settings and keys
(``CLINVK_*``), another backend's credentials, or anything not listed here.
"""

from __future__ import annotations

from collections.abc import Mapping

from clinvk_core.backends import Backend, Invocation, RunPaths

# What any program needs to run: where binaries are, locale, time zone, TLS trust, proxies.
BASE_ALLOWLIST = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "NODE_EXTRA_CA_CERTS",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    }
)


def child_environment(
    source: Mapping[str, str],
    backend: Backend,
    invocation: Invocation,
    paths: RunPaths,
    *,
    upstream_configured: bool,
) -> dict[str, str]:
    """The allowlisted part of ``source``, then the backend's own variables on top."""
    env = {k: v for k, v in source.items() if k in BASE_ALLOWLIST or k.startswith("LC_")}
    if not upstream_configured:  # the CLI's own login, as the user configured it
        env |= {k: source[k] for k in backend.passthrough_env if k in source}
    env["TMPDIR"] = str(paths.tmp)
    env |= invocation.env
    return env
