"""Sources plugins: one module per type, each naming its class in PLUGIN."""
