"""Operating a gateway from afar: diagnostics archives, signed software updates."""
