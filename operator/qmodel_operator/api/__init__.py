"""The QuantizedModel API (pure): spec, status, conditions, the job contract."""

from .conditions import CONDITION_TYPES, ConditionType, Reason, get_condition, is_true, set_condition
from .resource import SpecError, parse_spec
from .spec import API_GROUP, API_VERSION, KIND, PLURAL, Method, QuantizedModelSpec
from .status import Attempt, Condition, EvaluationStatus, Plan, QuantizedModelStatus

__all__ = [
    "API_GROUP", "API_VERSION", "KIND", "PLURAL", "CONDITION_TYPES", "Attempt", "Condition", "ConditionType",
    "EvaluationStatus", "Method", "Plan", "QuantizedModelSpec", "QuantizedModelStatus", "Reason", "SpecError",
    "get_condition", "is_true", "parse_spec", "set_condition",
]
