"""Serving, in layers a reader can follow from the tree: ``edge`` (the wire) -> ``dataplane`` (the
fan-out) -> ``replicas`` (the model servers), all reading ``common`` (config, metric families);
``wiring`` puts them into Ray Serve deployments."""
