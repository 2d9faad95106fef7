"""Generate the Python contracts from protos/, or check that the committed ones are current.

python -m dripiq_devtools.protos            # regenerate into libs/common/src
python -m dripiq_devtools.protos --check    # exit 1 when regenerating would change anything
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.util
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

REPO = Path(__file__).resolve().parents[4]
PROTO_ROOT = REPO / "protos"
OUTPUT_ROOT = REPO / "libs" / "common" / "src"
GENERATED_PACKAGE = "dripiq"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(output_root: Path) -> None:
    well_known = resources.files("grpc_tools") / "_proto"
    # google/rpc/*.proto ship with googleapis-common-protos, beside their generated modules.
    status_spec = importlib.util.find_spec("google.rpc.status_pb2")
    if status_spec is None or status_spec.origin is None:
        raise SystemExit("googleapis-common-protos is not installed (google.rpc.status_pb2 not found)")
    googleapis = Path(status_spec.origin).parents[2]
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"-I{googleapis}",
        f"--python_out={output_root}",
        f"--pyi_out={output_root}",
        f"--grpc_python_out={output_root}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Every generated folder is a regular package so imports never depend on namespace lookup.
    for folder in {p.parent for p in (output_root / GENERATED_PACKAGE).rglob("*_pb2.py")}:
        while folder != output_root:
            init = folder / "__init__.py"
            if not init.exists():
                init.write_text("")
            folder = folder.parent


def generated_files(root: Path) -> set[Path]:
    base = root / GENERATED_PACKAGE
    return {
        p.relative_to(root)
        for p in base.rglob("*")
        if p.is_file() and (p.name.endswith(GENERATED_SUFFIXES) or p.name == "__init__.py")
    }


def check() -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        (fresh / GENERATED_PACKAGE).mkdir()
        (fresh / GENERATED_PACKAGE / "__init__.py").write_text(
            (OUTPUT_ROOT / GENERATED_PACKAGE / "__init__.py").read_text()
        )
        generate(fresh)
        expected, actual = generated_files(fresh), generated_files(OUTPUT_ROOT)
        problems = [f"missing: {p}" for p in sorted(expected - actual)]
        problems += [f"stale (no proto generates it): {p}" for p in sorted(actual - expected)]
        problems += [
            f"differs: {p}"
            for p in sorted(expected & actual)
            if not filecmp.cmp(fresh / p, OUTPUT_ROOT / p, shallow=False)
        ]
        return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the generated code is stale")
    if parser.parse_args().check:
        problems = check()
        if problems:
            print("generated contracts are stale; run `make protos`:", *problems, sep="\n  ")
            sys.exit(1)
        print("generated contracts are current")
        return
    generate(OUTPUT_ROOT)
    print(f"generated contracts under {OUTPUT_ROOT / GENERATED_PACKAGE}")


if __name__ == "__main__":
    main()
