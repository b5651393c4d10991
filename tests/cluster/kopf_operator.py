"""A minimal Kopf operator for the embedded-cluster tests (run with ``kopf run``)."""

import kopf


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: object) -> None:
    settings.watching.server_timeout = 30
    settings.persistence.finalizer = "example.test/kopf-finalizer"


@kopf.on.create("example.test", "v1", "widgets")
def created(body: kopf.Body, patch: kopf.Patch, **_: object) -> None:
    kopf.info(body, reason="Seen", message="widget seen by the test operator")
    patch.status["phase"] = "Created"
    patch.status["conditions"] = [{"type": "Ready", "status": "True"}]


@kopf.on.update("example.test", "v1", "widgets", field="spec.replicas")
def scaled(new: int, patch: kopf.Patch, **_: object) -> None:
    patch.status["phase"] = f"Scaled-{new}"


@kopf.on.delete("example.test", "v1", "widgets")
def deleted(**_: object) -> None:
    pass
