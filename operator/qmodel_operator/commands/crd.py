"""`qmodel crd`: print the QuantizedModel CustomResourceDefinition generated from the API models.

    qmodel crd > crds/qmodel.io_quantizedmodels.yaml      (what `make crd` runs)
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..api.crd import crd, crd_yaml


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("crd", help="print the QuantizedModel CRD generated from the API models",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.output == "json":
        sys.stdout.write(json.dumps(crd(), indent=2) + "\n")
    else:
        sys.stdout.write(crd_yaml())
    return 0
