"""The tutor's retrieval as a LangChain retriever, for use in a user's own chains.

    from tutor.langchain_retriever import CourseRetriever
    docs = CourseRetriever.from_settings(load_settings(), k=4).invoke("What is dropout?")
    docs[0].metadata["url"]         # deep link: 'slides/06-regularization.pptx#slide=8'

Each `Document` carries the chunk text and its locator (path, kind, page/slide/section/cell, url)
as metadata; solution chunks are never returned, as in the tutor itself.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from tutor.retrieve import Retriever


class CourseRetriever(BaseRetriever):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Any
    k: int = 5
    kinds: list[str] | None = None

    @classmethod
    def from_settings(cls, settings, course: str | None = None, **kwargs) -> CourseRetriever:
        return cls(retriever=settings.retriever(settings.open_index(course), settings.embedder()), **kwargs)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        hits = self.retriever.search(query, k=self.k, kinds=[k for k in self.kinds or [] if k != "solution"] or None)
        return [
            Document(page_content=h.chunk.text, id=h.chunk.id,
                     metadata={**h.chunk.locator.to_dict(), "label": h.chunk.locator.label(), "score": h.score})
            for h in hits
        ]
