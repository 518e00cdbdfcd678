"""A non-Rust client of the Arrears daemon: stubs generated from proto/ with
grpcio-tools at run time, then the calls a collector app makes.

Usage: e2e_client.py HOST:PORT SUPERVISOR_TOKEN COLLECTOR_TOKEN
Exits non-zero with a message on the first expectation that does not hold.
"""

import os
import sys
import tempfile
import time

import grpc
from grpc_tools import protoc

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
PROTO_DIR = os.path.join(ROOT, "proto")


def generate(out_dir):
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"-I{include}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            os.path.join(PROTO_DIR, "arrears", "v1", "arrears.proto"),
        ]
    )
    if rc != 0:
        sys.exit(f"protoc failed with {rc}")
    sys.path.insert(0, out_dir)


def expect(cond, what):
    if not cond:
        sys.exit(f"FAILED: {what}")


def main():
    addr, sup_token, collector_token = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as out:
        generate(out)
        from arrears.v1 import arrears_pb2 as pb
        from arrears.v1 import arrears_pb2_grpc as rpc

        channel = grpc.insecure_channel(addr)
        grpc.channel_ready_future(channel).result(timeout=30)
        sup = [("authorization", f"Bearer {sup_token}")]
        chen = [("authorization", f"Bearer {collector_token}")]
        worklists = rpc.WorklistsStub(channel)
        admin = rpc.AdminStub(channel)

        # The daemon serves while its first run is still going; worklists exist after it.
        deadline = time.monotonic() + 60
        while True:
            health = admin.Health(pb.HealthRequest(), metadata=sup)
            if health.last_run_as_of or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        expect(health.rules_hash, "health reports the rules hash")
        expect(health.last_run_as_of, "the first run finished within 60 s")

        # Paging through a group's worklist: every entry once, as many as `total`.
        seen, token, total = set(), "", None
        while True:
            page = worklists.GetWorklist(
                pb.GetWorklistRequest(
                    scope=pb.WorklistScope(group="general"),
                    page_size=5,
                    page_token=token,
                ),
                metadata=sup,
            )
            total = page.total if total is None else total
            for e in page.entries:
                expect(e.customer_id not in seen, f"customer {e.customer_id} twice")
                seen.add(e.customer_id)
                expect(e.amount.currency == "EUR", "amounts in the base currency")
            if not page.next_page_token:
                break
            token = page.next_page_token
        expect(total and len(seen) == total, f"paged {len(seen)} of {total}")

        # Errors arrive as proper status codes.
        try:
            worklists.GetWorklist(pb.GetWorklistRequest(), metadata=[("authorization", "Bearer nope-nope-nope-nope")])
            expect(False, "a bad token is refused")
        except grpc.RpcError as e:
            expect(e.code() == grpc.StatusCode.UNAUTHENTICATED, f"bad token: {e.code()}")
        try:
            worklists.GetWorklist(
                pb.GetWorklistRequest(scope=pb.WorklistScope(collector="dara")), metadata=chen
            )
            expect(False, "a collector may not read a colleague's worklist")
        except grpc.RpcError as e:
            expect(e.code() == grpc.StatusCode.PERMISSION_DENIED, f"colleague: {e.code()}")
        try:
            worklists.GetWorklist(
                pb.GetWorklistRequest(scope=pb.WorklistScope(group="general"), page_size=10**6),
                metadata=sup,
            )
            expect(False, "an oversized page is refused")
        except grpc.RpcError as e:
            expect(e.code() == grpc.StatusCode.INVALID_ARGUMENT, f"page size: {e.code()}")

        # A watch: the snapshot, then an update after a run reassigns work; then the
        # client disconnects mid-stream, which the daemon must shrug off.
        stream = worklists.WatchWorklist(
            pb.WatchWorklistRequest(scope=pb.WorklistScope(mine=True)), metadata=chen
        )
        first = next(stream)
        expect(first.kind == pb.WorklistUpdate.SNAPSHOT, "the first message is a snapshot")
        expect(
            all(e.collector in ("", "chen") for e in first.upserted),
            "chen's stream holds only chen's and unassigned work",
        )
        stream.cancel()

        admin.TriggerRun(pb.TriggerRunRequest(full=True), metadata=sup)
        health = admin.Health(pb.HealthRequest(), metadata=sup)
        expect(health.last_run_as_of, "the daemon still answers after the cancelled stream")
        print(f"python client ok: {len(seen)} entries paged, snapshot of {len(first.upserted)}")


if __name__ == "__main__":
    main()
