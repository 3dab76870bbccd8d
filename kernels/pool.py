"""Placeholder: being written (see issue tracker)."""

__all__: list[str] = []


def static_specs():
    return []
