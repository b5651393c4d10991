"""Pure builders of the child objects (Jobs, Deployment, Service); deterministic names."""
