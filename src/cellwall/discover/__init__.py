"""Discovery: orientation, the dependency map, external endpoints, rendering."""
