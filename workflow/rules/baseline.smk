# Stage baseline: not implemented yet (see the issue that owns it).
