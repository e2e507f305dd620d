"""The latent explorer (`tf_ssinfogan.explore`): export resolution, bad input, newest-wins, and the page driven in
headless Chromium (Debian's `chromium` and `chromium-driver`, Selenium from PyPI) against a tiny trained export:
the image it shows equals what the SavedModel returns for the same codes and noise, and the command it prints
writes the same pixels. Everything runs on 127.0.0.1; every server started here is stopped here.

Without Chromium the browser tests skip with the reason, except in CI (`CI` set, as `.ci/run` does), where they
fail: CI installs Chromium, so its absence there is a broken set-up, not a reason to skip.
"""

import base64
import dataclasses
import json
import os
import queue
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_config, tiny_source
from tf_ssinfogan import config as C
from tf_ssinfogan.serving import explorer
from tf_ssinfogan.training import trainer
from tf_ssinfogan.data.sources import LabelColumn

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CODES = "digit:cat:10:label,c1:cont:1,c2:cont:2,flag:bin:1"
TIMEOUT = 60  # seconds for any one wait of a browser test


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny finished run (4 steps) whose export has every code kind and named classes."""
    src = tiny_source()
    src.label_columns = {"label": LabelColumn("categorical", 10, NAMES)}
    cfg = tiny_config(tmp_path_factory.mktemp("explore"))
    cfg = dataclasses.replace(cfg, latent=dataclasses.replace(cfg.latent, codes=C.parse_codes(CODES)))
    result = trainer.train(cfg, source=src)
    assert result.export_path == os.path.join(cfg.run_dir, "export", "ssinfogan", "1")
    return cfg.run_dir


@pytest.fixture(scope="module")
def export_dir(run_dir):
    return os.path.join(run_dir, "export", "ssinfogan", "1")


@pytest.fixture(scope="module")
def loaded(export_dir):
    return tf.saved_model.load(export_dir)


class _Explorer:
    """`python -m tf_ssinfogan.explore` in a child process on a free loopback port."""

    def __init__(self, model):
        self.proc = subprocess.Popen([sys.executable, "-m", "tf_ssinfogan.explore", f"--model={model}", "--port=0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
        self.lines, q = [], queue.Queue()
        threading.Thread(target=lambda: [q.put(line) for line in self.proc.stdout] + [q.put(None)],
                         daemon=True).start()
        deadline, self.url = time.time() + 180, None
        while self.url is None:
            try:
                line = q.get(timeout=max(0.1, deadline - time.time()))
            except queue.Empty:
                line = None
            if line is None:
                self.stop()
                raise AssertionError("the explorer did not start:\n" + "".join(self.lines[-40:]))
            self.lines.append(line)
            if "open http://" in line:
                self.url = line.split("open ", 1)[1].split()[0]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="module")
def server(run_dir):
    """The explorer CLI on the run folder (resolved to its newest export)."""
    s = _Explorer(run_dir)
    yield s
    s.stop()


def _get(url, timeout=30):
    """(status, JSON body or None) of a GET; 4xx/5xx answers are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            data = r.read()
            return r.status, (json.loads(data) if data and r.headers["Content-Type"].startswith("application/json")
                              else data)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _decode(png_b64: str) -> np.ndarray:
    return tf.io.decode_png(base64.b64decode(png_b64)).numpy()


def _expected(loaded, seed, codes):
    """images_uint8[0] of the SavedModel for these codes and this seed's noise, by two routes: `sample` with every
    code fixed, and `serving_default` fed the noise that `sample` drew."""
    feed = {"batch_size": tf.constant(1), "seed": tf.constant(seed)}
    for name, value in codes.items():
        feed[name] = tf.constant(value, tf.int32 if name == "digit" else tf.float32)
        feed[name + "_fixed"] = tf.constant(True)
    out = loaded.signatures["sample"](**feed)
    again = loaded.signatures["serving_default"](noise=out["noise"], **{k: out[k] for k in codes})
    np.testing.assert_array_equal(again["images_uint8"].numpy(), out["images_uint8"].numpy())
    return out["images_uint8"].numpy()[0]


# ------------------------------------------------------------------------------------------ without a browser
def test_model_path_resolves_from_version_parent_or_run_folder(run_dir, export_dir, tmp_path):
    assert explorer.resolve_export(export_dir) == export_dir
    assert explorer.resolve_export(os.path.dirname(export_dir)) == export_dir
    assert explorer.resolve_export(run_dir) == export_dir
    newer = os.path.join(os.path.dirname(export_dir), "10")  # versions compare as numbers: 10 > 9 > 1
    shutil.copytree(export_dir, newer)
    os.makedirs(os.path.join(os.path.dirname(export_dir), ".tmp_x"))  # a half-written export is not a version
    try:
        assert explorer.resolve_export(run_dir) == newer
    finally:
        shutil.rmtree(newer)
        os.rmdir(os.path.join(os.path.dirname(export_dir), ".tmp_x"))
    for bad in (str(tmp_path), str(tmp_path / "missing"), os.path.join(export_dir, "variables")):
        with pytest.raises(explorer.cli.UsageError, match="expected an exported SavedModel"):
            explorer.resolve_export(bad)


def test_cli_exits_2_saying_what_it_expected_for_a_path_that_is_not_an_export(tmp_path):
    (tmp_path / "saved_model.txt").write_text("not a model")
    out = subprocess.run([sys.executable, "-m", "tf_ssinfogan.explore", f"--model={tmp_path}", "--port=0"],
                         capture_output=True, text=True, timeout=120, env=_env())
    assert out.returncode == 2, out.stderr[-2000:]
    assert "is not an export; expected an exported SavedModel: a version folder" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_exits_2_with_a_clear_message_on_a_busy_port(export_dir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "tf_ssinfogan.explore", f"--model={export_dir}", f"--port={port}"],
                             capture_output=True, text=True, timeout=120, env=_env())
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"port {port} on 127.0.0.1 is already in use" in out.stderr and "--port 0" in out.stderr
    assert "Traceback" not in out.stderr


def test_sample_traverse_refuses_fixed_codes():
    out = subprocess.run([sys.executable, "-m", "tf_ssinfogan.sample", "--model=.", "--traverse=c1", "--code=c1=0"],
                         capture_output=True, text=True, timeout=120, env=_env())
    assert out.returncode == 2 and "--traverse draws every other code per row" in out.stderr


def test_newest_request_wins_and_the_rest_are_not_computed(export_dir, loaded):
    ex = explorer.Explorer(export_dir)
    spec = ex.spec()
    assert [c["name"] for c in spec["codes"]] == ["digit", "c1", "c2", "flag"]
    assert spec["codes"][0]["class_names"] == list(NAMES) and spec["codes"][1]["slider"] == [-2.0, 2.0]
    assert spec["traverse"] == ["digit", "c1", "c2", "c2:0", "c2:1", "flag"]
    assert dict(spec["facts"])["labelled"] == "16 images (25.00%)"

    results = {}

    def ask(seq):
        results[seq] = ex.handle("image", {"client": "a", "seq": str(seq), "seed": "3", "c1": str(seq / 10)})

    threads = []
    with ex._lock:  # a model call in progress: the requests below arrive meanwhile
        for seq in range(1, 6):
            threads.append(threading.Thread(target=ask, args=(seq,)))
            threads[-1].start()
        deadline = time.time() + 30
        while ex._latest.get("a") != 5 and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
    for t in threads:
        t.join(30)
    assert {seq: status for seq, (status, _) in results.items()} == {1: 204, 2: 204, 3: 204, 4: 204, 5: 200}
    assert (ex.computed, ex.superseded) == (1, 4)
    body = results[5][1]
    assert body["seq"] == 5 and body["codes"] == {"digit": 0, "c1": [0.5], "c2": [0.0], "flag": [0.0]}
    expected = _expected(loaded, 3, {"digit": 0, "c1": [0.5], "c2": [0.0, 0.0], "flag": [0.0]})
    np.testing.assert_array_equal(_decode(body["png"]), expected)
    # an older request of the same client that arrives late is not computed; other clients are independent
    assert ex.handle("image", {"client": "a", "seq": "4"})[0] == 204
    assert ex.handle("image", {"client": "b", "seq": "1"})[0] == 200


def test_bad_requests_answer_4xx_with_a_message_and_the_server_keeps_serving(server):
    url = server.url
    cases = {
        "api/image?digit=10": (400, "digit: '10' is not a class of this code; expected a class index, an integer in "
                                    "[0, 10)"),
        "api/image?digit=two": (400, "digit: 'two' is not a class"),
        "api/image?c1=abc": (400, "c1: 'abc' is not a finite number"),
        "api/image?c2=1,2,3": (400, "c2: '1,2,3' is not 1 or 2 comma-separated finite numbers"),
        "api/image?c1=nan": (400, "c1: 'nan' is not a finite number"),
        "api/image?seed=-1": (400, "seed: -1 is outside [0, 2147483647]"),
        "api/image?seed=x": (400, "seed: 'x' is not an integer"),
        "api/image?colour=1": (400, "unknown parameter(s) ['colour']"),
        "api/grid?code=nope": (400, "code: 'nope' is not a code of this model"),
        "api/grid?code=c1&steps=1": (400, "steps: 1 is outside [2, 32]"),
        "api/nothing": (404, "no such page"),
    }
    for path, (status, message) in cases.items():
        got, body = _get(url + path)
        assert got == status and message in body["error"], (path, got, body)
        assert "Traceback" not in body["error"]
    req = urllib.request.Request(url + "api/image", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 405
    status, body = _get(url + "api/image?seed=1&digit=9&c1=1.5&c2=-0.5,0.25&flag=1")
    assert status == 200 and body["codes"] == {"digit": 9, "c1": [1.5], "c2": [-0.5, 0.25], "flag": [1.0]}
    assert server.proc.poll() is None
    assert any("loopback only" in line for line in server.lines)


# ------------------------------------------------------------------------------------------ in a browser
def _chromium():
    """(chromium, chromedriver) paths, or a skip (outside CI) / failure (in CI) saying what is missing."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing = "selenium is not installed (pip install -c constraints.txt -e '.[test]')"
    else:
        paths = {n: shutil.which(n) for n in ("chromium", "chromedriver")}
        if all(paths.values()):
            return paths["chromium"], paths["chromedriver"]
        missing = (f"{' and '.join(n for n, p in paths.items() if not p)} not found "
                   "(apt-get install chromium chromium-driver; .ci/run installs them)")
    if os.environ.get("CI"):
        pytest.fail(f"the browser test cannot run in CI: {missing}")
    pytest.skip(f"browser test: {missing}")


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1300,900", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    try:  # a Chromium that does not start fails the test (never a skip)
        driver = webdriver.Chrome(options=options, service=Service(driver_path))
    except Exception as e:  # noqa: BLE001 - selenium's errors have no common base worth naming
        pytest.fail(f"headless Chromium ({chromium}, {driver_path}) did not start: {e}")
    driver.set_page_load_timeout(TIMEOUT)
    driver.set_script_timeout(TIMEOUT)
    yield driver
    driver.quit()


def _settle(driver):
    """Waits until the page has no request in flight and shows the answer to its last one (or an error)."""
    from selenium.webdriver.support.ui import WebDriverWait

    def settled(d):
        return d.execute_script(
            "const b = document.body.dataset, img = document.getElementById('image');"
            "return b.busy === '0' && (img.dataset.seq === b.sent || !!b.error);")

    WebDriverWait(driver, TIMEOUT).until(settled)
    return driver.execute_script(
        "const img = document.getElementById('image');"
        "return {src: img.src, seq: img.dataset.seq, error: document.body.dataset.error || '',"
        " command: document.getElementById('command').textContent, status: document.getElementById('status')"
        ".textContent, download: document.getElementById('download').href};")


def _page_codes(driver):
    """seed and codes as the page's controls hold them (what a user set), in the SavedModel's formats."""
    from selenium.webdriver.common.by import By

    value = lambda i: driver.find_element(By.ID, i).get_attribute("value")  # noqa: E731
    flag = driver.find_element(By.ID, "code-flag-0").is_selected()
    return int(value("seed")), {"digit": int(value("code-digit")), "c1": [float(value("code-c1-0"))],
                                "c2": [float(value("code-c2-0")), float(value("code-c2-1"))],
                                "flag": [1.0 if flag else 0.0]}


def _shown(state):
    assert state["src"].startswith("data:image/png;base64,") and not state["error"], state
    return _decode(state["src"].split(",", 1)[1])


def _run_command(command, out):
    """Runs a printed `tf-ssinfogan-sample ...` command (as `python -m tf_ssinfogan.sample`) writing `out`."""
    args = shlex.split(command)
    assert args[0] == "tf-ssinfogan-sample" and args[-2] == "--out"
    args[-1] = str(out)
    return subprocess.Popen([sys.executable, "-m", "tf_ssinfogan.sample", *args[1:]], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())


def test_browser_codes_change_the_image_which_equals_the_saved_model_and_the_printed_command(
        browser, server, loaded, export_dir, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(server.url)
    first = _shown(_settle(browser))
    assert browser.find_element(By.ID, "model-path").text == export_dir
    facts = browser.find_element(By.ID, "facts").text
    assert "labelled" in facts and "16 images (25.00%)" in facts and "Q accuracy on real test images" in facts
    select = Select(browser.find_element(By.ID, "code-digit"))
    assert [o.text for o in select.options][:3] == ["0: zero", "1: one", "2: two"]
    seed, codes = _page_codes(browser)
    assert seed == 0 and codes["digit"] == 0
    np.testing.assert_array_equal(first, _expected(loaded, seed, codes))

    # a categorical selector
    select.select_by_value("7")
    after_select = _shown(_settle(browser))
    seed, codes = _page_codes(browser)
    assert codes["digit"] == 7 and not np.array_equal(after_select, first)
    np.testing.assert_array_equal(after_select, _expected(loaded, seed, codes))

    # a slider, dragged: many positions while requests are in flight; the page ends on the last one
    slider = browser.find_element(By.ID, "code-c1-0")
    width = slider.size["width"]
    actions = ActionChains(browser).click_and_hold(slider)  # the thumb starts at the centre (0)
    for _ in range(8):
        actions.move_by_offset(width // 32, 0)
    actions.release().perform()
    after_drag = _shown(_settle(browser))
    seed, codes = _page_codes(browser)
    assert 0.3 < codes["c1"][0] < 1.5, codes
    assert not np.array_equal(after_drag, after_select)
    np.testing.assert_array_equal(after_drag, _expected(loaded, seed, codes))

    # beyond the prior: marked on the page, and still the SavedModel's image
    ActionChains(browser).move_to_element_with_offset(slider, width // 2 - 3, 0).click().perform()
    state = _settle(browser)
    seed, codes = _page_codes(browser)
    assert codes["c1"][0] > 1.5
    assert "beyond" in browser.find_element(By.ID, "code-c1-0-value").get_attribute("class")
    image = _shown(state)
    np.testing.assert_array_equal(image, _expected(loaded, seed, codes))
    assert state["download"] == state["src"]  # the download is the PNG shown

    # the printed command writes the same pixels (inside the 1-pixel white frame of the sample CLI's grids)
    image_job = _run_command(state["command"], tmp_path / "image.png")

    # "new noise" changes the seed and the image; the binary toggle too
    browser.find_element(By.ID, "new-noise").click()
    noisy = _shown(_settle(browser))
    seed2, codes2 = _page_codes(browser)
    assert seed2 != seed and not np.array_equal(noisy, image)
    np.testing.assert_array_equal(noisy, _expected(loaded, seed2, codes2))
    browser.find_element(By.ID, "code-flag-0").click()
    seed3, codes3 = _page_codes(browser)
    np.testing.assert_array_equal(_shown(_settle(browser)), _expected(loaded, seed3, codes3))
    assert codes3["flag"] == [1.0] and seed3 == seed2  # "keep noise while I move codes" is on

    # grid mode: the traverse signature's grid, and its command
    browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=grid]").click()
    Select(browser.find_element(By.ID, "grid-code")).select_by_value("c2:1")
    state = _settle(browser)
    grid = _shown(state)
    steps = int(browser.find_element(By.ID, "grid-steps").get_attribute("value"))
    rows = int(browser.find_element(By.ID, "grid-rows").get_attribute("value"))
    expected = loaded.signatures["traverse"](code=tf.constant("c2:1"), steps=tf.constant(steps),
                                             rows=tf.constant(rows), seed=tf.constant(seed3))["grid_uint8"].numpy()
    np.testing.assert_array_equal(grid, expected)
    assert grid.shape == (rows * 28, steps * 28, 1)
    grid_job = _run_command(state["command"], tmp_path / "grid.png")

    for job, path in ((image_job, tmp_path / "image.png"), (grid_job, tmp_path / "grid.png")):
        stdout, stderr = job.communicate(timeout=180)
        assert job.returncode == 0, stderr[-2000:]
    written = tf.io.decode_png(open(tmp_path / "image.png", "rb").read()).numpy()
    assert written.shape == (30, 30, 1) and np.all(written[0] == 255) and np.all(written[:, 0] == 255)
    np.testing.assert_array_equal(written[1:29, 1:29], image)
    np.testing.assert_array_equal(tf.io.decode_png(open(tmp_path / "grid.png", "rb").read()).numpy(), grid)


def test_browser_bad_input_shows_a_message_and_the_page_stays_usable(browser, server, loaded):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(server.url)
    _shown(_settle(browser))
    error = browser.find_element(By.ID, "error")

    seed_box = browser.find_element(By.ID, "seed")
    seed_box.clear()
    seed_box.send_keys("12x")
    state = _settle(browser)
    assert state["error"] == "seed: '12x' is not an integer; expected one in [0, 2147483647]"
    assert error.is_displayed() and "seed" in error.text

    seed_box.clear()
    seed_box.send_keys("5")
    state = _settle(browser)
    assert not error.is_displayed()
    seed, codes = _page_codes(browser)
    assert seed == 5
    np.testing.assert_array_equal(_shown(state), _expected(loaded, seed, codes))

    # a class the selector should not offer (a page edited by hand, or an old page against a new model)
    browser.execute_script(
        "const s = document.getElementById('code-digit'); s.append(new Option('12', '12')); s.value = '12';"
        "s.dispatchEvent(new Event('change'));")
    state = _settle(browser)
    assert state["error"].startswith("digit: '12' is not a class of this code") and error.is_displayed()
    Select(browser.find_element(By.ID, "code-digit")).select_by_value("4")
    state = _settle(browser)
    seed, codes = _page_codes(browser)
    assert codes["digit"] == 4 and not error.is_displayed()
    np.testing.assert_array_equal(_shown(state), _expected(loaded, seed, codes))

    # requests from the page's own context: a bad one answers 400 with a message, the next good one works
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('api/image?digit=99&c1=x').then(async r => done([r.status, (await r.json()).error]));")
    assert status[0] == 400 and status[1].startswith("digit:")
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('api/image?digit=1').then(async r => done([r.status, (await r.json()).codes.digit]));")
    assert status == [200, 1]
    assert server.proc.poll() is None
