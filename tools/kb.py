"""Knowledge-base search that any customer text can be fed into without breaking."""

from __future__ import annotations

import re
from contextlib import closing

from typing_extensions import TypedDict

from tools._db import connect

MAX_TERMS = 32
_WORD = re.compile(r"[^\W_]+")
# Words that match almost every article and only dilute the ranking.
_STOPWORD_TEXT = (
    "a an and are as at be but by can do does for from had has have how i if in is it its me "
    "my of on or our so that the this to was we what when where which who why will with you your"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


class Article(TypedDict):
    """One search hit; `score` is the negated bm25 rank, higher is better."""

    article_id: str
    title: str
    snippet: str
    score: float


class SearchResult(TypedDict):
    """The hits for a query, best first."""

    query: str
    articles: list[Article]


def match_expression(query: str) -> str:
    """Turn free text into an FTS5 query of quoted terms, which has no syntax to get wrong."""
    words: list[str] = []
    for word in _WORD.findall(query.lower()):
        if word not in words:
            words.append(word)
    content = [w for w in words if w not in _STOPWORDS] or words
    # Quoted terms are plain strings to FTS5: NEAR, AND, *, :, ^ and quotes lose meaning.
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in content[:MAX_TERMS])


def search_kb(query: str, limit: int = 3) -> SearchResult:
    """Find the policy articles that should ground a support decision."""
    limit = max(1, min(10, int(limit)))
    expression = match_expression(query)
    if not expression:
        return {"query": query, "articles": []}
    with closing(connect()) as conn:
        rows = conn.execute(
            "SELECT article_id, title,"
            " snippet(kb_articles, 2, '', '', ' … ', 24) AS snippet,"
            " bm25(kb_articles, 0.0, 4.0, 1.0) AS rank"
            " FROM kb_articles WHERE kb_articles MATCH ? ORDER BY rank, article_id LIMIT ?",
            (expression, limit),
        ).fetchall()
    return {
        "query": query,
        "articles": [
            {
                "article_id": r["article_id"],
                "title": r["title"],
                "snippet": str(r["snippet"]).strip(),
                "score": round(-float(r["rank"]), 4),
            }
            for r in rows
        ],
    }
