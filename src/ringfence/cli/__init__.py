"""The ringfence command line: thin commands over the business areas."""
