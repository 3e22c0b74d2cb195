"""Prefect orchestration over the ``pipeline`` library: flows, tasks, deployments."""
