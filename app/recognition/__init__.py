"""The use cases, without HTTP and without SQL text: the classification pipeline, search
scopes, naming search hits, catalogue hygiene. May import runtime/, catalogue/ and below.
"""
