"""Fluxo\\Server: the gRPC service started from a PHP CLI process (extension
built with `--features php,server`), sharing its task manager with an
in-process Fluxo\\Exporter. Skipped when no such extension is given.

    make build && make python-test
    (or FLUXO_SERVER_SO=/path/to/libfluxo.so pytest python-tests; the default is
    ~/.cache/fluxo/target/php/libfluxo.so, or under $CARGO_TARGET_DIR)
"""

import os
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from test_grpc import Stream, columns, free_port, stubs  # noqa: F401 (fixture)

SCRIPT = r"""<?php
[$_, $grpc, $status, $metrics, $dir] = $argv;
Fluxo\Server::start([
    'grpc_listen' => $grpc,
    'status_listen' => $status,
    'metrics_listen' => $metrics,
    'shutdown_timeout' => 10,
]);
try {
    Fluxo\Server::start(['grpc_listen' => $grpc]);
} catch (Fluxo\ExportException $e) {
    fwrite(STDERR, "second start refused: {$e->getMessage()}\n");
}
$e = new Fluxo\Exporter(['columns' => ['a', 'b']]);
$e->addBatch([[1, 'x'], [2, 'y']]);
$id = $e->finishAsync();
echo "READY $id\n";
while (!file_exists("$dir/stop")) {
    usleep(50000);
}
Fluxo\Server::stop();
echo Fluxo\Server::running() ? "STILL RUNNING\n" : "STOPPED\n";
"""


def extension():
    so = os.environ.get("FLUXO_SERVER_SO")
    if not so:
        # Where `make build` puts the extension (built with php,server).
        target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/fluxo/target"))
        default = Path(target) / "php/libfluxo.so"
        so = str(default) if default.exists() else None
    return so


@pytest.mark.skipif(extension() is None, reason="set FLUXO_SERVER_SO to a php,server build")
def test_embedded_server_serves_grpc_and_shares_tasks(stubs, tmp_path):  # noqa: F811
    pb, pb_grpc = stubs
    script = tmp_path / "server.php"
    script.write_text(SCRIPT)
    g, s, m = free_port(), free_port(), free_port()
    proc = subprocess.Popen(
        [
            "php",
            "-d", f"extension={extension()}",
            "-d", f"fluxo.local_dir={tmp_path / 'out'}",
            "-d", f"fluxo.work_dir={tmp_path / 'work'}",
            str(script),
            f"127.0.0.1:{g}", f"127.0.0.1:{s}", f"127.0.0.1:{m}", str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY "), line + proc.stderr.read()
        php_task = line.split()[1]
        with grpc.insecure_channel(f"127.0.0.1:{g}") as channel:
            stub = pb_grpc.ExportServiceStub(channel)
            st = Stream(stub, metadata=())
            st.write(pb.ExportRequest(metadata=pb.ExportMetadata(format=pb.FORMAT_CSV, columns=columns(pb))))
            first = st.read()
            st.write(
                pb.ExportRequest(
                    batch=pb.DataBatch(
                        records=[pb.Record(values=["1", "2.5", "2026-11-29", "yes"])], batch_sequence=1
                    )
                )
            )
            st.writes_done()
            final = st.read()
            assert final.status == pb.TASK_STATUS_COMPLETED, final
            assert final.task_id == first.task_id
            # The PHP process's own export is visible through the server.
            for _ in range(100):
                status = stub.QueryTaskStatus(pb.TaskStatusRequest(task_id=php_task))
                if status.status == pb.TASK_STATUS_COMPLETED:
                    break
                time.sleep(0.05)
            assert status.status == pb.TASK_STATUS_COMPLETED
            assert status.record_count == 2
    finally:
        (tmp_path / "stop").write_text("")
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.strip().endswith("STOPPED"), out + err
    assert "second start refused" in err
