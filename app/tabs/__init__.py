"""One module per app tab (see `app.main.TABS`)."""
