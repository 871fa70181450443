"""coaddbliss: simulation, amortized inference and evaluation on coadded star fields."""

__version__ = "0.1.0"
