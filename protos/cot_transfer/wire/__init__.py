"""Domain <-> protobuf for the messages both sides build: the client library and the service edge
use these, so a message that travels both ways is built in one place."""
