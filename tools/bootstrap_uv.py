"""Install the pinned uv into a private folder, using only the Python standard library.

    python3.11 tools/bootstrap_uv.py .tools 0.13.9

First choice: a virtual environment with pip. A fresh Debian Python may lack ensurepip
(python3-venv is a separate package), so the fallback fetches uv's wheel from the package
index with urllib, checks it against the sha256 pinned below, and unpacks the binary.
"""

from __future__ import annotations

import hashlib
import html
import os
import platform
import re
import shutil
import subprocess
import sys
import urllib.request
import venv
import zipfile
from pathlib import Path

INDEX = os.environ.get("UV_BOOTSTRAP_INDEX", "https://pypi.org/simple")
WHEELS = {
    "0.13.9": {
        "x86_64": (
            "uv-0.13.9-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19",
        ),
        "aarch64": (
            "uv-0.13.9-py3-none-manylinux_2_28_aarch64.whl",
            "ecb6028d79dc96fbeafffe5c8af62a7099487ebc05a701e76714eebcffd06375",
        ),
    }
}


def with_pip(tools: Path, version: str) -> bool:
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(tools)
    except Exception as exc:  # ensurepip missing or broken on this Python
        print(f"bootstrap: no venv with pip here ({exc}); fetching the uv wheel instead")
        return False
    pip = [str(tools / "bin" / "python"), "-m", "pip", "install", "--quiet", f"uv=={version}"]
    return subprocess.run(pip, check=False).returncode == 0


def from_wheel(tools: Path, version: str) -> None:
    arch = platform.machine()
    try:
        filename, sha256 = WHEELS[version][arch]
    except KeyError:
        sys.exit(f"bootstrap: no pinned uv {version} wheel for {arch}; install uv=={version} by hand")
    with urllib.request.urlopen(f"{INDEX}/uv/", timeout=60) as response:
        page = response.read().decode()
    links = re.findall(r'href="([^"]+)"', page)
    url = next((html.unescape(link) for link in links if f"/{filename}#" in link), None)
    if url is None:
        sys.exit(f"bootstrap: {filename} is not listed at {INDEX}/uv/")
    with urllib.request.urlopen(url, timeout=300) as response:
        data = response.read()
    if hashlib.sha256(data).hexdigest() != sha256:
        sys.exit(f"bootstrap: {filename} does not match its pinned sha256; refusing to use it")
    wheel = tools / filename
    tools.mkdir(parents=True, exist_ok=True)
    wheel.write_bytes(data)
    (tools / "bin").mkdir(exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.endswith(("/scripts/uv", "/scripts/uvx")):
                target = tools / "bin" / Path(name).name
                target.write_bytes(archive.read(name))
                target.chmod(0o755)
    wheel.unlink()


def main() -> None:
    tools, version = Path(sys.argv[1]), sys.argv[2]
    if not with_pip(tools, version):
        shutil.rmtree(tools, ignore_errors=True)
        from_wheel(tools, version)
    uv = tools / "bin" / "uv"
    if not uv.exists():
        sys.exit("bootstrap: uv was not installed")
    print(subprocess.run([str(uv), "--version"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
