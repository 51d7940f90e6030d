"""Pure value types: networks, labels, the flow schema, inventory. Imports nothing of ours."""
