"""The page of `tagrec serve` with results, as a PNG: docs/serve.png.

Starts `tagrec serve` on a workspace, types tags into the page in headless chromium (Debian's
`chromium` and `chromium-driver`, driven by selenium), and saves the window.

    python benchmarks/screenshot.py --workdir /tmp/ws-small [--tags "pixar, animation"]
        [--out docs/serve.png]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--tags", default="pixar, animation")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "serve.png")
    args = ap.parse_args()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(Path(sys.executable).with_name("tagrec")), "serve",
                               "--workdir", str(args.workdir), "--port", str(port)])
    try:
        for _ in range(600):
            try:
                json.load(urllib.request.urlopen(base + "/health", timeout=2))
                break
            except OSError:
                time.sleep(0.2)
        with tempfile.TemporaryDirectory() as profile:
            options = webdriver.ChromeOptions()
            options.binary_location = "/usr/bin/chromium"
            for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--no-first-run", "--window-size=1200,800",
                         f"--user-data-dir={profile}"):
                options.add_argument(flag)
            driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
            try:
                driver.get(base + "/")
                driver.find_element(By.ID, "query").send_keys(args.tags)
                driver.find_element(By.ID, "go").click()
                WebDriverWait(driver, 60).until(
                    lambda d: d.find_elements(By.CSS_SELECTOR, "#results-table tbody tr"))
                WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "footer").text)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(args.out))
            finally:
                driver.quit()
    finally:
        server.terminate()
        server.wait(30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
