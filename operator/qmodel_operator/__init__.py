"""qmodel-operator: plans, quantizes, gates and serves LLMs on Kubernetes."""
