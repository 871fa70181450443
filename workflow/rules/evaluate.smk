# Stage 'evaluate': not implemented yet (see the issue that owns it).


def evaluate_targets():
    """Final outputs of this stage that `rule all` asks for."""
    return []
