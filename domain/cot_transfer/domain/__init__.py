"""Pure domain logic of CoT transfer: truncation, grading, potential and unlock statistics.

Nothing here imports an engine, Ray or gRPC, so all of it is unit-tested on its own.
"""
