"""The fetch init container: copies an artifact directory from object storage into the pod's scratch volume.

    python -m qmodel_jobs.fetch --config-json '{"uri": "s3://bucket/prefix/artifacts/<key>", "dest": "/models/x"}'

For servers that cannot stream from a bucket themselves (llama.cpp reads a local .gguf file). Exit codes as the
other jobs: 2 for a bucket or prefix that does not exist or denies access, 1 for anything a retry may fix.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from qmodel_operator.api.jobcontract import ExitCode, FetchArgs

from .common import bad_input, classify, describe, log, parse_args
from .objectstore import download, is_s3

PROG = "python -m qmodel_jobs.fetch"


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(FetchArgs, argv, PROG)
        if not is_s3(args.uri):
            raise bad_input(f"{args.uri}: fetch copies s3:// prefixes only")
        started = time.monotonic()
        dest = download(args.uri, Path(args.dest))
        files = [p for p in dest.rglob("*") if p.is_file()]
        log(f"fetched {len(files)} files, {sum(p.stat().st_size for p in files)} bytes from {args.uri} to {dest} "
            f"in {time.monotonic() - started:.1f} s")
        return int(ExitCode.OK)
    except SystemExit as exc:
        return 0 if exc.code in (0, None) else int(ExitCode.BAD_INPUT)
    except Exception as exc:  # noqa: BLE001 - the exit code tells the kubelet whether to retry
        log(describe(exc))
        return int(classify(exc))


if __name__ == "__main__":
    sys.exit(main())
