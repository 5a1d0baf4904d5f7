"""The AdLens command line: ``python -m core COMMAND`` (see ``core/cli_app.py``)."""

from __future__ import annotations

# each module registers its commands on the shared app when imported
from core.cli_app import app
from core.commands import audience, bench, detector, foundation, regions  # noqa: F401
from core.commands import matching as _matching  # noqa: F401
from core.commands import retrieval as _retrieval  # noqa: F401


def main() -> None:
    app()


if __name__ == "__main__":
    main()
