"""The four stage services and insights: each its own process with its own database; none imports another."""
