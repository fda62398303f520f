"""Stage 1: trace a model into a module-level fx graph, with every node's shape.

``trace()`` tries the lean symbolic tracer, then torch.fx, then recording one
real forward pass; see docs/tracing.md."""
