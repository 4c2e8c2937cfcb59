"""Names of the report entries, importable without locust (importing locust monkey-patches gevent)."""

COMPLETE = "WeakModel.Complete"
STREAM = "StrongModel.StreamPrefixes: stream"
FIRST_PREFIX = "StrongModel.StreamPrefixes: first prefix"
RUN = "Transfer.Run: stream"
FIRST_RESULT = "Transfer.Run: first result"
BAD_RESPONSE = "BAD_RESPONSE"
ALL_ENTRIES = (COMPLETE, STREAM, FIRST_PREFIX, RUN, FIRST_RESULT)
