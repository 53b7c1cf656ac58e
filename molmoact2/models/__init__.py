"""Models: the shared record types (`base`) and the backends that produce Steps."""
