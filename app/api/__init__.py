"""HTTP only: routes, their dependencies and types, the OpenAPI document, middleware.

Routes parse and validate, call one use case (app/recognition/) or repository (app/catalogue/)
off the event loop, and shape the answer. May import every layer below; nothing imports it
but the composition root.
"""
