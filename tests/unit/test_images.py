"""Images a client sends: decoded, sniffed, limited; URLs fetched only as the setting allows."""

from __future__ import annotations

import asyncio
import base64
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from clinvk_core.config import ImageUrlPolicy
from clinvk_core.conversation import ImagePart
from clinvk_core.errors import InvalidRequest
from clinvk_core.images import ImageLoader, sniff

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
SIGNATURES = {
    "image/png": PNG,
    "image/jpeg": b"\xff\xd8\xff\xe0" + b"\x00" * 8,
    "image/gif": b"GIF89a" + b"\x00" * 8,
    "image/webp": b"RIFF\x00\x00\x00\x00WEBPVP8 ",
}


def loader(policy: ImageUrlPolicy = "off", **limits: Any) -> ImageLoader:
    return ImageLoader(**({"max_bytes": 1024, "max_images": 2, "policy": policy, "timeout": 2.0} | limits))


def load(images: ImageLoader, url: str) -> ImagePart:
    return asyncio.run(images.load(url, param="p"))


def refused(images: ImageLoader, url: str) -> str:
    with pytest.raises(InvalidRequest) as caught:
        load(images, url)
    assert caught.value.param == "p"
    return caught.value.message


@pytest.mark.parametrize(("media_type", "data"), SIGNATURES.items())
def test_each_kind_is_known_by_its_bytes(media_type: str, data: bytes) -> None:
    assert sniff(data) == media_type
    claimed = "image/png" if media_type != "image/png" else "image/jpeg"  # what a client claims does not matter
    url = f"data:{claimed};base64,{base64.b64encode(data).decode()}"
    assert load(loader(), url) == ImagePart(media_type, data)


def test_not_an_image_riff_is_not_webp() -> None:
    assert sniff(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None


def test_limits() -> None:
    big = "data:image/png;base64," + base64.b64encode(PNG + b"\x00" * 2000).decode()
    assert "larger than the limit of 1024 bytes" in refused(loader(), big)
    images = loader()
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    load(images, url)
    load(images, url)
    assert "Too many images: the limit is 2" in refused(images, url)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("location", "/cat.png")
                self.end_headers()
                return
            body = PNG + (b"\x00" * 4096 if self.path == "/big.png" else b"")
            self.send_response(200)
            self.send_header("content-type", "image/png; charset=binary")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_off_refuses_every_url_saying_how_to_enable(server: str) -> None:
    assert "CLINVK_IMAGE_URLS=public" in refused(loader("off"), f"{server}/cat.png")


def test_any_fetches_from_loopback_over_http(server: str) -> None:
    assert load(loader("any"), f"{server}/cat.png") == ImagePart("image/png", PNG)
    assert "larger than the limit" in refused(loader("any"), f"{server}/big.png")
    assert "HTTP 302" in refused(loader("any"), f"{server}/moved")  # redirects are not followed


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/cat.png",  # loopback
        "https://localhost/cat.png",
        "https://10.1.2.3/cat.png",  # private
        "https://192.168.0.1/cat.png",
        "https://169.254.169.254/latest/meta-data",  # link-local: the cloud metadata service
        "https://[::1]/cat.png",
        "https://[fd00::1]/cat.png",
        "https://0.0.0.0/cat.png",
    ],
)
def test_public_never_fetches_from_a_private_loopback_or_link_local_address(url: str) -> None:
    assert "private or reserved address" in refused(loader("public"), url)


def test_public_needs_https(server: str) -> None:
    assert "must use https" in refused(loader("public"), f"{server}/cat.png")
