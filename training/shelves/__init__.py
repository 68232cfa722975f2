"""The shelf renderer: synthetic shelf and fridge photos with exact product boxes, made from the
Grocery Store set's catalogue shots and in-store photos only."""
