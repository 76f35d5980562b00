"""Cases: what clients submit, how each is scored and routed, and its final decision."""
