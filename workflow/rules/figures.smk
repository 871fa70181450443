# Stage 'figures': not implemented yet (see the issue that owns it).


def figures_targets():
    """Final outputs of this stage that `rule all` asks for."""
    return []
