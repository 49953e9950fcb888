"""Model families: CfC (plain, deep, NCP-wired) and the LTC baseline."""
