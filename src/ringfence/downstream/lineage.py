"""A release's lineage graph: the releases it was built on and the derivatives built on it,
drawn server-side as SVG (no JavaScript)."""

from __future__ import annotations

from dataclasses import dataclass, field

from markupsafe import escape
from sqlalchemy.orm import Session

from ringfence.access.circles import visible
from ringfence.accounts.models import User
from ringfence.catalogue.models import Release
from ringfence.downstream import derivatives

#: how far up and down the graph goes (a lineage deeper than this is cut, and says so)
MAX_DEPTH = 4
BOX_W, BOX_H, GAP_X, GAP_Y = 220, 46, 70, 18


@dataclass
class Node:
    """A box in the graph: a release or a derivative, at a depth (0: the release asked for)."""

    key: str
    label: str
    detail: str
    depth: int
    kind: str  # "release", "focus" or "derivative"
    status: str = ""  # a derivative's lineage: declared, verified, unverified


@dataclass
class Graph:
    """Boxes and the edges between them (from base to derivative)."""

    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (base, derived, relation)


def _release_node(
    session: Session, release: Release, user: User | None, depth: int, focus: bool
) -> Node:
    if not visible(session, release, user):
        return Node(f"r{release.id}", "a release you cannot see", "", depth, "release")
    return Node(
        f"r{release.id}",
        release.ref,
        f"{release.circle} circle",
        depth,
        "focus" if focus else "release",
    )


def build(session: Session, release: Release, user: User | None) -> Graph:
    """The graph around `release` as `user` may see it."""
    graph = Graph()
    graph.nodes[f"r{release.id}"] = _release_node(session, release, user, 0, True)
    # Up: the bases of the derivative this release hosts, and theirs.
    frontier, depth = [release], 0
    while frontier and depth > -MAX_DEPTH:
        depth -= 1
        nxt: list[Release] = []
        for child in frontier:
            hosted = derivatives.hosting(session, child)
            if hosted is None:
                continue
            for base in hosted.bases:
                key = f"r{base.id}"
                if key not in graph.nodes:
                    graph.nodes[key] = _release_node(session, base, user, depth, False)
                    nxt.append(base)
                graph.edges.append((key, f"r{child.id}", hosted.relation))
        frontier = nxt
    # Down: derivatives of this release; a hosted one continues through its release.
    down, depth = [release], 0
    while down and depth < MAX_DEPTH:
        depth += 1
        more: list[Release] = []
        for base in down:
            for d in derivatives.derivatives_of(session, base):
                if d.hosted_release is not None:
                    key = f"r{d.hosted_release.id}"
                    if key not in graph.nodes:
                        node = _release_node(session, d.hosted_release, user, depth, False)
                        node.detail = f"{node.detail} · {d.lineage}" if node.detail else ""
                        node.status = d.lineage
                        graph.nodes[key] = node
                        more.append(d.hosted_release)
                else:
                    key = f"d{d.id}"
                    graph.nodes[key] = Node(
                        key, d.name, f"{d.relation} · {d.lineage}", depth, "derivative", d.lineage
                    )
                graph.edges.append((f"r{base.id}", key, d.relation))
        down = more
    return graph


def svg(graph: Graph) -> str:
    """The graph as a standalone SVG image: columns by depth, bases on the left."""
    columns: dict[int, list[Node]] = {}
    for node in graph.nodes.values():
        columns.setdefault(node.depth, []).append(node)
    depths = sorted(columns)
    rows = max(len(c) for c in columns.values())
    width = len(depths) * (BOX_W + GAP_X) - GAP_X + 20
    height = rows * (BOX_H + GAP_Y) - GAP_Y + 20
    where: dict[str, tuple[int, int]] = {}
    for col, depth in enumerate(depths):
        for row, node in enumerate(sorted(columns[depth], key=lambda n: n.label)):
            where[node.key] = (10 + col * (BOX_W + GAP_X), 10 + row * (BOX_H + GAP_Y))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" font-family="sans-serif" font-size="12">',
        "<title>Lineage graph</title>",
    ]
    for base, derived, relation in graph.edges:
        (x1, y1), (x2, y2) = where[base], where[derived]
        a, b = (x1 + BOX_W, y1 + BOX_H // 2), (x2, y2 + BOX_H // 2)
        parts.append(
            f'<line x1="{a[0]}" y1="{a[1]}" x2="{b[0]}" y2="{b[1]}" stroke="#666"/>'
            f'<text x="{(a[0] + b[0]) // 2}" y="{(a[1] + b[1]) // 2 - 4}" text-anchor="middle" '
            f'fill="#444" font-size="10">{escape(relation)}</text>'
        )
    fills = {"focus": "#dbeafe", "release": "#f3f4f6", "derivative": "#fff"}
    strokes = {"verified": "#15803d", "unverified": "#b91c1c"}
    for node in graph.nodes.values():
        x, y = where[node.key]
        stroke = strokes.get(node.status, "#555")
        dash = ' stroke-dasharray="4 3"' if node.status == "unverified" else ""
        parts.append(
            f'<g data-node="{escape(node.kind)}"><rect x="{x}" y="{y}" width="{BOX_W}" '
            f'height="{BOX_H}" rx="6" fill="{fills[node.kind]}" stroke="{stroke}"{dash}/>'
            f'<text x="{x + 8}" y="{y + 18}" font-weight="bold">{escape(node.label[:32])}</text>'
            f'<text x="{x + 8}" y="{y + 36}" fill="#444">{escape(node.detail[:40])}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)
