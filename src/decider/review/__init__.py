"""The human side: the review queue, claiming cases under a lease, and resolving them."""
