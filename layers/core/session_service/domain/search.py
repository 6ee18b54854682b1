"""Ranking tools by relevance to a query: Okapi BM25 over each tool's name (split on "_"), description and
tags.

Written here rather than taken from a library: the maintained BM25 packages (rank_bm25) need numpy, about
100 ms of import for a ranking over at most a few thousand short documents that this does in a
millisecond. Scores are BM25's, so they only order results; they are not probabilities.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from session_service.domain.entities import Tool

K1, B = 1.2, 0.75
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    {"a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it", "of", "on"}
    | {"or", "that", "the", "this", "to", "with"}
)


def terms(text: str) -> list[str]:
    """Lower-case words, snake_case split, stop words dropped, a plural "s" stripped."""
    words = _WORD.findall(text.lower().replace("_", " "))
    return [
        word[:-1] if len(word) > 3 and word.endswith("s") else word for word in words if word not in _STOP
    ]


def document(tool: Tool) -> list[str]:
    # The name counts twice: a query word that names the tool is the strongest signal.
    return terms(tool.name) * 2 + terms(tool.description) + terms(" ".join(tool.tags))


def rank(tools: Sequence[Tool], query: str, limit: int) -> list[tuple[Tool, float]]:
    """The best `limit` tools for `query`, best first; ties by name. Tools matching no query term are left
    out."""
    wanted = terms(query)
    if not wanted:
        return []
    documents = [document(tool) for tool in tools]
    count = len(documents)
    average = sum(len(words) for words in documents) / count if count else 0.0
    frequency: Counter[str] = Counter()
    for words in documents:
        frequency.update(set(words))
    scored = []
    for tool, words in zip(tools, documents, strict=True):
        counts = Counter(words)
        score = 0.0
        for term in wanted:
            found = counts.get(term, 0)
            if not found:
                continue
            idf = math.log(1 + (count - frequency[term] + 0.5) / (frequency[term] + 0.5))
            score += idf * found * (K1 + 1) / (found + K1 * (1 - B + B * len(words) / (average or 1)))
        if score > 0:
            scored.append((tool, score))
    scored.sort(key=lambda pair: (-pair[1], pair[0].name))
    return scored[:limit]
