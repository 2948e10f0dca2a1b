//! TITAN_PROTO: the wire format and nothing else.
