"""User-facing errors shared by every entry point (pipeline.shards, trainer.training.train, trainer.inference.predict, ...).

A `UserError` is a mistake in the user's input or setup (missing directory, missing column, unknown
fold, ...). Entry points wrap their main in `run_main`, which prints such an error as one clear line
and exits with status 2 instead of a traceback. Bugs still raise with their traceback.

    from core.errors import UserError, run_main
    def main(argv=None): ...
    if __name__ == "__main__":
        run_main(main)
"""
from __future__ import annotations

import logging
import sys
from typing import Callable, Sequence

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem the user can fix; its message says what and how."""


def run_main(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> None:
    """Runs `main(argv)`; a UserError (or schema mismatch) becomes `error: <message>` and exit 2."""
    from core.schema import SchemaError

    try:
        main(argv)
    except (UserError, SchemaError) as e:
        logging.getLogger(__name__).debug("user error", exc_info=True)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
