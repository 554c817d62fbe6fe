#!/usr/bin/env python3
"""Minimal QMP client for the bench scripts: run one command, or run a migration to completion.

    qmp.py SOCKET COMMAND [ARGUMENTS_JSON]   prints the command's return value as JSON
    qmp.py SOCKET migrate URI [--timeout S]  migrates, waits until done, prints the final query-migrate
"""
import argparse
import json
import socket
import sys
import time


class QmpError(Exception):
    pass


class Qmp:
    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.reader = self.sock.makefile("r", encoding="utf-8")
        self._read()  # greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict:
        line = self.reader.readline()
        if not line:
            raise QmpError("QEMU closed the QMP connection")
        return json.loads(line)

    def execute(self, command: str, arguments: dict | None = None):
        request = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self.sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise QmpError(f"{command}: {reply['error'].get('desc', reply['error'])}")
            # Anything else is an asynchronous event, which these scripts do not need.


def migrate(qmp: Qmp, uri: str, timeout: float) -> dict:
    qmp.execute("migrate", {"uri": uri})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = qmp.execute("query-migrate")
        status = info.get("status")
        if status == "completed":
            return info
        if status in ("failed", "cancelled"):
            raise QmpError(f"migration {status}: {info.get('error-desc', 'no reason given')}")
        time.sleep(0.2)
    qmp.execute("migrate_cancel")
    raise QmpError(f"migration did not complete within {timeout:.0f}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("socket")
    parser.add_argument("command")
    parser.add_argument("argument", nargs="?", help="JSON arguments, or the URI for migrate")
    parser.add_argument("--timeout", type=float, default=600, help="migrate only: seconds to wait")
    args = parser.parse_args()
    if args.command == "migrate" and not args.argument:
        parser.error("migrate needs a URI")
    try:
        qmp = Qmp(args.socket)
        if args.command == "migrate":
            result = migrate(qmp, args.argument, args.timeout)
        else:
            result = qmp.execute(args.command, json.loads(args.argument) if args.argument else None)
    except (OSError, QmpError) as e:
        print(f"qmp.py: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
