"""The HTTP layer: translates HTTP to use cases and domain errors to the contract's bodies."""

# The key, in an ASGI lifespan's state (which the server copies into every request's
# scope), of an ``asyncio.Event`` set when the serving process begins its graceful
# shutdown: long requests such as event streams end then instead of holding it up.
STOPPING = "lambda.stopping"
