"""The replicas: the strong and receiver model servers and what they need (cuts, reasoning
formats, force-answer, graders, math equivalence, model fingerprints)."""
