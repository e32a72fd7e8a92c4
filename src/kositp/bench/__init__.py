"""`kositp bench ...`: speed and memory measurements of each stage against a baseline."""
