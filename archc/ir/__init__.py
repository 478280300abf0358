"""The graph IR: typed nodes of primitive ops, symbolic dims, printer and verifier."""
