"""Placeholder: being written (see issue tracker). Not usable yet."""

ERROR_SCALE = 1.0


def launch(x, weight, bias, geom, *, input_precision="ieee"):
    raise NotImplementedError("direct is not implemented yet")


def unsupported(geom, dtype):
    return "not implemented yet"


def workspace_bytes(geom, itemsize):
    return 0


def multiplies(geom):
    return geom.flops // 2


def static_specs():
    return []
