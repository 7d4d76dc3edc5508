"""One-off studies that reproduce a paper's table."""
