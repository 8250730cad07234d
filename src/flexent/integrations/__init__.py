"""Engine adapters (TRL, verl). Each imports its engine lazily, on first use."""
