"""Engines: the small async interface the services call, and its vLLM implementation."""
