"""The four stage services. Each is its own process with its own database; none imports another."""
