"""An example Arrears connector plugin: serves arrears.connector.v1.Connector
(proto/arrears/connector/v1/connector.proto) from a JSON file.

The daemon starts it as `<python> plugin.py` with ARREARS_PLUGIN_SOCKET set to a
Unix socket path; it serves on `unix:$ARREARS_PLUGIN_SOCKET` until SIGTERM (or
SIGINT), then stops the server and exits 0.

Settings (the connector's `settings:` in the daemon config, sent in Handshake):
  data_file   required; the JSON file to serve (see README.md for its shape)
  crash_file  optional; if this file exists at a Pull, it is deleted and the
              process dies with exit code 3 before sending anything
  hang_file   optional; while this file exists, a Pull never answers

Stubs are generated from the .proto at start-up into a temporary directory
(grpcio-tools), so nothing generated is kept in the repository. The proto root
is <repo>/proto, or $ARREARS_PROTO_DIR.

Only stderr is used for logging; stdout carries one line,
"plugin listening on unix:<path>", once the server is up.
"""

import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from concurrent import futures

import grpc
from grpc_tools import protoc

PROTOCOL_VERSION = "1"
PLUGIN_NAME = "example-json-file"
PLUGIN_VERSION = "1.0"
ITEMS_PER_BATCH = 2

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
PROTO_DIR = os.environ.get("ARREARS_PROTO_DIR") or os.path.join(ROOT, "proto")
PROTO_FILE = os.path.join("arrears", "connector", "v1", "connector.proto")

log = logging.getLogger("example-json-file")

# Set on SIGTERM/SIGINT; also what a "hung" Pull waits on, so that a hang does
# not keep the process alive after the server has been stopped.
stopping = threading.Event()


def load_stubs():
    """Generates the Python stubs into a temporary directory and imports them.

    The directory is removed once the modules are imported (they stay in
    memory), so nothing is left behind even when the process dies by os._exit.
    """
    out = tempfile.mkdtemp(prefix="arrears-plugin-stubs-")
    try:
        include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
        rc = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{PROTO_DIR}",
                f"-I{include}",
                f"--python_out={out}",
                f"--grpc_python_out={out}",
                os.path.join(PROTO_DIR, PROTO_FILE),
            ]
        )
        if rc != 0:
            sys.exit(f"protoc failed with {rc} (proto root {PROTO_DIR})")
        sys.path.insert(0, out)
        try:
            from arrears.connector.v1 import connector_pb2 as pb
            from arrears.connector.v1 import connector_pb2_grpc as rpc
        finally:
            sys.path.remove(out)
        return pb, rpc
    finally:
        shutil.rmtree(out, ignore_errors=True)


class DataFileError(Exception):
    pass


# Field name -> required, per record kind, as in the .proto.
CUSTOMER_FIELDS = {"company": True, "code": True, "name": True,
                   "country": False, "email": False, "phone": False}
ITEM_FIELDS = {"external_id": True, "company": True, "customer": True,
               "document_no": True, "document_date": True, "due_date": True,
               "original_amount": True, "open_amount": True, "currency": True}
PAYMENT_FIELDS = {"external_id": True, "company": True, "customer": True,
                  "amount": True, "currency": True, "value_date": True,
                  "reference": False, "item_ref": False}


def records(path, data, key, fields):
    """data[key] as a list of {field: str}, checked against `fields`."""
    rows = data.get(key, [])
    if not isinstance(rows, list):
        raise DataFileError(f"data file {path}: `{key}` is not a list")
    out = []
    for n, row in enumerate(rows):
        where = f"data file {path}: {key}[{n}]"
        if not isinstance(row, dict):
            raise DataFileError(f"{where} is not an object")
        unknown = sorted(set(row) - set(fields))
        if unknown:
            raise DataFileError(f"{where}: unknown field(s) {', '.join(unknown)}")
        clean = {}
        for field, required in fields.items():
            value = row.get(field)
            if value is None:
                if required:
                    raise DataFileError(f"{where}: `{field}` is missing")
                continue
            # Amounts are decimal strings: a JSON number could already have lost
            # precision, so it is refused rather than guessed at.
            if not isinstance(value, str):
                raise DataFileError(f"{where}: `{field}` must be a string")
            if required and not value:
                raise DataFileError(f"{where}: `{field}` is empty")
            clean[field] = value
        out.append(clean)
    return out


def read_data_file(path):
    """(version as str, customers, items, payments); DataFileError if unusable."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataFileError(f"data file {path} does not exist") from None
    except OSError as e:
        raise DataFileError(f"data file {path} cannot be read: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFileError(f"data file {path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise DataFileError(f"data file {path} is not a JSON object")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, (int, str)) or version == "":
        raise DataFileError(f"data file {path}: `version` is missing or not a number/string")
    return (
        str(version),
        records(path, data, "customers", CUSTOMER_FIELDS),
        records(path, data, "items", ITEM_FIELDS),
        records(path, data, "payments", PAYMENT_FIELDS),
    )


def batches(version, customers, items, payments):
    """The pull's batches as dicts of lists: items ITEMS_PER_BATCH at a time,
    each customer in the first batch that references it, all payments (and any
    customer nothing referenced) in the last one."""
    by_key = {(c["company"], c["code"]): c for c in customers}
    sent = set()

    def needed(rows):
        out = []
        for r in rows:
            key = (r["company"], r["customer"])
            if key in sent:
                continue
            if key not in by_key:
                # Perhaps the daemon knows the customer from an earlier pull or
                # another connector; it decides what to do with the item.
                log.warning("customer %s/%s is not in the data file", *key)
                sent.add(key)
                continue
            sent.add(key)
            out.append(by_key[key])
        return out

    chunks = [items[i:i + ITEMS_PER_BATCH] for i in range(0, len(items), ITEMS_PER_BATCH)] or [[]]
    result = []
    for n, chunk in enumerate(chunks):
        batch = {"customers": needed(chunk), "items": chunk, "payments": []}
        if n == len(chunks) - 1:
            batch["customers"] += needed(payments)
            batch["customers"] += [c for k, c in by_key.items() if k not in sent]
            batch["payments"] = payments
        result.append(batch)
    return result


def make_servicer(pb, rpc):
    class Connector(rpc.ConnectorServicer):
        def __init__(self):
            self.lock = threading.Lock()
            self.settings = None  # set by Handshake

        def current_settings(self, context):
            with self.lock:
                settings = self.settings
            if settings is None:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no Handshake yet")
            return settings

        def Handshake(self, request, context):
            if request.protocol_version != PROTOCOL_VERSION:
                log.info("Handshake: refused protocol version %r", request.protocol_version)
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"protocol version mismatch: daemon speaks {request.protocol_version!r}, "
                    f"plugin speaks {PROTOCOL_VERSION!r}",
                )
            try:
                settings = json.loads(request.settings_json or "{}")
            except json.JSONDecodeError as e:
                log.info("Handshake: settings are not JSON: %s", e)
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"settings_json is not valid JSON: {e}")
            if not isinstance(settings, dict):
                log.info("Handshake: settings are not a JSON object")
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "settings_json is not a JSON object")
            for key in ("data_file", "crash_file", "hang_file"):
                value = settings.get(key)
                if value is not None and (not isinstance(value, str) or not value):
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"setting `{key}` must be a non-empty string")
            if not settings.get("data_file"):
                log.info("Handshake: no data_file in settings")
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "setting `data_file` is required")
            with self.lock:
                self.settings = settings
            log.info("Handshake: connector %r, protocol %s, data_file %s",
                     request.connector, PROTOCOL_VERSION, settings["data_file"])
            return pb.HandshakeResponse(
                protocol_version=PROTOCOL_VERSION,
                plugin_name=PLUGIN_NAME,
                plugin_version=PLUGIN_VERSION,
            )

        def Health(self, request, context):
            with self.lock:
                settings = self.settings
            detail = f"serving {settings['data_file']}" if settings else "waiting for Handshake"
            log.info("Health: %s", detail)
            return pb.HealthResponse(ok=True, detail=detail)

        def Pull(self, request, context):
            settings = self.current_settings(context)
            crash_file = settings.get("crash_file")
            if crash_file and os.path.exists(crash_file):
                try:
                    os.remove(crash_file)
                except FileNotFoundError:
                    pass
                log.info("Pull: %s exists; simulating a crash (exit 3)", crash_file)
                os._exit(3)
            hang_file = settings.get("hang_file")
            if hang_file and os.path.exists(hang_file):
                log.info("Pull: %s exists; simulating a hang", hang_file)
                stopping.wait()  # forever, unless the plugin is being stopped
                # Never end a pull normally here: an empty OK stream would read
                # as "nothing changed".
                context.abort(grpc.StatusCode.UNAVAILABLE, "plugin is stopping")
            path = settings["data_file"]
            try:
                version, customers, items, payments = read_data_file(path)
            except DataFileError as e:
                log.info("Pull(cursor=%r): %s", request.cursor, e)
                context.abort(grpc.StatusCode.UNAVAILABLE, str(e))
            if request.cursor == version:
                log.info("Pull(cursor=%r): nothing changed", request.cursor)
                return
            plan = batches(version, customers, items, payments)
            log.info("Pull(cursor=%r): version %s, %d customers, %d items, %d payments in %d batches",
                     request.cursor, version, len(customers), len(items), len(payments), len(plan))
            for b in plan:
                yield pb.PullBatch(
                    customers=[pb.Customer(**c) for c in b["customers"]],
                    items=[pb.Item(**i) for i in b["items"]],
                    payments=[pb.Payment(**p) for p in b["payments"]],
                    next_cursor=version,
                )

    return Connector()


def main():
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format=f"{PLUGIN_NAME}[%(process)d] %(levelname)s %(message)s",
    )
    socket_path = os.environ.get("ARREARS_PLUGIN_SOCKET")
    if not socket_path:
        log.error("ARREARS_PLUGIN_SOCKET is not set")
        return 2

    pb, rpc = load_stubs()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    rpc.add_ConnectorServicer_to_server(make_servicer(pb, rpc), server)
    # grpcio (1.85) unlinks a stale socket left by a killed instance before
    # binding, and removes the socket on stop; it refuses a path that holds any
    # other kind of file, or longer than 107 bytes (sun_path).
    address = f"unix:{socket_path}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as e:
        log.error("cannot listen on %s: %s", address, e)
        return 1
    if not bound:  # older grpcio returned 0 instead of raising
        log.error("cannot listen on %s", address)
        return 1

    def on_signal(signum, _frame):
        log.info("%s: stopping", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    server.start()
    print(f"plugin listening on {address}", flush=True)
    while not stopping.wait(1.0):
        pass
    # Give in-flight calls a moment, then cancel them.
    server.stop(grace=2.0).wait()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
