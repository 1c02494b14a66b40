"""The page at / in a real browser: Debian's chromium, driven by selenium through chromedriver,
against a server on 127.0.0.1. Skipped, with the reason, where chromium is not installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_serve import BOLD_TAG, HTML_MOVIES, IMG_TITLE, SCRIPT_TITLE, USER

from tagrec_cli.embed import add_movies
from tagrec_cli.serve import create_app

# TAGREC_CHROMIUM / TAGREC_CHROMEDRIVER point elsewhere (a path that is not there: the skip).
CHROMIUM = os.environ.get("TAGREC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = (os.environ.get("TAGREC_CHROMEDRIVER") or shutil.which("chromedriver")
                or "/usr/bin/chromedriver")
WAIT_S = 30


def browser_missing() -> str | None:
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        return "chromium and chromium-driver are not installed (apt-get install chromium " \
               "chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workdir: Path) -> tuple[str, callable]:
    """uvicorn on 127.0.0.1 in a thread: (base url, stop)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(workdir), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(WAIT_S)

    return f"http://127.0.0.1:{port}", stop


def chromium(tmp: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1280,900",
                 f"--user-data-dir={tmp}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def site(embedded_sample_refit_300pairs_dim16: Path, tmp_path_factory) -> Iterator[tuple]:
    """(base url, driver): the trained sample workspace with the HTML-looking movies added,
    served on 127.0.0.1, and a headless chromium."""
    ws = tmp_path_factory.mktemp("browser") / "ws"
    shutil.copytree(embedded_sample_refit_300pairs_dim16, ws)
    (ws.parent / "html.csv").write_text(HTML_MOVIES, encoding="utf-8")
    add_movies(ws, ws.parent / "html.csv", device="cpu")
    url, stop = start_server(ws)
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield url, driver
    finally:
        driver.quit()
        stop()


def ask(driver, mode: str, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    Select(driver.find_element(By.ID, "mode")).select_by_value(mode)
    box = driver.find_element(By.ID, "query")
    box.clear()
    box.send_keys(text)
    driver.find_element(By.ID, "go").click()


def wait_for(driver, heading_start: str) -> list:
    """The rows of the results table once the heading starts with heading_start."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.find_element(By.ID, "heading").text.startswith(heading_start)
        or d.find_element(By.ID, "message").text)
    assert driver.find_element(By.ID, "message").text == ""
    return driver.find_elements(By.CSS_SELECTOR, "#results-table tbody tr")


def test_tags_typed_into_the_page_give_a_table_of_recommendations(site):
    from selenium.webdriver.common.by import By

    url, driver = site
    driver.get(url + "/")
    ask(driver, "tags", "pixar, animation")
    rows = wait_for(driver, "Top 10 for the tags: pixar, animation")
    assert len(rows) == 10
    headers = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#results-table th")]
    assert headers == ["#", "title", "year", "genres", "score", "because"]
    assert rows[0].find_elements(By.TAG_NAME, "td")[0].text == "1"
    # The footer came from /health: the page's script ran under its Content-Security-Policy.
    assert "movies and" in driver.find_element(By.ID, "footer").text
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def test_a_script_title_is_shown_as_text_and_clicking_it_lists_similar_movies(site):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    url, driver = site
    driver.get(url + "/")
    ask(driver, "title", "<script>")
    rows = wait_for(driver, "1 titles contain")
    assert len(rows) == 1
    button = rows[0].find_element(By.CSS_SELECTOR, "button.movie")
    assert button.text == SCRIPT_TITLE
    button.click()
    assert wait_for(driver, "Movies like " + SCRIPT_TITLE)  # (rated movies: the other is not)
    # Every unrated movie for the tag: the other one is among them, with the tag as a reason.
    k, unrated = driver.find_element(By.ID, "k"), driver.find_element(By.ID, "unrated")
    k.clear()
    k.send_keys("1000")
    unrated.click()
    try:
        ask(driver, "tags", BOLD_TAG)
        rows = wait_for(driver, "Top 1000 unrated for the tags: " + BOLD_TAG)
    finally:  # the other tests ask with the form's defaults
        unrated.click()
        k.clear()
        k.send_keys("10")
    cells = [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in rows]
    (found,) = [c for c in cells if c[1] == IMG_TITLE]
    assert BOLD_TAG in found[5]
    # None of it became markup: one script (the page's), no <img> or <b> from the data.
    assert len(driver.find_elements(By.TAG_NAME, "script")) == 1
    assert driver.find_elements(By.CSS_SELECTOR, "#results img, #results b") == []
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018


def test_unrated_only_asks_for_the_movies_nobody_rated(site):
    import json
    from urllib.request import urlopen

    from selenium.webdriver.common.by import By

    url, driver = site
    driver.get(url + "/")
    driver.find_element(By.ID, "unrated").click()
    ask(driver, "user", str(USER))
    rows = wait_for(driver, f"Top 10 unrated for user {USER}")
    titles = [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows]
    with urlopen(f"{url}/recommend?user={USER}&unrated=true", timeout=WAIT_S) as response:
        expected = json.load(response)  # = `recommend --unrated --json` (tests/test_serve.py)
    assert titles == [r["title"] for r in expected["recommendations"]]
    with urlopen(f"{url}/recommend?user={USER}", timeout=WAIT_S) as response:
        assert titles != [r["title"] for r in json.load(response)["recommendations"]]


def test_an_unknown_user_shows_the_error_line(site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, driver = site
    driver.get(url + "/")
    ask(driver, "user", "999999")
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_element(By.ID, "message").text)
    assert driver.find_element(By.ID, "message").text.startswith("unknown user 999999")
