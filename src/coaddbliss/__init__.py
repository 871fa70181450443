"""coaddbliss: simulation, amortized inference and evaluation on coadded star fields."""

import os

# Idle OpenMP threads sleep instead of spinning: spinning threads wreck throughput (10x measured)
# when the cores are shared with other jobs. OpenMP reads this once, when torch loads its runtime,
# so it is set here, on the first `import coaddbliss...`: scripts import coaddbliss before torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
