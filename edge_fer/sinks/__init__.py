"""Where the pipeline's results go."""

# Temporary, until the next commit moves SinkStage back into the pipeline: the pipeline
# package must load first, as it did when these sinks lived inside it.
import edge_fer.pipeline  # noqa: F401
