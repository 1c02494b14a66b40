"""tagrec serve: every endpoint through FastAPI's TestClient, against the CLI's --json.

The workspace is conftest's trained sample workspace with two movies added whose title and
tags look like HTML, so escaping is checked on real answers.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers import invoke

from tagrec_cli import artifacts
from tagrec_cli.embed import add_movies
from tagrec_cli.serve import create_app

SCRIPT_TITLE = "<script>alert(1)</script> (1999)"
IMG_TITLE = "<img src=x onerror=alert(2)> & co (2000)"
BOLD_TAG = "<b>bold</b>"
HTML_MOVIES = (  # the same document but for the title
    "movieId,title,genres,tags\n"
    f'900001,"{SCRIPT_TITLE}",Animation|Children,{BOLD_TAG}|pixar|animation\n'
    f'900002,"{IMG_TITLE}",Animation|Children,{BOLD_TAG}|pixar|animation\n'
)
USER = 42


@pytest.fixture(scope="module")
def served(embedded_sample_refit_300pairs_dim16: Path, tmp_path_factory) -> Path:
    """A copy of the trained sample workspace with the two HTML-looking movies added."""
    ws = tmp_path_factory.mktemp("served") / "ws"
    shutil.copytree(embedded_sample_refit_300pairs_dim16, ws)
    csv = ws.parent / "html_movies.csv"
    csv.write_text(HTML_MOVIES, encoding="utf-8")
    add_movies(ws, csv, device="cpu")
    return ws


@pytest.fixture(scope="module")
def client(served: Path) -> TestClient:
    return TestClient(create_app(served))


def cli_json(workdir: Path, *args: str) -> dict:
    result = invoke([*args, "--json"], workdir)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def cli_error(workdir: Path, *args: str) -> str:
    result = invoke(list(args), workdir)
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert line.startswith("Error: ") and "\n" not in line, line
    return line.removeprefix("Error: ")


# ---------------------------------------------------------------- answers = the CLI's --json


@pytest.mark.parametrize("query, args", [
    (f"/recommend?user={USER}", ["recommend", "--user", str(USER)]),
    (f"/recommend?user={USER}&k=25", ["recommend", "--user", str(USER), "-k", "25"]),
    (f"/recommend?user={USER}&include_seen=true",
     ["recommend", "--user", str(USER), "--include-seen"]),
    ("/recommend?tags=pixar,animation", ["recommend", "--tags", "pixar, animation"]),
    ('/recommend?tags="rock, paper", heist&k=5',
     ["recommend", "--tags", '"rock, paper", heist', "-k", "5"]),
    (f"/recommend?user={USER}&tags=heist", ["recommend", "--user", str(USER), "--tags", "heist"]),
    (f"/recommend?user={USER}&unrated=true", ["recommend", "--user", str(USER), "--unrated"]),
    ("/recommend?tags=heist&unrated=true&k=3", ["recommend", "--tags", "heist", "--unrated",
                                                "-k", "3"]),
    ("/similar?movie=1", ["similar", "--movie", "1"]),
    ("/similar?movie=900001&k=3", ["similar", "--movie", "900001", "-k", "3"]),
    ("/similar?title=<script>", ["similar", "--title", "<script>"]),
])
def test_answers_equal_the_cli_json(client, served, query, args):
    response = client.get(query)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == cli_json(served, *args)


def test_a_user_answer_has_reasons_and_leaves_out_what_the_user_rated(client, served):
    from tagrec_cli.store import Store

    body = client.get(f"/recommend?user={USER}&k=20").json()
    assert body["user"] == USER and len(body["recommendations"]) == 20
    seen = set(Store(served).seen.of(USER)[0].tolist())
    assert seen and not seen & {r["movieId"] for r in body["recommendations"]}
    assert any(r["because"]["like"] for r in body["recommendations"])
    assert [r["rank"] for r in body["recommendations"]] == list(range(1, 21))


def test_movie_search_lists_the_best_match_first(client, served):
    from tagrec_cli.store import Store

    catalogue = Store(served).catalogue
    best, matches = catalogue.pick("the")
    body = client.get("/movies?title=the&limit=5").json()
    assert body["count"] == len(matches) > 5
    assert [m["movieId"] for m in body["movies"]][0] == best and len(body["movies"]) == 5
    assert set(m["movieId"] for m in body["movies"]) <= set(matches)
    none = client.get("/movies?title=zzzqqqxx").json()
    assert none["count"] == 0 and none["movies"] == []


def test_health_names_the_tables_and_the_model(client, served):
    body = client.get("/health").json()
    manifest = json.loads((served / "embeddings" / "manifest.json").read_text())
    emb = served / "embeddings"
    assert body["status"] == "ok" and body["stale"] is None
    assert body["tables"]["hash"] == artifacts.file_digest(
        emb / "users.safetensors", emb / "movies.safetensors", emb / "seen.safetensors")
    assert body["tables"]["movies"] == manifest["movies"] and body["tables"]["movies"] > 2
    assert body["tables"]["users"] == manifest["users"]
    assert body["tables"]["format_version"] == artifacts.EMBEDDINGS_FORMAT
    assert body["tables"]["added_movies"] == 2
    assert body["model"]["config_hash"] == manifest["model_config_hash"]
    assert body["model"]["weights_hash"] == artifacts.file_digest(
        served / "model" / "model.safetensors")
    assert body["model"]["format_version"] == artifacts.MODEL_FORMAT


# ---------------------------------------------------------------- bad parameters


@pytest.mark.parametrize("query, status, parameter, message", [
    ("/recommend", 400, "user", 'give user=ID, or tags="tag, tag" for a taste without ratings'),
    ("/recommend?user=abc", 400, "user", "user: input should be a valid integer, unable to "
     "parse string as an integer (got 'abc')"),
    (f"/recommend?user={USER}&k=0", 400, "k", "k must be at least 1 (got 0)"),
    (f"/recommend?user={USER}&k=-3", 400, "k", "k must be at least 1 (got -3)"),
    (f"/recommend?user={USER}&k=1001", 400, "k", "k must be at most 1,000 (got 1,001)"),
    (f"/recommend?user={USER}&k=ten", 400, "k", "k: input should be a valid integer, unable "
     "to parse string as an integer (got 'ten')"),
    (f"/recommend?user={USER}&include_seen=maybe", 400, "include_seen",
     "include_seen: input should be a valid boolean, unable to interpret input (got 'maybe')"),
    ("/recommend?tags=heist&include_seen=true", 400, "include_seen",
     "include_seen needs a user: a taste given as tags alone has rated no movie"),
    ("/similar", 400, "movie", "give movie=ID or title=TEXT"),
    ("/similar?movie=1&title=toy", 400, "movie", "give movie=ID or title=TEXT"),
    ("/similar?movie=1&k=0", 400, "k", "k must be at least 1 (got 0)"),
    ("/movies", 400, "title", "title: field required"),
    ("/movies?title=toy&limit=0", 400, "limit", "limit must be at least 1 (got 0)"),
    ("/nowhere", 404, None, "no such page: '/nowhere'"),
])
def test_a_bad_parameter_is_a_4xx_naming_it(client, query, status, parameter, message):
    response = client.get(query)
    assert response.status_code == status
    assert response.json() == {"error": message, "parameter": parameter}


@pytest.mark.parametrize("query, status, parameter, args", [
    ("/recommend?user=999999", 404, "user", ["recommend", "--user", "999999"]),
    ("/recommend?user=99999999999999999999999", 404, "user",
     ["recommend", "--user", "99999999999999999999999"]),
    ("/recommend?user=999999&tags=heist", 404, "user",
     ["recommend", "--user", "999999", "--tags", "heist"]),
    ("/similar?title=zzzqqqxx", 404, "title", ["similar", "--title", "zzzqqqxx"]),
    ("/similar?title=toy stroy", 404, "title", ["similar", "--title", "toy stroy"]),
])
def test_an_unknown_id_or_title_gets_the_cli_message(client, served, query, status, parameter,
                                                     args):
    response = client.get(query)
    assert response.status_code == status
    assert response.json() == {"error": cli_error(served, *args), "parameter": parameter}


NO_TAG = 'tags holds no tag (separate them with commas, e.g. "heist, twist ending")'
NO_MOVIE = ("not in the movie table (ids {ids}); look a movie up by title with "
            "/movies?title=TEXT or /similar?title=TEXT")


@pytest.mark.parametrize("query, status, parameter, message, args", [
    ("/recommend?tags=,,,", 400, "tags", NO_TAG, ["recommend", "--tags", ",,,"]),
    ("/recommend?tags=", 400, "tags", NO_TAG, ["recommend", "--tags", ""]),
    ("/similar?movie=999999", 404, "movie", "unknown movie 999999: " + NO_MOVIE,
     ["similar", "--movie", "999999"]),
    ("/similar?movie=99999999999999999999999", 404, "movie",
     "unknown movie 99999999999999999999999: " + NO_MOVIE,
     ["similar", "--movie", "99999999999999999999999"]),
    ("/similar?title=%20", 400, "title", "title is empty", ["similar", "--title", " "]),
    ("/movies?title=", 400, "title", "title is empty", ["similar", "--title", ""]),
])
def test_where_the_cli_names_its_options_the_api_names_its_parameters(
        client, served, query, status, parameter, message, args):
    # one rule each (recommend.py, catalogue.py), worded by each front end
    from tagrec_cli.store import Store

    ids = Store(served).table("movie").ids
    message = message.replace("{ids}", f"{ids.min()}–{ids.max()}")  # the table's id range
    response = client.get(query)
    assert response.status_code == status
    assert response.json() == {"error": message, "parameter": parameter}
    cli = cli_error(served, *args)
    assert "--" in cli  # the CLI's line names --tags or --title
    assert cli.replace("--title", "title").replace("--tags", "tags").split(";")[0] == \
        message.split(";")[0]  # and says the same before its hint


def test_the_workspace_failing_a_query_is_a_503_not_the_queries_fault(client, monkeypatch):
    # a QueryError is the query's fault (4xx); any other TagrecError while answering is the
    # workspace's (503), whichever parameter the query gave
    import tagrec_cli.recommend as recommend
    from tagrec_cli.errors import DataError

    def damaged(*_args, **_kwargs):
        raise DataError("the user tower's files are damaged")

    monkeypatch.setattr(recommend, "encode_user_documents", damaged)
    response = client.get("/recommend?tags=heist")
    assert response.status_code == 503
    assert response.json() == {"error": "the user tower's files are damaged", "parameter": None}


def test_post_recommend_answers_a_new_user_as_the_cli_does(client, served, tmp_path):
    import polars as pl

    mine = (pl.read_parquet(served / "ingest" / "ratings.parquet")
            .filter(pl.col("userId") == 3).select("movieId", "rating", "timestamp"))
    mine.write_csv(tmp_path / "mine.csv")
    expected = cli_json(served, "recommend", "--ratings", str(tmp_path / "mine.csv"), "-k", "7")
    response = client.post("/recommend?k=7", json={"ratings": mine.to_dicts()})
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["unknown_movies"] == [] and got == expected  # the CLI's has the key too
    response = client.post("/recommend", json={"ratings": [{"movieId": 99999999,
                                                            "rating": 4}, *mine.to_dicts()]})
    assert response.status_code == 200 and response.json()["unknown_movies"] == [99999999]
    expected = cli_json(served, "recommend", "--ratings", str(tmp_path / "mine.csv"), "-k", "7",
                        "--unrated")
    response = client.post("/recommend?k=7&unrated=true", json={"ratings": mine.to_dicts()})
    got = response.json()
    assert got["unknown_movies"] == [] and got == expected  # the CLI's has the key too
    rated = set(pl.read_parquet(served / "ingest" / "ratings.parquet")["movieId"].to_list())
    assert len(got["recommendations"]) == 7
    assert not rated & {r["movieId"] for r in got["recommendations"]}  # nobody rated them
    # include_seen: the movies the body rated may come back, as with the CLI's flag
    expected = cli_json(served, "recommend", "--ratings", str(tmp_path / "mine.csv"), "-k",
                        "200", "--include-seen")
    response = client.post("/recommend?k=200&include_seen=true", json={"ratings":
                                                                       mine.to_dicts()})
    got = response.json()
    assert response.status_code == 200 and got == expected
    assert set(mine["movieId"].to_list()) & {r["movieId"] for r in got["recommendations"]}


@pytest.mark.parametrize("body, message", [
    ({"ratings": {"1": 5}}, 'the body must be {"ratings": [{"movieId": ID, "rating": R}, ...]}'),
    ([1, 2], 'the body must be {"ratings": [{"movieId": ID, "rating": R}, ...]}'),
    ({"ratings": []}, "ratings holds no ratings"),
    ({"ratings": [{"movieId": 1, "rating": 9}]}, "ratings[0]: rating 9 is outside 0.5–5.0"),
    ({"ratings": [{"movieId": "x", "rating": 4}]}, "ratings[0]: movieId 'x' is not an integer"),
    ({"ratings": [{"movieId": 1, "rating": 4}, {"movieId": 1, "rating": 3}]},
     "ratings[1]: movie 1 was already rated on ratings[0]"),
    ({"ratings": [{"rating": 4}]}, "ratings[0]: movieId '' is not an integer"),
    # values as JSON spells them, not as Python does
    ({"ratings": [{"movieId": True, "rating": 4}]}, "ratings[0]: movieId 'true' is not an "
     "integer"),
    ({"ratings": [{"movieId": 1, "rating": [4]}]}, "ratings[0]: rating '[4]' is not a number"),
])
def test_post_recommend_rejects_a_bad_body_with_one_line(client, body, message):
    response = client.post("/recommend", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": message, "parameter": "ratings"}


@pytest.mark.parametrize("body, key, where", [
    ({"k": 5}, "k", " (k, unrated and include_seen go in the query: POST /recommend?k=5)"),
    ({"unrated": True}, "unrated",
     " (k, unrated and include_seen go in the query: POST /recommend?k=5)"),
    ({"include_seen": True}, "include_seen",
     " (k, unrated and include_seen go in the query: POST /recommend?k=5)"),
    ({"tags": "heist"}, "tags", ""),
])
def test_a_body_key_it_does_not_take_is_a_400_not_ignored(client, body, key, where):
    # {"ratings": [...], "k": 5} used to answer with the default k: another question
    response = client.post("/recommend", json={"ratings": [{"movieId": 1, "rating": 4}],
                                               **body})
    assert response.status_code == 400
    assert response.json() == {"error": f"the body has a key it does not take: {key!r}; it "
                               'must be {"ratings": [{"movieId": ID, "rating": R}, ...]}'
                               + where, "parameter": "body"}


def test_the_body_hint_names_the_new_user_routes_own_query_parameters(served):
    from fastapi.routing import APIRoute

    from tagrec_cli.serve.answers import NEW_USER_QUERY

    (route,) = [r for r in create_app(served).routes if isinstance(r, APIRoute)
                and r.path == "/recommend" and "POST" in r.methods]
    assert {p.alias for p in route.dependant.query_params} == set(NEW_USER_QUERY)


@pytest.mark.parametrize("content, kind, status, error", [
    (b'{"ratings": [{"movieId": 1, "rating": 4.5}', "application/json", 400,
     "the body is not JSON: Expecting ',' delimiter at character 42"),
    (b"not json", "application/json", 400,
     "the body is not JSON: Expecting value at character 0"),
    (b"", "application/json", 400,
     'the body is empty: {"ratings": [{"movieId": ID, "rating": R}, ...]}'),
    (b'{"ratings": [{"movieId": 1, "rating": 4}]}', "text/plain", 415,
     "send the body as JSON (Content-Type: application/json, not 'text/plain')"),
])
def test_a_body_that_is_not_json_says_so(client, content, kind, status, error):
    response = client.post("/recommend", content=content, headers={"Content-Type": kind})
    assert response.status_code == status
    assert response.json() == {"error": error, "parameter": "body"}


def test_a_body_over_the_limit_is_a_413_before_it_is_read(served, monkeypatch):
    import tagrec_cli.serve.app as serve_app

    monkeypatch.setattr(serve_app, "MAX_BODY", 2**20)  # 1 MiB for the test
    client = TestClient(create_app(served))
    small = {"ratings": [{"movieId": 1, "rating": 4}]}
    assert client.post("/recommend", json=small).status_code == 200
    big = json.dumps({**small, "pad": "x" * 2**20}).encode()
    for headers in ({"Content-Type": "application/json"},  # Content-Length: refused at once
                    {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}):
        body = big if "Transfer-Encoding" not in headers else iter([big[:1000], big[1000:]])
        response = client.post("/recommend", content=body, headers=headers)
        assert response.status_code == 413
        assert response.json() == {"error": "the body is larger than 1 MiB (one person's "
                                   "ratings are kilobytes)", "parameter": "body"}


@pytest.mark.parametrize("method, url, error, parameter", [
    ("GET", f"/recommend?user={USER}&user=7", "user is given 2 times: give it once", "user"),
    ("GET", "/similar?movie=1&movie=2", "movie is given 2 times: give it once", "movie"),
    ("POST", f"/recommend?user={USER}",
     "/recommend takes no parameter 'user' (it takes include_seen, k, unrated)", "user"),
    ("GET", "/recommend?tags=x&<b>=1",  # the name comes back as text, escaped
     "/recommend takes no parameter '<b>' (it takes include_seen, k, tags, unrated, user)",
     "<b>"),
])
def test_a_repeated_or_unknown_query_parameter_is_a_400_naming_it(client, method, url, error,
                                                                   parameter):
    response = client.request(method, url, json={"ratings": [{"movieId": 1, "rating": 4}]}
                              if method == "POST" else None)
    assert response.status_code == 400
    assert response.json() == {"error": error, "parameter": parameter}
    assert "<b>" not in response.text  # \u003c escapes, as every answer


def test_the_page_and_the_docs_take_any_query(client):
    assert client.get("/?utm_source=x&utm_source=y").status_code == 200
    for page in ("/openapi.json", "/docs", "/redoc"):
        assert client.get(page + "?x=1&x=2").status_code == 200


def test_a_method_a_route_does_not_take_is_a_405_with_allow(client):
    response = client.delete("/recommend")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"  # both /recommend routes
    assert response.json() == {"error": "DELETE is not allowed here (allowed: GET, POST)",
                               "parameter": None}


def test_unrated_without_an_unrated_movie_is_a_404_naming_it(served, monkeypatch):
    import numpy as np

    from tagrec_cli.store import Store

    monkeypatch.setattr(Store, "unrated_rows", property(lambda self: np.zeros(0, np.int64)))
    client = TestClient(create_app(served))
    for response in (client.get(f"/recommend?user={USER}&unrated=true"),
                     client.post("/recommend?unrated=true",
                                 json={"ratings": [{"movieId": 1, "rating": 5}]})):
        assert response.status_code == 404, response.text
        assert response.json()["parameter"] == "unrated"
        assert response.json()["error"].startswith("every movie in the table has ratings")
    assert client.get(f"/recommend?user={USER}").status_code == 200  # the rest still works


def test_a_bug_is_a_json_500_without_traceback(served, monkeypatch):
    client = TestClient(create_app(served), raise_server_exceptions=False)

    def broken(*args):
        raise ValueError("a bug")

    monkeypatch.setattr("tagrec_cli.serve.answers.recommendation", broken)
    response = client.get(f"/recommend?user={USER}")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (ValueError); see the server's log",
                               "parameter": None}


def test_a_workspace_without_tables_answers_503_and_serve_refuses_to_start(tmp_path):
    response = TestClient(create_app(tmp_path)).get(f"/recommend?user={USER}")
    assert response.status_code == 503
    assert response.json()["error"] == (f"no embeddings output in {tmp_path / 'embeddings'} — "
                                        "run `tagrec embed` first")
    assert cli_error(tmp_path, "serve") == response.json()["error"]


def test_a_port_another_server_holds_is_a_one_line_error(served):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        message = cli_error(served, "serve", "--port", str(port))
    assert message.startswith(f"cannot serve on 127.0.0.1:{port}: ")
    assert "another server" in message


def test_a_taken_port_on_a_public_host_prints_the_error_alone(served):
    import socket

    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        # cli_error: stderr is the one error line, without the public host's note
        message = cli_error(served, "serve", "--host", "0.0.0.0", "--port", str(port))
    assert message.startswith(f"cannot serve on 0.0.0.0:{port}: ")


def test_an_address_that_cannot_be_bound_has_no_port_hint(served, monkeypatch):
    import errno
    import socket

    def refuse(self, address):  # as binding an address this machine lacks fails
        raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")

    monkeypatch.setattr(socket.socket, "bind", refuse)
    message = cli_error(served, "serve", "--port", "8000")
    assert message == "cannot serve on 127.0.0.1:8000: Cannot assign requested address"


def test_serve_help():
    result = invoke(["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--workers", "--allow-stale", "127.0.0.1"):
        assert option in result.output


# ---------------------------------------------------------------- text from the data


def test_html_looking_titles_and_tags_come_back_escaped(client):
    response = client.get("/similar?movie=900001&k=3")
    assert response.headers["x-content-type-options"] == "nosniff"
    raw = response.text
    assert "<" not in raw and ">" not in raw and "&" not in raw
    assert "\\u003cscript\\u003e" in raw
    body = response.json()  # and the values are the data exactly
    assert body["query"] == {"movieId": 900001, "title": SCRIPT_TITLE}
    # a tags query over the unrated movies lists the other one, with the tag as a reason
    response = client.get("/recommend", params={"tags": BOLD_TAG, "unrated": "true",
                                                "k": 1000})
    raw = response.text
    assert response.status_code == 200 and len(response.json()["recommendations"]) < 1000
    assert "<" not in raw and ">" not in raw and "&" not in raw
    found = next(r for r in response.json()["recommendations"] if r["movieId"] == 900002)
    assert found["title"] == IMG_TITLE
    assert BOLD_TAG in found["because"]["tags"]
    found = client.get("/movies?title=<script>").json()
    assert [m["title"] for m in found["movies"]] == [SCRIPT_TITLE]


def test_the_page_fetches_nothing_from_outside_and_runs_only_its_own_script(client):
    import base64
    import hashlib
    import re

    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith(
        "text/html")
    html = response.text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "innerHTML" not in html and "insertAdjacentHTML" not in html
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    script = re.search("<script>(.*?)</script>", html, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp


def test_openapi_docs_list_the_endpoints(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/recommend", "/similar", "/movies", "/health"} <= set(paths)
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_everything_from_the_server(client, page):
    # FastAPI's own pages fetch Swagger UI and ReDoc from a CDN: blank on a machine offline
    import re

    html = client.get(page).text
    assert not re.search(r"https?://", html)
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", html)
    assert any(a.endswith(".js") for a in assets)
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200 and len(response.content) > 1000, asset


# ---------------------------------------------------------------- new tables while serving


def test_new_tables_are_picked_up_without_dropping_requests(served, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(served, ws)
    client = TestClient(create_app(ws))
    before = client.get(f"/recommend?user={USER}").json()
    old_hash = client.get("/health").json()["tables"]["hash"]
    csv = tmp_path / "new.csv"
    csv.write_text("movieId,title,genres,tags\n900003,Brand New Film (2030),Drama,heist\n",
                   encoding="utf-8")

    answers, failures, stop = [], [], threading.Event()

    def hammer():
        while not stop.is_set():
            r = client.get(f"/recommend?user={USER}")
            (answers if r.status_code == 200 else failures).append(r.json())

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        add_movies(ws, csv, device="cpu")  # embeddings/ replaced by rename
    finally:
        stop.set()
        for t in threads:
            t.join()
    after = client.get(f"/recommend?user={USER}").json()
    assert failures == [] and len(answers) > 3
    assert all(a in (before, after) for a in answers)  # each from one generation of tables
    assert client.get("/movies?title=brand new").json()["movies"][0]["movieId"] == 900003
    health = client.get("/health").json()
    assert health["tables"]["hash"] != old_hash and health["tables"]["added_movies"] == 3


def test_a_request_running_across_a_swap_is_answered_from_the_new_tables(served, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(served, ws)
    workspace = create_app(ws).state.workspace
    manifest = ws / "embeddings" / "manifest.json"
    calls = []

    def answer(store):
        calls.append(store)
        if len(calls) == 1:  # embed finishes while this request runs: a new manifest inode
            shutil.copy(manifest, manifest.with_name("new.json"))
            os.replace(manifest.with_name("new.json"), manifest)
        return len(calls)

    assert workspace.answer(answer) == 2
    assert calls[0] is not calls[1]  # answered again, on the newly opened generation
    assert workspace.current().store is calls[1]


def test_the_query_tower_is_read_once_until_the_model_changes(served, tmp_path):
    from tagrec_cli.towers.npbert import load_tower

    model = tmp_path / "model"
    shutil.copytree(served / "model", model)
    tower = load_tower(model, "user")
    assert load_tower(model, "user") is tower and load_tower(model, "movie") is not tower
    weights = model / "model.safetensors"
    shutil.copy(weights, tmp_path / "w")
    os.replace(tmp_path / "w", weights)  # a retrained model lands by rename
    again = load_tower(model, "user")
    assert again is not tower
    n_features = tower.w["head.weight"].shape[1] - tower.w["embeddings.word_embeddings.weight"
                                                            ].shape[1]  # side features
    features = np.zeros((1, n_features), np.float32)
    assert (again.encode(["heist, noir"], features) == tower.encode(["heist, noir"], features)
            ).all()


def test_a_request_between_embeds_two_renames_waits_for_the_new_folder(served, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(served, ws)
    workspace = create_app(ws).state.workspace
    emb, aside = ws / "embeddings", ws / ".embeddings.old"
    new = ws / ".embeddings.tmp"
    shutil.copytree(emb, new)  # the next generation, as embed writes it beside the old one

    def put_back():
        os.replace(new, emb)

    calls = []

    def answer(store):
        calls.append(store)
        if len(calls) == 1:
            os.replace(emb, aside)  # embed's first rename: for a moment there is no folder
            threading.Timer(0.2, put_back).start()
        return store.user_tags(USER + len(calls))  # read from disk: fails while it is gone

    assert workspace.answer(answer) == calls[-1].user_tags(USER + len(calls))
    assert len(calls) >= 3 and calls[-1] is not calls[0]  # retried until the new one came
