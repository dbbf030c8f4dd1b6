"""The parts a study can run, in the order a report shows them (the paper's experiments)."""

PARTS = ("table1", "table2", "table3", "convergence", "representations")
