"""`cot-transfer view`: writes a results folder's page (the whole report first when the folder has
none) and, with ``--serve``, serves the folder on loopback. It lives in the CLI because it needs
both the report and the page writer, and the report itself writes the page."""

from __future__ import annotations

import signal
from pathlib import Path

from cot_transfer.experiment.load import SUMMARY_FILE
from cot_transfer.experiment.report import write_report
from cot_transfer.experiment.results_folder import RUN_FILE
from cot_transfer.experiment.view import VIEW_FILE, ViewError, serve_view, write_view


def view_command(run_dir: Path, *, serve: bool = False, port: int = 0) -> int:
    """`cot-transfer view`: writes the page (the whole report first when the folder has none) and,
    with ``serve``, serves the folder on loopback until interrupted."""
    if not (run_dir / RUN_FILE).is_file():
        raise ViewError(f"{run_dir} is not a results folder: it has no {RUN_FILE}")
    if (run_dir / SUMMARY_FILE).is_file():
        page = write_view(run_dir)
    else:
        write_report(run_dir)  # it writes the page too
        page = run_dir / VIEW_FILE
    print(f"viewer: {page.resolve()}", flush=True)
    if not serve:
        return 0
    server = serve_view(run_dir, port)
    signal.signal(signal.SIGTERM, _interrupt)  # a `kill` stops it as Ctrl-C does
    print(f"serving: http://127.0.0.1:{server.server_address[1]}/{VIEW_FILE} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
