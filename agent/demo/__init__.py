"""The simulated station of `evgw demo` and its report."""
