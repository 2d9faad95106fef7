"""dripiq-dev: local development commands.

python -m dripiq_devtools run                     # the whole suite (make run)
python -m dripiq_devtools revision SERVICE -m MSG # autogenerate a migration on a scratch server

Migrations are applied by `python -m dripiq_common.migrations` (make migrate), the command the
migration Jobs run in the images; `run` applies them to its own server at start.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from alembic import command

from dripiq_common import migrations
from dripiq_devtools.servers import EmbeddedPostgres

REPO = Path(__file__).resolve().parents[4]


def cmd_revision(service: str, message: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", temporary=True).start()
        try:
            config = migrations.alembic_config(service, pg.url)
            location = REPO / "services" / service / "src" / f"dripiq_{service}" / "migrations"
            config.set_main_option("script_location", str(location))
            command.upgrade(config, "head")
            versions = location / "versions"
            rev_id = f"{len(list(versions.glob('*.py'))) + 1:04d}"
            command.revision(config, message=message, autogenerate=True, rev_id=rev_id)
        finally:
            pg.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="dripiq-dev", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the whole suite locally")
    rev = sub.add_parser("revision", help="autogenerate a migration for one service")
    rev.add_argument("service", choices=migrations.SERVICES)
    rev.add_argument("-m", "--message", required=True)
    args = parser.parse_args()
    if args.command == "run":
        from dripiq_devtools.running import main as run_suite

        run_suite()
    else:
        cmd_revision(args.service, args.message)


if __name__ == "__main__":
    main()
