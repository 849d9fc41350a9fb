"""Live enhancement: many streams of a model batched through the network (:mod:`~mal.serve.engine`)
behind a WebSocket server with a microphone page (:mod:`~mal.serve.server`, ``mal serve``)."""
