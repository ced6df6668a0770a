"""The workspace index: every admitted file of the project, chunked along its structure, ranked by
BM25 for a question, and the chunks picked for a chat request with their citations."""

from .build import BuildReport
from .chunking import Chunk, ChunkOptions, chunk_text
from .retrieval import RetrievalOptions, Retrieved, retrieve
from .search import Hit
from .workspace_index import IndexOptions, WorkspaceIndex

__all__ = [
    "BuildReport",
    "Chunk",
    "ChunkOptions",
    "Hit",
    "IndexOptions",
    "Retrieved",
    "RetrievalOptions",
    "WorkspaceIndex",
    "chunk_text",
    "retrieve",
]
