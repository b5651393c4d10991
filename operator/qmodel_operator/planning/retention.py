"""Artifact garbage collection: which of a QuantizedModel's artifacts ``spec.storage.retention`` lets go (pure).

Candidates are the artifact records (``qmodel-artifact-<key>``) this QuantizedModel produced (annotation
``qmodel.io/produced-by``). Never collected: a *referenced* artifact — one a Deployment in the namespace serves
(its ``qmodel.io/artifact-key`` label), one a Job in the namespace is quantizing or evaluating, or one of this
object's current ladder rungs. Of the rest:

* ``keepLast: N`` — the N newest records (referenced ones included in the count) stay, older ones go;
* ``unreferencedAfterHours: H`` — a record older than H hours goes. Its age counts from the record's creation,
  since the operator keeps no memory of when an artifact stopped being served: an artifact served for a month and
  replaced a minute ago is collected at the next reconcile when H is shorter than a month.

Both together: either rule collects.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from ..api.spec import Retention


@dataclass(frozen=True)
class ArtifactRecordInfo:
    key: str
    uri: str
    created: datetime | None


def collectable(records: Iterable[ArtifactRecordInfo], retention: Retention | None, referenced: set[str],
                now: datetime) -> list[ArtifactRecordInfo]:
    if retention is None or (retention.keep_last is None and retention.unreferenced_after_hours is None):
        return []
    # Newest first; among records of the same second (creationTimestamp has one-second resolution) a referenced one
    # counts as the newer.
    ordered = sorted(records, key=lambda r: (r.created or now, r.key in referenced, r.key), reverse=True)
    out = []
    for i, r in enumerate(ordered):
        if r.key in referenced or not r.uri:
            continue
        too_many = retention.keep_last is not None and i >= retention.keep_last
        age_hours = (now - r.created).total_seconds() / 3600 if r.created else 0.0
        too_old = retention.unreferenced_after_hours is not None and age_hours >= retention.unreferenced_after_hours
        if too_many or too_old:
            out.append(r)
    return out
