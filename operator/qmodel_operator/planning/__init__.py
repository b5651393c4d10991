"""Pure planning: model profiles, fleet, memory model, method ladder, TP/PP sizing, next action.

Entry points::

    profile = profile_for(spec, config_json)      # catalog / spec.model.profile / config.json
    fleet = fleet_from_nodes(node_dicts)          # GPU pools and CPU nodes from Node objects
    p = plan(spec, profile, fleet)                # api.status.Plan (method=... overrides for fallback rungs)
    fallback_ladder(spec, p)                      # methods to try after p.method fails the gate
"""

from .catalog import catalog, get_profile, infer_profile, profile_for
from .fleet import Fleet, GPUPool, GPUShape, default_fleet, fleet_from_nodes
from .memory import RESERVE_GIB, weight_format, weight_gib
from .planner import fallback_ladder, plan
from .profiles import ModelProfile, ProfileError, profile_from_config

__all__ = [
    "RESERVE_GIB", "Fleet", "GPUPool", "GPUShape", "ModelProfile", "ProfileError", "catalog", "default_fleet",
    "fallback_ladder", "fleet_from_nodes", "get_profile", "infer_profile", "plan", "profile_for",
    "profile_from_config", "weight_format", "weight_gib",
]
