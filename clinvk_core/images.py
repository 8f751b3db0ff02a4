"""Images a client sends: ``data:`` URLs decoded, ``http(s)`` URLs fetched only when a setting allows it.

Every image is checked the same way whatever wire format brought it: a kind every CLI reads (PNG,
JPEG, GIF, WebP, recognised by its bytes, not by what the client claims), a size limit, a count
limit. Fetching (``CLINVK_IMAGE_URLS``) is off by default; ``public`` fetches over HTTPS from public
addresses only, checked after DNS resolution and connected to by that very address (no rebinding);
``any`` also fetches over plain HTTP and from private and loopback addresses (trusted networks, tests).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import socket
from urllib.parse import urlsplit

from clinvk_core.config import ImageUrlPolicy
from clinvk_core.conversation import ImagePart
from clinvk_core.errors import InvalidRequest

MEDIA_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),  # after "RIFF" and the size
)


def sniff(data: bytes) -> str | None:
    """The media type ``data`` really is, among those every CLI reads; None for anything else."""
    for signature, offset, media_type in _SIGNATURES:
        if data[offset : offset + len(signature)] == signature and (offset == 0 or data.startswith(b"RIFF")):
            return media_type
    return None


class ImageLoader:
    """Loads the images of one request, counting them against the per-request limit."""

    def __init__(self, *, max_bytes: int, max_images: int, policy: ImageUrlPolicy, timeout: float) -> None:
        self.max_bytes = max_bytes
        self.max_images = max_images
        self.policy = policy
        self.timeout = timeout
        self._count = 0

    async def load(self, url: str, *, param: str) -> ImagePart:
        """The image at ``url`` (a data URL, or http(s) when allowed)."""
        self._counted(param)
        if url[:5].lower() == "data:":
            return self._decoded(*_split_data_url(url, param), param=param)
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise InvalidRequest(
                "An image URL must be a data: URL (or http(s), when this gateway fetches images).", param=param
            )
        if self.policy == "off":
            raise InvalidRequest(
                "This gateway does not fetch image URLs: send the image inline as a data: URL "
                "(data:image/png;base64,...), or ask its operator to set CLINVK_IMAGE_URLS=public.",
                param=param,
            )
        if self.policy == "public" and scheme != "https":
            raise InvalidRequest("Image URLs must use https.", param=param)
        return await self._fetch(url, param)

    def from_base64(self, media_type: str, data: str, *, param: str) -> ImagePart:
        """An image given as base64 text and its claimed media type (Anthropic's base64 source)."""
        self._counted(param)
        return self._decoded(media_type, data, param=param)

    def _counted(self, param: str) -> None:
        self._count += 1
        if self._count > self.max_images:
            raise InvalidRequest(f"Too many images: the limit is {self.max_images} per request.", param=param)

    def _decoded(self, media_type: str, data: str, *, param: str) -> ImagePart:
        if media_type.lower() not in MEDIA_TYPES:
            raise InvalidRequest(
                f"Unsupported image type {media_type[:50]!r}: use one of {', '.join(MEDIA_TYPES)}.", param=param
            )
        if len(data) * 3 // 4 > self.max_bytes:
            raise self._too_large(param)
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("The image is not valid base64.", param=param) from None
        return self._checked(raw, param)

    def _checked(self, raw: bytes, param: str) -> ImagePart:
        if len(raw) > self.max_bytes:
            raise self._too_large(param)
        media_type = sniff(raw)
        if media_type is None:
            raise InvalidRequest(f"The image is not a {', '.join(MEDIA_TYPES)} file.", param=param)
        return ImagePart(media_type, raw)

    def _too_large(self, param: str) -> InvalidRequest:
        return InvalidRequest(f"An image is larger than the limit of {self.max_bytes} bytes.", param=param)

    async def _fetch(self, url: str, param: str) -> ImagePart:
        import httpx  # only a gateway that fetches images pays for it

        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = await self._resolve(host, port, param)
        # Connect to the address that was checked, naming the host for TLS and HTTP.
        target = parts._replace(netloc=f"[{address}]:{port}" if ":" in address else f"{address}:{port}").geturl()
        headers = {"host": parts.netloc.rsplit("@", 1)[-1], "accept": ", ".join(MEDIA_TYPES)}
        try:
            async with (
                httpx.AsyncClient(timeout=self.timeout, follow_redirects=False, trust_env=False) as client,
                client.stream("GET", target, headers=headers, extensions={"sni_hostname": host}) as response,
            ):
                if response.status_code != 200:
                    raise InvalidRequest(f"Fetching the image failed: HTTP {response.status_code}.", param=param)
                claimed = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if claimed not in MEDIA_TYPES:
                    raise InvalidRequest(
                        f"The image URL served {claimed[:50] or 'no content type'!r}, not an image.", param=param
                    )
                raw = bytearray()
                async for chunk in response.aiter_bytes():
                    raw += chunk
                    if len(raw) > self.max_bytes:
                        raise self._too_large(param)
        except httpx.HTTPError as error:
            raise InvalidRequest(f"Fetching the image failed: {type(error).__name__}.", param=param) from None
        return self._checked(bytes(raw), param)

    async def _resolve(self, host: str, port: int, param: str) -> str:
        """The address to connect to; under ``public``, never a private, loopback, link-local or reserved one."""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise InvalidRequest(f"The image host {host[:100]!r} could not be resolved.", param=param) from None
        addresses = [str(info[4][0]) for info in infos]
        if self.policy == "public" and any(not ipaddress.ip_address(a).is_global for a in addresses):
            raise InvalidRequest(
                f"The image host {host[:100]!r} resolves to a private or reserved address: not fetched.", param=param
            )
        return addresses[0]


def _split_data_url(url: str, param: str) -> tuple[str, str]:
    """(media type, base64 payload) of a ``data:<type>;base64,<payload>`` URL."""
    header, comma, payload = url[5:].partition(",")
    fields = header.split(";")
    if not comma or "base64" not in (f.strip().lower() for f in fields[1:]):
        raise InvalidRequest("An image data: URL must be base64: data:image/png;base64,....", param=param)
    return fields[0].strip(), payload.strip()
