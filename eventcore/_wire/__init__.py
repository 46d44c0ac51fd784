"""Events on the wire: names, envelope, codec and schemas (public API: :mod:`eventcore.wire`).

One module per responsibility:

- ``errors``: the wire errors and the reasons a consumer turns into dead letters
- ``names``: stable, validated event names and the registry (stdlib only)
- ``ids``: time-ordered event ids (UUIDv7 strings)
- ``kinds``: which codec an event class takes (msgspec, pydantic, or none)
- ``envelope``: the envelope format, its only owner (needs msgspec)
- ``codec``: encode and decode envelopes with size limits and typed errors
- ``schema``: JSON Schema per event name
"""
