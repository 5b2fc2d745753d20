"""The routing demo as a web page: Voila serves the notebook, Debian's chromium (driven by selenium, which uses the
system's chromedriver and downloads nothing) loads it; audio and the routing table render, and a filter changes the
rows. A screenshot is kept as an artifact (results/artifacts/routing_demo_page.png)."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import papermill
import pytest

from speechkit.speech_hands.demo import TABLE_ROWS
from speechkit.speech_hands.routing import read_decisions

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("SPEECHKIT_ARTIFACTS", ROOT / "results" / "artifacts"))
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(url: str, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"voila exited with {process.returncode}")
        try:
            urllib.request.urlopen(url + "api", timeout=2)
            return
        except urllib.error.HTTPError:  # any HTTP answer means the server is up
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"voila did not answer at {url} within {seconds} s")


@pytest.mark.slow
def test_the_routing_demo_works_in_a_real_browser(smoke_run, tmp_path):
    out, data, _ = smoke_run
    check_demo_page(out / "smoke", data, tmp_path)


def check_demo_page(run_dir: Path, data: Path, tmp_path: Path) -> None:
    """Serve 42_routing_demo over `run_dir`'s routing decisions and check the page in chromium."""
    assert CHROMIUM and CHROMEDRIVER, "Debian's chromium and chromium-driver are needed (make test installs them)"
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    decisions = read_decisions(run_dir / "41_routing" / "decisions.jsonl")
    page = tmp_path / "routing_demo.ipynb"
    papermill.execute_notebook(ROOT / "notebooks" / "42_routing_demo.ipynb", page, prepare_only=True,
                               parameters={"output_dir": str(run_dir / "42_routing_demo"),
                                           "data_dir": str(data)})
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = (tmp_path / "voila.log").open("w")
    voila = subprocess.Popen([sys.executable, "-m", "voila", str(page), "--no-browser", f"--port={port}",
                              "--Voila.ip=127.0.0.1", "--show_tracebacks=True"], cwd=ROOT, stdout=log,
                             stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(argument)
    driver = None
    try:
        wait_for_server(url, voila, 60)
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
        driver.get(url)
        wait = WebDriverWait(driver, 180)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "table.routing-table"))
        wait.until(lambda d: d.find_elements(By.TAG_NAME, "audio"))
        rows = driver.find_elements(By.CSS_SELECTOR, "tr.routing-row")
        assert len(rows) == min(len(decisions), TABLE_ROWS)
        token = Select(driver.find_elements(By.CSS_SELECTOR, ".widget-dropdown select")[0])
        assert [o.text for o in token.options] == ["all", "<internal>", "<external>", "<rewrite>"]
        emitted = {d.action for d in decisions}
        absent = next((a for a in ("internal", "external", "rewrite") if a not in emitted), None)
        chosen = absent or min(emitted, key=lambda a: sum(d.action == a for d in decisions))
        token.select_by_visible_text(f"<{chosen}>")
        matching = sum(d.action == chosen for d in decisions)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.routing-row")) == min(matching, TABLE_ROWS))
        assert f"{matching} of {len(decisions)} utterances match" in driver.find_element(By.TAG_NAME, "body").text
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        token.select_by_visible_text("all")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.routing-row")) == len(rows))
        driver.save_screenshot(str(ARTIFACTS / "routing_demo_page.png"))
        assert (ARTIFACTS / "routing_demo_page.png").stat().st_size > 10_000
    finally:
        if driver is not None:
            driver.quit()
        voila.terminate()
        voila.wait(30)
        log.close()


if __name__ == "__main__":
    # The same check against an existing run, e.g. the default profile's (its screenshot is committed):
    # SPEECHKIT_ARTIFACTS=results/default/42_routing_demo \
    #     python tests/test_demo_page.py results/default data_manifests/default
    import tempfile

    results, data = (Path(arg).resolve() for arg in sys.argv[1:3])
    with tempfile.TemporaryDirectory() as scratch:
        check_demo_page(results, data, Path(scratch))
    print("the routing demo page loads, plays and filters")
