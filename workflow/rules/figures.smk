# Stage figures: not implemented yet (see the issue that owns it).
