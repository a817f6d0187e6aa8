"""The lineage image is drawn server-side and runs nothing, whatever a name says."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ringfence.downstream.lineage import Graph, Node, svg


def test_names_are_escaped_and_the_image_is_well_formed() -> None:
    graph = Graph()
    graph.nodes["r1"] = Node("r1", "base@1.0", "research circle", 0, "focus")
    graph.nodes["d1"] = Node("d1", "<script>alert(1)</script>", "finetune · unverified", 1,
                             "derivative", "unverified")  # fmt: skip
    graph.edges.append(("r1", "d1", "finetune"))
    image = svg(graph)
    assert "<script>" not in image and "&lt;script&gt;" in image
    root = ET.fromstring(image)  # noqa: S314 - our own output, parsed to check it is well formed
    assert root.tag.endswith("svg")
    assert 'stroke-dasharray="4 3"' in image  # unverified lineage is drawn dashed
