"""Runtime: our `/act` server (the official MolmoAct2 wire protocol in front of any Policy)."""
