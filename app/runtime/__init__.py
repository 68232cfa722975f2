"""What runs in the background of a serving process: micro-batched inference on the model
thread, the index's sync loop, requests in flight, Prometheus metrics. May import db/, index/
and below; not catalogue/ (its sibling).
"""
