"""The HTTP layer: translates HTTP to use cases and domain errors to the contract's bodies."""
