"""Placeholder: being written (see issue tracker). Not usable yet."""

ERROR_SCALE_F2 = 1.0
ERROR_SCALE_F4 = 1.0


def _todo(*args, **kwargs):
    raise NotImplementedError("winograd is not implemented yet")


launch_f2 = launch_f4 = _todo


def unsupported_f2(geom, dtype):
    return "not implemented yet"


unsupported_f4 = unsupported_f2


def workspace_bytes_f2(geom, itemsize):
    return 0


workspace_bytes_f4 = workspace_bytes_f2


def multiplies_f2(geom):
    return geom.flops // 2


multiplies_f4 = multiplies_f2


def static_specs():
    return []
