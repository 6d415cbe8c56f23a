"""Maximum one-to-one matching of two lists of objects (boxes, spans): Hopcroft–Karp.

Pure and small: ``router.consensus`` decides when two labels' objects "match one to one"
(``same_label``, gold scoring, an annotator's agreement, consensus's ``top_count``) by the
largest matching over the pairs that may match, never by taking the best pair first — a
greedy pairing can use up an object that another pair needed and miss a valid matching.

``O(E·√V)`` for ``V`` objects and ``E`` pairs that may match; the pairs are already all
measured (``O(V²)``) to build the graph, so the matching never costs more than that did.
"""

from __future__ import annotations

from collections.abc import Sequence


def max_matching(adjacency: Sequence[Sequence[int]], n_right: int) -> list[int | None]:
    """The largest one-to-one matching: ``result[i]`` is the right object left object ``i`` has, or ``None``.

    ``adjacency[i]`` lists the right objects (``0 <= j < n_right``) left object ``i`` may
    match, best first: the first pass takes each object's best free partner, and a pair is
    given up later only when that lets one more pair form. The result depends on nothing
    but the arguments.
    """
    n_left = len(adjacency)
    left: list[int] = [-1] * n_left
    right: list[int] = [-1] * n_right
    for u, partners in enumerate(adjacency):
        for v in partners:
            if right[v] < 0:
                left[u], right[v] = v, u
                break
    while _augment(adjacency, left, right):
        pass
    return [v if v >= 0 else None for v in left]


def _augment(adjacency: Sequence[Sequence[int]], left: list[int], right: list[int]) -> bool:
    """One Hopcroft–Karp phase: shortest-layer BFS, then vertex-disjoint augmenting paths. Whether any was found."""
    depth = [-1] * len(adjacency)
    queue = [u for u, v in enumerate(left) if v < 0]
    for u in queue:
        depth[u] = 0
    reachable_free = False
    head = 0
    while head < len(queue):
        u = queue[head]
        head += 1
        for v in adjacency[u]:
            w = right[v]
            if w < 0:
                reachable_free = True
            elif depth[w] < 0:
                depth[w] = depth[u] + 1
                queue.append(w)
    if not reachable_free:
        return False
    tried = [0] * len(adjacency)
    grew = False
    for root in range(len(adjacency)):
        if left[root] >= 0 or depth[root] != 0:
            continue
        stack = [root]  # an alternating path, without recursion (no depth limit)
        while stack:
            u = stack[-1]
            if tried[u] == len(adjacency[u]):
                depth[u] = -1  # a dead end for the rest of this phase
                stack.pop()
                continue
            v = adjacency[u][tried[u]]
            tried[u] += 1
            w = right[v]
            if w < 0:
                for x in stack:  # each vertex on the path takes the partner it went through
                    y = adjacency[x][tried[x] - 1]
                    left[x], right[y] = y, x
                grew = True
                break
            if depth[w] == depth[u] + 1:
                stack.append(w)
    return grew
