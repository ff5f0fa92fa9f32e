"""The seed's PHP client flow, step by step, from Python's grpcio.

Stubs are generated from proto/export.proto at test time (grpcio-tools), and
the real `fluxo-export-server` binary is started on free loopback ports.

    pip install grpcio grpcio-tools pytest
    make build && make python-test
    (or FLUXO_SERVER_BIN=/path/to/fluxo-export-server pytest python-tests; the
    default is ~/.cache/fluxo/target/release/fluxo-export-server, or under
    $CARGO_TARGET_DIR)
"""

import hashlib
import importlib
import json
import os
import queue
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "py-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_binary():
    explicit = os.environ.get("FLUXO_SERVER_BIN")
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/fluxo/target"))
    return str(Path(target) / "release" / "fluxo-export-server")


@pytest.fixture(scope="session")
def stubs(tmp_path_factory):
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("stubs")
    rc = protoc.main(
        [
            "protoc",
            f"-I{ROOT / 'proto'}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(ROOT / "proto" / "export.proto"),
        ]
    )
    assert rc == 0, "protoc failed"
    sys.path.insert(0, str(out))
    return importlib.import_module("export_pb2"), importlib.import_module("export_pb2_grpc")


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    binary = server_binary()
    if not os.path.exists(binary):
        pytest.fail(f"{binary} is missing: cargo build --release --features server --bin fluxo-export-server")
    base = tmp_path_factory.mktemp("server")
    grpc_port, status_port, metrics_port = free_port(), free_port(), free_port()
    config = base / "server.ini"
    config.write_text(
        "\n".join(
            [
                f"fluxo.grpc_listen = 127.0.0.1:{grpc_port}",
                f"fluxo.status_listen = 127.0.0.1:{status_port}",
                f"fluxo.metrics_listen = 127.0.0.1:{metrics_port}",
                f"fluxo.local_dir = {base / 'out'}",
                f"fluxo.work_dir = {base / 'work'}",
                f"fluxo.auth_token = {TOKEN}",
                f"fluxo.public_base_url = http://127.0.0.1:{status_port}",
                "fluxo.download_secret = py-download-secret",
                "fluxo.log_level = info",
                "fluxo.shutdown_timeout = 10",
                "",
            ]
        )
    )
    log = open(base / "server.log", "wb")
    proc = subprocess.Popen([binary, "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/health/ready", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError((base / "server.log").read_text())
        time.sleep(0.1)
    yield {
        "grpc": f"127.0.0.1:{grpc_port}",
        "status": f"http://127.0.0.1:{status_port}",
        "metrics": f"http://127.0.0.1:{metrics_port}",
        "log": base / "server.log",
        "proc": proc,
    }
    proc.terminate()  # SIGTERM: graceful drain
    assert proc.wait(timeout=30) == 0, (base / "server.log").read_text()
    log.close()


AUTH = (("authorization", f"Bearer {TOKEN}"),)


class Stream:
    """A bidi call fed from a queue: the seed's PHP client sends the metadata,
    reads the task id, then writes batches and half-closes."""

    DONE = object()

    def __init__(self, stub, metadata=AUTH):
        self.q = queue.Queue()
        self.call = stub.StreamExport(self._requests(), metadata=metadata)

    def _requests(self):
        while True:
            item = self.q.get()
            if item is Stream.DONE:
                return
            yield item

    def write(self, request):
        self.q.put(request)

    def writes_done(self):
        self.q.put(Stream.DONE)

    def read(self):
        return next(self.call)


def columns(pb):
    return [
        pb.ColumnDefinition(name="Order ID", data_type=pb.DATA_TYPE_STRING),
        pb.ColumnDefinition(name="Amount", data_type=pb.DATA_TYPE_NUMBER, format="#,##0.00"),
        pb.ColumnDefinition(name="Paid at", data_type=pb.DATA_TYPE_DATE),
        pb.ColumnDefinition(name="Paid", data_type=pb.DATA_TYPE_BOOLEAN),
    ]


def test_seed_flow_step_by_step(stubs, server):
    pb, pb_grpc = stubs
    with grpc.insecure_channel(server["grpc"]) as channel:
        stub = pb_grpc.ExportServiceStub(channel)
        s = Stream(stub)
        # 1. metadata
        s.write(
            pb.ExportRequest(
                metadata=pb.ExportMetadata(
                    request_id="py-seed-1",
                    format=pb.FORMAT_CSV,
                    filename="orders.csv",
                    columns=columns(pb),
                    options=pb.FormatOptions(csv_delimiter=";", csv_encoding="UTF-8"),
                    total_records=1000,
                )
            )
        )
        # 2. the task id comes back right away
        first = s.read()
        assert first.task_id
        assert first.status in (pb.TASK_STATUS_QUEUED, pb.TASK_STATUS_PROCESSING)
        # 3. batches
        for seq in range(1, 11):
            records = [
                pb.Record(values=[f"{seq:03d}{i:015d}", f"{i}.5", "2026-11-29 10:00:00", "true"])
                for i in range(100)
            ]
            s.write(pb.ExportRequest(batch=pb.DataBatch(records=records, batch_sequence=seq)))
        # 4. half-close
        s.writes_done()
        # 5. final response
        final = s.read()
        assert final.status == pb.TASK_STATUS_COMPLETED, final
        assert final.task_id == first.task_id
        assert final.record_count == 1000
        assert final.progress_percent == 100
        assert final.oss_url.startswith(server["status"] + "/v1/files/")
        # 6. QueryTaskStatus
        status = stub.QueryTaskStatus(pb.TaskStatusRequest(task_id=first.task_id), metadata=AUTH)
        assert status.status == pb.TASK_STATUS_COMPLETED
        assert status.records_processed == 1000
        assert status.checksum_sha256 == final.checksum_sha256

    # The signed URL downloads the file; its sha256 is the reported one.
    with urllib.request.urlopen(final.oss_url) as r:
        body = r.read()
    assert hashlib.sha256(body).hexdigest() == final.checksum_sha256
    text = body.decode("utf-8-sig")
    assert text.splitlines()[0] == "Order ID;Amount;Paid at;Paid"
    assert "001000000000000000;" in text

    # The status API answers the same as JSON.
    req = urllib.request.Request(
        f"{server['status']}/v1/tasks/{first.task_id}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(req) as r:
        doc = json.load(r)
    assert doc["status"] == "TASK_STATUS_COMPLETED"
    assert doc["record_count"] == 1000


def test_errors_are_invalid_argument_and_auth_is_required(stubs, server):
    pb, pb_grpc = stubs
    with grpc.insecure_channel(server["grpc"]) as channel:
        stub = pb_grpc.ExportServiceStub(channel)
        with pytest.raises(grpc.RpcError) as e:
            stub.QueryTaskStatus(pb.TaskStatusRequest(task_id="x"))
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED

        s = Stream(stub)
        s.write(
            pb.ExportRequest(
                metadata=pb.ExportMetadata(format=pb.FORMAT_EXCEL, filename="x", columns=columns(pb))
            )
        )
        task_id = s.read().task_id
        s.write(
            pb.ExportRequest(
                batch=pb.DataBatch(
                    records=[pb.Record(values=["1", "one hundred", "", ""])], batch_sequence=1
                )
            )
        )
        with pytest.raises(grpc.RpcError) as e:
            s.read()
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert 'batch_sequence 1, record 0, column 1 "Amount"' in e.value.details()
        status = stub.QueryTaskStatus(pb.TaskStatusRequest(task_id=task_id), metadata=AUTH)
        for _ in range(100):
            if status.status == pb.TASK_STATUS_FAILED:
                break
            time.sleep(0.05)
            status = stub.QueryTaskStatus(pb.TaskStatusRequest(task_id=task_id), metadata=AUTH)
        assert status.status == pb.TASK_STATUS_FAILED
        assert "column 1" in status.error_message


def test_cancel_leaves_a_cancelled_task(stubs, server):
    pb, pb_grpc = stubs
    with grpc.insecure_channel(server["grpc"]) as channel:
        stub = pb_grpc.ExportServiceStub(channel)
        s = Stream(stub)
        s.write(pb.ExportRequest(metadata=pb.ExportMetadata(format=pb.FORMAT_CSV, columns=columns(pb))))
        task_id = s.read().task_id
        s.write(
            pb.ExportRequest(
                batch=pb.DataBatch(records=[pb.Record(values=["1", "2", "", ""])], batch_sequence=1)
            )
        )
        time.sleep(0.2)
        s.call.cancel()
        for _ in range(200):
            status = stub.QueryTaskStatus(pb.TaskStatusRequest(task_id=task_id), metadata=AUTH)
            if status.status >= pb.TASK_STATUS_COMPLETED:
                break
            time.sleep(0.05)
        assert status.status == pb.TASK_STATUS_CANCELLED, status


def test_logs_are_seed_shaped_json(stubs, server):
    lines = [json.loads(l) for l in server["log"].read_text().splitlines() if l.startswith("{")]
    assert lines, "no JSON log lines"
    for key in ("timestamp", "level", "task_id", "component", "event", "message", "fields", "duration"):
        assert key in lines[0], lines[0]
    assert any(l["task_id"] for l in lines)
