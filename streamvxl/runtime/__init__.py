"""The runtime: one model serving many streams, from a worker thread.

`Runtime` owns the model and its device resources; `StreamState` is one stream's memory as plain
data; `Scheduler` decides what runs next; `Hub` and `StreamHandle` are the API.
"""

from .config import RuntimeConfig
from .hub import Hub, StreamHandle
from .runtime import Runtime
from .stream import StreamSettings, StreamState
from .streaming import AnswerStream, AsyncAnswerStream

__all__ = ["AnswerStream", "AsyncAnswerStream", "Hub", "Runtime", "RuntimeConfig",
           "StreamHandle", "StreamSettings", "StreamState"]
