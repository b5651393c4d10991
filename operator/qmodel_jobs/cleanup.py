"""The cleanup job: deletes one artifact that spec.storage.retention let go.

    python -m qmodel_jobs.cleanup --config-json '<CleanupArgs as JSON>'

The artifact is ``<...>/artifacts/<key>`` on the volume (a GGUF artifact's uri names the file inside it) or every
object under ``s3://bucket/<prefix>/artifacts/<key>``. Anything else is refused (exit 2): the job never deletes a
path that is not an artifact directory of the key it was given. Deleting what is already gone succeeds (the
operator may retry). Writes one ``CleanupResult`` JSON line to the termination-message path.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from qmodel_operator.api.jobcontract import CleanupArgs, CleanupResult, ExitCode

from .common import JobError, bad_input, classify, describe, log, models_root, parse_args, resolve_path
from .objectstore import delete, is_s3

PROG = "python -m qmodel_jobs.cleanup"


def artifact_root(uri: str, key: str) -> str:
    """The artifact directory (or s3 prefix) ``uri`` lies in: ``.../artifacts/<key>``."""
    parts = uri.rstrip("/").split("/")
    for i in range(len(parts) - 1):
        if parts[i] == "artifacts" and parts[i + 1] == key:
            return "/".join(parts[: i + 2])
    raise bad_input(f"{uri} is not inside an artifacts/{key} directory: refusing to delete it")


def cleanup(args: CleanupArgs) -> CleanupResult:
    root = artifact_root(args.uri, args.artifact_key)
    if is_s3(root):
        n = delete(root)
        return CleanupResult(ok=True, uri=root, deleted=n, message=f"deleted {n} objects under {root}")
    path = resolve_path(root)
    if path is None:
        raise bad_input(f"{root}: not a volume path or s3:// uri")
    base = models_root().resolve()
    real = Path(path).resolve()
    if base not in real.parents:
        raise bad_input(f"{root} is outside the models volume {base}: refusing to delete it")
    if not real.exists():
        return CleanupResult(ok=True, uri=root, deleted=0, message=f"{root} was already gone")
    n = sum(1 for p in real.rglob("*") if p.is_file())
    shutil.rmtree(real)
    return CleanupResult(ok=True, uri=root, deleted=n, message=f"deleted {n} files under {root}")


def main(argv: list[str] | None = None) -> int:
    from .common import write_termination_line

    args: CleanupArgs | None = None
    try:
        args = parse_args(CleanupArgs, argv, PROG)
        result, code = cleanup(args), ExitCode.OK
    except SystemExit as exc:
        if exc.code in (0, None):
            return 0
        result, code = CleanupResult(ok=False, message="invalid command line (see usage)"), ExitCode.BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - every failure leaves a termination message
        code = exc.code if isinstance(exc, JobError) else classify(exc)
        result = CleanupResult(ok=False, uri=args.uri if args else "", message=describe(exc))
    log(result.message)
    write_termination_line(result.model_dump_json(by_alias=True))
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
