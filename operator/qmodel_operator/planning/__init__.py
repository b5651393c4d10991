"""Pure planning: model profiles, fleet, memory model, method ladder, TP/PP sizing, next action."""
