"""The latent explorer's server side (library; CLI: `tf_ssinfogan.explore`): one export, its page, its HTTP API.

`resolve_export(path)` finds the SavedModel version folder of a version folder, its parent (newest version) or a
run folder (its newest export). `Explorer(folder)` reads only the export (the signatures, `assets.extra/
model_info.json`, `model_card.json`). `make_server(explorer, host, port)` is a `ThreadingHTTPServer` serving the
page (`explore_files/index.html`, vanilla JavaScript, nothing fetched from elsewhere) and:

  GET /api/spec                                   codes (kinds, dims, class names, slider ranges), traversable
                                                  codes, the model card's key facts
  GET /api/image?seed=S&<code>=<value>...         one image
  GET /api/grid?code=C&steps=N&rows=R&seed=S      a traversal grid

A value is a class index for a categorical code and comma-separated floats for a continuous or binary code (the
format of `tf-ssinfogan-sample --code`); a code left out is 0. Answers are JSON: `png` (base64 PNG bytes),
`command` (the `tf-ssinfogan-sample` call that writes the same pixels), `seq`, `ms` (model time), and the values
used. What the page shows is defined by the SavedModel alone:

  image: `sample(batch_size=1, seed=S, <code>=<value>, <code>_fixed=True for every code)["images_uint8"][0]`:
         the noise is the SavedModel's stateless draw for seed S, exactly what `tf-ssinfogan-sample --num 1
         --seed S --code ...` draws (that command writes the same pixels inside the 1-pixel white frame it puts
         around every grid cell);
  grid:  `traverse(code=C, steps=N, rows=R, seed=S)["grid_uint8"]`; `tf-ssinfogan-sample --traverse C --steps N
         --num R --seed S` writes the same PNG.

Bad input (an unknown parameter, an out-of-range class, a non-numeric value) answers 400 with `{"error": ...}`
and the server keeps serving; anything unexpected answers 500 with a one-line message, never a traceback.
Newest wins: model calls are serialised, and a request that carries `client` and `seq` is answered 204 without
being computed when the same client sent a higher `seq` meanwhile (the page also keeps at most one request in
flight and then sends only the latest position).
"""

from __future__ import annotations

import base64
import collections
import errno
import ipaddress
import json
import os
import shlex
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from tf_ssinfogan import cli

PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "explore_files", "index.html")
INFO_FILE = os.path.join("assets.extra", "model_info.json")
CARD_FILE = os.path.join("assets.extra", "model_card.json")
SLIDER_RANGE = (-2.0, 2.0)  # continuous codes: the prior U(-1, 1) and a little beyond (marked on the page)
MAX_SEED = 2 ** 31 - 1
MAX_STEPS, MAX_ROWS = 32, 16  # a grid of the page (the signature allows more)
MAX_CLIENTS = 256  # sequence numbers remembered (oldest client forgotten first)
SAMPLE_COMMAND = "tf-ssinfogan-sample"
EXPECTED = ("an exported SavedModel: a version folder holding saved_model.pb and assets.extra/model_info.json "
            "(e.g. runs/quickstart/export/ssinfogan/1), its parent (runs/quickstart/export/ssinfogan: the newest "
            "version) or a run folder with an export (runs/quickstart)")


class RequestError(ValueError):
    """A bad request (answered 400 with the message)."""


# ------------------------------------------------------------------------------------------ the export
def _is_version(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "saved_model.pb"))


def _newest_version(model_dir: str) -> Optional[str]:
    if not os.path.isdir(model_dir):
        return None
    versions = sorted((int(d) for d in os.listdir(model_dir)
                       if d.isdigit() and _is_version(os.path.join(model_dir, d))), reverse=True)
    return os.path.join(model_dir, str(versions[0])) if versions else None


def resolve_export(path: str) -> str:
    """The SavedModel version folder that `path` names (see `--model`); raises cli.UsageError saying what was
    expected."""
    if not path:
        raise cli.UsageError(f"--model is required: {EXPECTED}")
    if not os.path.exists(path):
        raise cli.UsageError(f"--model {path!r} does not exist; expected {EXPECTED}")
    folder = None
    if _is_version(path):
        folder = path
    elif _newest_version(path):
        folder = _newest_version(path)
    elif os.path.isdir(os.path.join(path, "export")):
        base = os.path.join(path, "export")
        models = sorted(d for d in os.listdir(base) if _newest_version(os.path.join(base, d)))
        if len(models) > 1 and "ssinfogan" in models:
            models = ["ssinfogan"]
        if len(models) > 1:
            raise cli.UsageError(f"--model {path!r}: the run has several exported models {models}; name one "
                                 f"(e.g. {os.path.join(base, models[0])})")
        if models:
            folder = _newest_version(os.path.join(base, models[0]))
    if folder is None:
        raise cli.UsageError(f"--model {path!r} is not an export; expected {EXPECTED}")
    if not os.path.isfile(os.path.join(folder, INFO_FILE)):
        raise cli.UsageError(f"--model {path!r}: {folder} has no {INFO_FILE} (not exported by tf_ssinfogan?); "
                             f"expected {EXPECTED}")
    return os.path.abspath(folder)


def read_json(path: str) -> Optional[dict]:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _pct(value) -> str:
    return "n/a" if not isinstance(value, (int, float)) else f"{100 * value:.2f}%"


def card_facts(card: Optional[dict]) -> list:
    """[label, text] pairs of the model card's key facts (data, labelled fraction, measured accuracy)."""
    if not card:
        return [["model card", "none in this export"]]
    data, metrics = card.get("data") or {}, card.get("metrics") or {}
    facts = [["model", card.get("model", "?")],
             ["trained", f"{card.get('step', '?')} steps, {card.get('architecture', '?')} networks"]]
    if data:
        facts.append(["data set", f"{data.get('dataset')} ({data.get('location')})"])
        facts.append(["training images", f"{data.get('train_images')}"])
        facts.append(["labelled", f"{data.get('labelled_images')} images ({_pct(data.get('labelled_fraction'))})"])
    for name, r in (metrics.get("classifier_accuracy_on_class_conditioned_samples") or {}).items():
        facts.append([f"samples recognised as the intended {name}",
                      f"{_pct(r.get('accuracy'))} of {r.get('samples')} (independent classifier)"])
    for name, acc in (metrics.get("q_ss_test_accuracy") or {}).items():
        facts.append([f"Q accuracy on real test images ({name})", _pct(acc)])
    if not metrics:
        facts.append(["measured quality", "not recorded"])
    else:
        facts.append(["measured at step", f"{metrics.get('step')}"])
    licence = (card.get("licence") or {}).get("training_data")
    if licence:
        facts.append(["training data licence", licence])
    return facts


# ------------------------------------------------------------------------------------------ the model side
class Explorer:
    """The loaded export: request checks, images, grids, commands; thread-safe, newest request wins."""

    def __init__(self, folder: str):
        import tensorflow as tf

        from tf_ssinfogan.serving import tflite
        from tf_ssinfogan.serving import saved_model
        from tf_ssinfogan.config import CodeSpec, LatentConfig
        from tf_ssinfogan.model.latents import LatentSpace, kind_of

        self.folder = folder
        self.info = read_json(os.path.join(folder, INFO_FILE))
        self.card = read_json(os.path.join(folder, CARD_FILE))
        codes = tuple(CodeSpec(c["name"], c["kind"], c["dim"], c.get("label")) for c in self.info["codes"])
        self.space = LatentSpace(LatentConfig(self.info["noise_dim"], self.info["noise_distribution"], codes))
        self.codes = {c.name: c for c in codes}
        self._tf, self._serving, self._tflite, self._kind_of = tf, saved_model, tflite, kind_of
        self.traverse_choices = [name for name, _, _ in saved_model.traverse_choices(self.space)]
        try:
            self._loaded = tf.saved_model.load(folder)
        except Exception as e:  # noqa: BLE001 - any reason the folder does not load is bad input here
            raise cli.UsageError(f"--model {folder!r} does not load as a SavedModel ({type(e).__name__}: "
                                 f"{str(e)[:300]}); expected {EXPECTED}") from None
        missing = {saved_model.SAMPLE, saved_model.TRAVERSE} - set(self._loaded.signatures)
        if missing:
            raise cli.UsageError(f"--model {folder!r} has no {sorted(missing)} signature(s) (exported by an older "
                                 "tf_ssinfogan?); export the run again")
        self._sample = self._loaded.signatures[saved_model.SAMPLE]
        self._traverse = self._loaded.signatures[saved_model.TRAVERSE]
        self._lock = threading.Lock()  # one model call at a time
        self._seq_lock = threading.Lock()
        self._latest = collections.OrderedDict()  # client -> highest seq seen
        self.computed = 0  # model calls made (superseded requests are not computed)
        self.superseded = 0
        self.image(0, {})  # the first call of each signature costs 0.1-0.2 s more: not the user's first move
        self.grid(self.traverse_choices[0], 7, 4, 0)

    # -- what the page needs
    def spec(self) -> dict:
        names = self.info.get("class_names") or {}
        codes = []
        for c in self.info["codes"]:
            entry = dict(c, widget=self._kind_of(self.codes[c["name"]]).widget)
            if entry["widget"] == "choice":
                entry["class_names"] = names.get(c["name"]) or [str(i) for i in range(c["dim"])]
            elif entry["widget"] == "slider":
                entry["prior"], entry["slider"] = [-1.0, 1.0], list(SLIDER_RANGE)
            codes.append(entry)
        return {"model": self.folder, "image_shape": self.info["image_shape"], "noise_dim": self.info["noise_dim"],
                "noise_distribution": self.info["noise_distribution"], "codes": codes,
                "traverse": self.traverse_choices, "max_seed": MAX_SEED, "max_steps": MAX_STEPS,
                "max_rows": MAX_ROWS, "facts": card_facts(self.card)}

    # -- request checks
    @staticmethod
    def _int(params: Dict[str, str], name: str, low: int, high: int, default: int = None) -> int:
        text = params.get(name)
        if text is None or text == "":
            if default is None:
                raise RequestError(f"{name}: missing; expected an integer in [{low}, {high}]")
            return default
        try:
            value = int(text.strip())
        except ValueError:
            raise RequestError(f"{name}: {text!r} is not an integer; expected one in [{low}, {high}]") from None
        if not low <= value <= high:
            raise RequestError(f"{name}: {value} is outside [{low}, {high}]")
        return value

    def _client(self, params: Dict[str, str]) -> Tuple[Optional[str], Optional[int]]:
        client = params.get("client")
        if client is not None and not (0 < len(client) <= 64):
            raise RequestError("client: expected 1 to 64 characters")
        seq = self._int(params, "seq", 0, 2 ** 53, default=-1) if "seq" in params else None
        return client, seq

    def _check_names(self, params: Dict[str, str], allowed) -> None:
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise RequestError(f"unknown parameter(s) {unknown}; expected {sorted(allowed)}")

    def parse_image(self, params: Dict[str, str]) -> Tuple[int, dict]:
        """(seed, {code: value}) of an image request; a missing code is 0 (class 0, 0.0, bit 0)."""
        self._check_names(params, {"seed", "client", "seq", *self.codes})
        seed = self._int(params, "seed", 0, MAX_SEED, default=0)
        fixed = {}
        for name, code in self.codes.items():
            kind = self._kind_of(code)
            text = params.get(name, "0").strip()
            try:
                value = kind.parse(code, text)
                kind.check_numpy(code, kind.numpy_value(code, value))
            except ValueError:
                if kind.enumerable:
                    raise RequestError(f"{name}: {text!r} is not a class of this code; expected a class index, an "
                                       f"integer in [0, {code.dim})") from None
                expected = "a finite number" if code.dim == 1 else f"1 or {code.dim} comma-separated finite numbers"
                raise RequestError(f"{name}: {text!r} is not {expected}") from None
            fixed[name] = value
        return seed, fixed

    def parse_grid(self, params: Dict[str, str]) -> Tuple[str, int, int, int]:
        self._check_names(params, {"code", "steps", "rows", "seed", "client", "seq"})
        code = params.get("code", "")
        if code not in self.traverse_choices:
            raise RequestError(f"code: {code!r} is not a code of this model; expected one of {self.traverse_choices}")
        steps = self._int(params, "steps", 2, MAX_STEPS, default=7)
        rows = self._int(params, "rows", 1, MAX_ROWS, default=4)
        seed = self._int(params, "seed", 0, MAX_SEED, default=0)
        return code, steps, rows, seed

    # -- the model
    def image(self, seed: int, fixed: dict):
        """uint8 [H, W, C]: `sample` with every code fixed (the request `tf-ssinfogan-sample` builds)."""
        tf = self._tf
        request = self._tflite.sample_request(self.space, 1, fixed, seed=seed)
        out = self._sample(**{k: tf.constant(v) for k, v in request.items()})
        return out["images_uint8"].numpy()[0]

    def grid(self, code: str, steps: int, rows: int, seed: int):
        """uint8 [rows * H, steps * W, C] (the `traverse` signature's grid) and the swept values."""
        tf = self._tf
        out = self._traverse(code=tf.constant(code), steps=tf.constant(steps, tf.int32),
                             rows=tf.constant(rows, tf.int32), seed=tf.constant(seed, tf.int32))
        return out["grid_uint8"].numpy(), out["values"].numpy().tolist()

    def png(self, image) -> bytes:
        return self._tf.io.encode_png(self._tf.constant(image)).numpy()

    # -- commands
    def image_command(self, seed: int, fixed: dict) -> str:
        parts = [SAMPLE_COMMAND, "--model", self.folder, "--num", "1", "--seed", str(seed)]
        for name, value in fixed.items():
            text = str(value) if isinstance(value, int) else ",".join(repr(float(v)) for v in value)
            parts += ["--code", f"{name}={text}"]
        return " ".join(shlex.quote(p) for p in parts + ["--out", "explore.png"])

    def grid_command(self, code: str, steps: int, rows: int, seed: int) -> str:
        parts = [SAMPLE_COMMAND, "--model", self.folder, "--traverse", code, "--steps", str(steps), "--num",
                 str(rows), "--seed", str(seed), "--out", "explore_grid.png"]
        return " ".join(shlex.quote(p) for p in parts)

    # -- newest wins
    def _note(self, client, seq) -> None:
        if client is None or seq is None:
            return
        with self._seq_lock:
            if seq > self._latest.get(client, -1):
                self._latest[client] = seq
            self._latest.move_to_end(client)
            while len(self._latest) > MAX_CLIENTS:
                self._latest.popitem(last=False)

    def _is_superseded(self, client, seq) -> bool:
        if client is None or seq is None:
            return False
        with self._seq_lock:
            return self._latest.get(client, -1) > seq

    def handle(self, what: str, params: Dict[str, str]) -> Tuple[int, Optional[dict]]:
        """(HTTP status, JSON body) of an 'image' or 'grid' request; 204 (no body) when superseded."""
        try:
            client, seq = self._client(params)
            parsed = self.parse_image(params) if what == "image" else self.parse_grid(params)
        except RequestError as e:
            return 400, {"error": str(e)}
        self._note(client, seq)
        with self._lock:
            if self._is_superseded(client, seq):
                self.superseded += 1
                return 204, None
            t = time.perf_counter()
            try:
                if what == "image":
                    array, values = self.image(*parsed), None
                else:
                    array, values = self.grid(*parsed)
            except self._tf.errors.InvalidArgumentError as e:  # the SavedModel's own checks
                return 400, {"error": self._serving.error_message(e)}
            self.computed += 1
        body = {"png": base64.b64encode(self.png(array)).decode("ascii"), "seq": seq,
                "ms": round((time.perf_counter() - t) * 1e3, 2), "shape": list(array.shape)}
        if what == "image":
            seed, fixed = parsed
            body.update(seed=seed, codes=fixed, command=self.image_command(seed, fixed))
        else:
            code, steps, rows, seed = parsed
            body.update(seed=seed, code=code, steps=steps, rows=rows, values=values,
                        command=self.grid_command(code, steps, rows, seed))
        return 200, body


# ------------------------------------------------------------------------------------------ HTTP
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the page's requests reuse one connection
    disable_nagle_algorithm = True  # headers and body leave at once (Nagle + delayed ACK cost 40 ms per answer)
    server_version = "tf-ssinfogan-explore"
    explorer: Explorer = None  # set by make_server
    page: bytes = b""

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # one line per slider move would drown the start-up message; errors are logged in _send

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        if status >= 400:
            sys.stderr.write(f"{self.command} {self.path[:200]} -> {status} {body[:300].decode(errors='replace')}\n")
        try:
            self.send_response(status)
            self.send_header("Cache-Control", "no-store")
            if status != 204:
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if status != 204:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the page moved on
            self.close_connection = True

    def _json(self, status: int, body: Optional[dict]) -> None:
        self._send(status, b"" if body is None else json.dumps(body).encode())

    def do_GET(self):  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        try:
            params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            if url.path in ("/", "/index.html"):
                self._send(200, self.page, "text/html; charset=utf-8")
            elif url.path == "/api/spec":
                self._json(200, self.explorer.spec())
            elif url.path in ("/api/image", "/api/grid"):
                self._json(*self.explorer.handle(url.path.rsplit("/", 1)[1], params))
            elif url.path == "/favicon.ico":
                self._send(204)
            else:
                self._json(404, {"error": f"no such page {url.path!r}; the explorer is at /"})
        except Exception as e:  # noqa: BLE001 - a bug must not stop the server; the page gets a message
            self._json(500, {"error": f"internal error: {type(e).__name__}: {e}"})

    def do_POST(self):  # noqa: N802
        self._json(405, {"error": "the explorer answers GET requests only"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # listen backlog (socketserver's 5 drops a burst of new connections: 1 s retries)


class _Server6(_Server):
    address_family = socket.AF_INET6


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> ThreadingHTTPServer:
    """A server bound to (host, port) without a handler's model yet; raises cli.UsageError when it cannot bind."""
    handler = type("ExploreHandler", (Handler,), {})
    cls = _Server6 if ":" in host else _Server
    try:
        return cls((host, port), handler)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise cli.UsageError(f"port {port} on {host} is already in use (another explorer or server?); choose "
                                 "another with --port (--port 0 picks a free one)") from None
        if e.errno == errno.EACCES:
            raise cli.UsageError(f"not allowed to listen on port {port} of {host} (ports below 1024 need "
                                 "privileges); choose another with --port") from None
        raise cli.UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}; check --host") from None
    except (socket.gaierror, OverflowError) as e:
        raise cli.UsageError(f"cannot listen on {host}:{port}: {e}; check --host and --port") from None


def make_server(explorer: Explorer, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A bound server for `explorer` (serve it with `serve_forever()`; `port` 0 picks a free port)."""
    server = bind(host, port)
    attach(server, explorer)
    return server


def attach(server: ThreadingHTTPServer, explorer: Explorer) -> None:
    with open(PAGE, "rb") as f:
        server.RequestHandlerClass.page = f.read()
    server.RequestHandlerClass.explorer = explorer


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
