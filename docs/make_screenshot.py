"""Regenerates docs/screenshot.png: the optuna-dashboard study page of a MetaBOSampler study.

Runs the demo's task family (three prior studies, then the new task with MetaBOSampler) in a
temporary SQLite file, serves it with optuna-dashboard on loopback and photographs the study
page with headless Chromium (Debian: ``apt-get install -y chromium``)::

    .venv/bin/python docs/make_screenshot.py [--n-trials 15] [--full]

``--full`` also writes docs/screenshot-full.png, a taller capture that shows the note-driven
custom plots below the standard ones, and docs/screenshot-note.png, the study note.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import optuna


DOCS = Path(__file__).resolve().parent
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The page is a single-page app that fetches the study after load; let its scripts run.
    "--virtual-time-budget=15000",
]


def _run_study(storage: str, n_trials: int) -> str:
    from optuna_metabo import DashboardCallback
    from optuna_metabo import MetaBOSampler
    from optuna_metabo.demo import family_member
    from optuna_metabo.demo import PRIOR_TASKS
    from optuna_metabo.demo import TARGET_TASK

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name, (shift, scale) in PRIOR_TASKS.items():
        prior = optuna.create_study(
            storage=storage,
            study_name=name,
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=0),
        )
        prior.optimize(family_member(shift, scale), n_trials=30)
    name = f"{TARGET_TASK[0]}-MetaBOSampler"
    sampler = MetaBOSampler(list(PRIOR_TASKS), prior_storage=storage, seed=0)
    study = optuna.create_study(
        storage=storage, study_name=name, direction="maximize", sampler=sampler
    )
    shown = DashboardCallback(every_n_trials=1, max_overhead=1.0)  # Final state on screen.
    study.optimize(family_member(*TARGET_TASK[1]), n_trials=n_trials, callbacks=[shown])
    return name


def _shoot(url: str, out: Path, height: int) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium not found: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--screenshot={out}",
                f"--window-size=1400,{height}",
                url,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=180,
        )
    print(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-trials", type=int, default=15)
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{tmp}/screenshot.db"
        name = _run_study(storage, args.n_trials)
        study_id = optuna.storages.get_storage(storage).get_study_id_from_name(name)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        code = "import sys; from optuna_dashboard._cli import main; sys.exit(main())"
        server = subprocess.Popen(
            [sys.executable, "-c", code, storage, "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"{base}/api/meta", timeout=5).close()
                    break
                except OSError:
                    time.sleep(0.3)
            page = f"{base}/dashboard/studies/{study_id}"
            _shoot(page, DOCS / "screenshot.png", 1000)
            if args.full:
                _shoot(page, DOCS / "screenshot-full.png", 2100)
                _shoot(f"{page}/note", DOCS / "screenshot-note.png", 1100)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
