"""A batch's family tree: every row's stored weight fingerprint against every other's, then a forest.

1. Pairs. Each unordered pair of fingerprinted rows is compared once (n(n-1)/2 comparisons of stored
   fingerprints, no checkpoint is opened), with the same comparison and verdict rule as `provaudit compare`
   (`audit.lineage.compare.compare_views`, `audit.lineage.verdict.judge`). The side that looks derived (fewer
   layers, unless the deeper one repeats a block; a smaller width; more vocabulary rows; quantized; GGUF/ONNX)
   is compared as the candidate, so that the operations detected read from parent to child. Pairs that cannot be compared (no shared vocabulary, nothing
   alike) are counted and skipped. Outcomes are cached by the two fingerprints' keys, names and the seed.
2. Parents outside the batch. A row whose own audit found it derived from a registry fingerprint, or from a
   reference checkpoint that is not itself a row, gets that parent as a node.
3. Direction (`audit.record.names.EdgeRule`): an operation with a direction (layer or width pruning, layer
   duplication, vocabulary extension or reduction, quantization, format conversion), else a row's audit that was
   given the other as its reference, else a registry base; otherwise the edge is undirected ("related").
   A pair's direction does not follow from which side looked derived: only from the evidence named.
4. Forest. Every related pair (derived or fine-tuned) is a candidate edge weighted by its layer similarity; a
   greedy maximum spanning forest (a child has at most one parent) keeps, for A -> B -> C, the edges A-B and
   B-C (A-C stays in the data, not drawn) and two fine-tunes of one base as siblings under it (their mutual
   relation is weaker than each one's relation to the base). Each tree is rooted where no directed edge points
   upwards (a parent from outside the batch first, then manifest order).
"""

from __future__ import annotations

import math
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit import __version__
from audit.batch.cache import digest
from audit.batch.fingerprints import PAIR_SCHEMA, PairCache
from audit.record.models import (
    LineageEdge,
    LineageExcluded,
    LineageNode,
    LineagePair,
    LineageTree,
    Record,
    Statistic,
    Tool,
)
from audit.record.names import EdgeRule, Label, Operation, StatisticName

if TYPE_CHECKING:
    from audit.fingerprinting.reference import Reference

METHOD = "stored weight fingerprint against stored weight fingerprint (provaudit compare's statistics and verdict rule)"
#: Operations whose presence says which model came first: the parent is the deeper, wider, float, original-format one.
DIRECTIONAL = (Operation.LAYER_PRUNING, Operation.WIDTH_PRUNING, Operation.LAYER_DUPLICATION,
               Operation.VOCAB_EXTENSION, Operation.VOCAB_REDUCTION, Operation.QUANTIZATION,
               Operation.FORMAT_CONVERSION)
RELATED = (Label.DERIVED.value, Label.FINE_TUNED.value)
MAX_LISTED = 100  # skipped and inconclusive pairs listed by name (all are counted)
LOADED_BYTES = 1 << 30  # fingerprints kept loaded at once, per process (estimated from their file sizes)
BLOCK = 16  # rows per block: a block pair is one unit of work, so each fingerprint is loaded ~n/BLOCK times
REPEATED_LAYER = 0.95  # correlation of two blocks' Gram descriptors that marks a repeated block
# similarities closer than this count as equal when the forest is chosen (bf16 storage alone moves them ~4e-3)
SIMILARITY_TIE = 1e-3
POOL_MIN_PAIRS = 64  # fewer pairs than this are compared in the driver (a worker pool costs a few seconds)

Echo = Callable[[str], None]


@dataclass
class Member:
    """A manifest row as the tree sees it."""

    id: str  # the row's slug
    name: str
    line: int
    path: str  # the model as the manifest gives it
    fingerprint_key: str | None = None
    fingerprint_path: str | None = None
    error: str | None = None  # why there is no fingerprint
    record: Record | None = None
    report: str | None = None


@dataclass
class _Candidate:
    """A related pair: `ref` -> `cand` is the orientation the comparison ran in (ref the putative parent)."""

    ref: str
    cand: str
    result: dict[str, Any]
    source: str  # pairwise | row-audit
    order: int
    rule: EdgeRule = EdgeRule.UNDIRECTED
    detail: str = ""
    directed: bool = False
    in_tree: bool = False
    note: str | None = None
    parent: str = ""
    child: str = ""
    weight: tuple[float, ...] = field(default_factory=tuple)


# ---------------------------------------------------------------------------------------------- the pairs


def _meta(path: str) -> dict[str, Any]:
    """A fingerprint's metadata (architecture, layers, format, storage types), without loading its arrays."""
    import json

    from safetensors import safe_open

    from audit.errors import InputError

    try:
        with safe_open(path, framework="numpy") as fh:
            meta = json.loads((fh.metadata() or {}).get("provaudit", "{}"))
    except Exception as exc:  # noqa: BLE001 - a damaged cache file: the row is left out, and says why
        raise InputError(f"stored fingerprint unreadable ({type(exc).__name__}: {exc}); rerun the batch to "
                         "rebuild it") from None
    if not isinstance(meta, dict):
        raise InputError("stored fingerprint has no metadata; rerun the batch to rebuild it")
    return meta


_QUANT = ("Q", "IQ", "TQ", "I8", "U8", "INT8", "UINT8", "MXFP", "NVFP")


def repeated_layers(path: str) -> bool:
    """Does the fingerprinted model hold two blocks with the same weights (a depth up-scaled copy)? Distinct
    blocks of a trained model correlate far less (<= 0.6 measured on SmolLM2, Qwen2.5, Gemma-3)."""
    import numpy as np

    from audit.fingerprinting.grams import descriptors

    ref = _LOADED.get(path, "")
    if ref.units is None:
        return False
    g = ref.grams(ref.units)
    d = descriptors(g.grams)
    for kind in sorted({k for _, k in g.keys}):
        idx = [i for i, (_, k) in enumerate(g.keys) if k == kind]
        if len(idx) > 1:
            c = d[idx] @ d[idx].T / max(1, d.shape[1])
            np.fill_diagonal(c, -1.0)
            if float(c.max()) >= REPEATED_LAYER:
                return True
    return False


def _looks_derived(a: dict[str, Any], b: dict[str, Any], repeated: Callable[[], tuple[bool, bool]]) -> int:
    """+1 when `a` looks derived from `b` by its shape or storage, -1 for the reverse, 0 when nothing says.
    Only the order of comparison follows from this; an edge's direction needs the operation to be detected.
    Fewer layers read as pruned, unless the deeper model repeats a block (`repeated()`: a's, b's), which reads
    as duplicated."""

    def quantized(m: dict[str, Any]) -> bool:
        return any(str(d).upper().startswith(_QUANT) for d in m.get("storage_dtypes") or [])

    def exported(m: dict[str, Any]) -> bool:
        return m.get("format") in ("gguf", "onnx")

    arch_a, arch_b = a.get("architecture") or {}, b.get("architecture") or {}
    depth_a, depth_b = len(a.get("layers") or []), len(b.get("layers") or [])
    if depth_a != depth_b:
        rep_a, rep_b = repeated()
        deeper_repeats = rep_a if depth_a > depth_b else rep_b
        if deeper_repeats:
            return 1 if depth_a > depth_b else -1
    for x, y in ((depth_b, depth_a),  # fewer layers: pruned
                 (arch_b.get("hidden_size") or 0, arch_a.get("hidden_size") or 0),  # narrower: width-pruned
                 (a.get("vocab_rows") or 0, b.get("vocab_rows") or 0),  # more rows: vocabulary extended
                 (quantized(a), quantized(b)), (exported(a), exported(b))):
        if x != y:
            return 1 if x > y else -1
    return 0


class _Loaded:
    """Stored fingerprints loaded in this process, least recently used dropped past LOADED_BYTES."""

    def __init__(self) -> None:
        self.refs: OrderedDict[tuple[str, str], tuple[Reference, int]] = OrderedDict()
        self.bytes = 0

    def get(self, path: str, name: str) -> Reference:
        from audit.fingerprinting.reference import load_weight_fingerprint

        key = (path, name)
        if key in self.refs:
            self.refs.move_to_end(key)
            return self.refs[key][0]
        ref = load_weight_fingerprint(Path(path))
        ref.name = name
        size = 2 * Path(path).stat().st_size  # float16 on disk, float32 loaded
        self.refs[key] = (ref, size)
        self.bytes += size
        while self.bytes > LOADED_BYTES and len(self.refs) > 2:
            _, (_, dropped) = self.refs.popitem(last=False)
            self.bytes -= dropped
        return ref


_LOADED = _Loaded()

Job = tuple[str, str, str, str, str, int]  # key, cand path, cand name, ref path, ref name, seed


def compare_pair(cand: Reference, ref: Reference, seed: int) -> dict[str, Any]:
    """One pair's outcome as plain values: compared (verdict, key statistic, layers) or skipped (why)."""
    from audit.errors import InputError
    from audit.lineage.compare import compare_views
    from audit.lineage.verdict import judge

    try:
        cmp = compare_views(cand, ref, seed=seed)
    except InputError as exc:  # NothingComparable among them: no shared vocabulary, no comparable layers
        return {"status": "skipped", "reason": str(exc)}
    v = judge(cmp)
    gram = cmp.stat(StatisticName.LAYER_GRAM_SIMILARITY)
    return {
        "status": "compared", "label": v.label.value, "parent": v.parent,
        "operations": [o.value for o in v.operations], "packaging": [o.value for o in v.packaging],
        "confidence": v.confidence, "summary": v.summary,
        "statistic": gram.to_record().model_dump(mode="json") if gram is not None else None,
        "exact_log10_p": round(float(cmp.exact_log10_p), 3) if math.isfinite(cmp.exact_log10_p) else -300.0,
        "similarity": round(float(cmp.mean_best_similarity), 6),
        "layers_matched": sum(1 for _, r, _, _ in cmp.layer_map if r is not None),
        "layers_compared": int(cmp.layers_compared),
        "matched_share": round(float(cmp.matched_fraction), 6),
    }


def compare_jobs(jobs: list[Job]) -> list[tuple[str, dict[str, Any]]]:
    """Compare each job's two stored fingerprints (in a worker process or the driver)."""
    out = []
    for key, cand_path, cand_name, ref_path, ref_name, seed in jobs:
        try:
            result = compare_pair(_LOADED.get(cand_path, cand_name), _LOADED.get(ref_path, ref_name), seed)
        except Exception as exc:  # noqa: BLE001 - one pair's failure (a bug) must not stop the batch; not cached
            result = {"status": "skipped", "reason": f"internal error: {type(exc).__name__}: {exc}", "internal": True}
        out.append((key, result))
    return out


def _run_jobs(units: list[list[Job]], workers: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """Compare the units of jobs: in this process, or in a pool of `workers` spawned processes."""
    if workers <= 1 or sum(map(len, units)) < POOL_MIN_PAIRS:
        for unit in units:
            yield from compare_jobs(unit)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from audit.batch.executors import _init_worker

    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads,)) as pool:
        futures = [pool.submit(compare_jobs, unit) for unit in units]
        for fut in as_completed(futures):
            yield from fut.result()


# ---------------------------------------------------------------------------------------------- the tree


def build_lineage(members: list[Member], manifest: str, seed: int, cache_root: Path, workers: int = 1,
                  say: Echo | None = None) -> LineageTree:
    """The lineage tree of a batch's rows (see the module docstring)."""
    import datetime as _dt

    from audit.errors import InputError

    t0 = time.perf_counter()
    say = say or (lambda _msg: None)
    pairs = PairCache(cache_root)
    usable: list[Member] = []
    metas: dict[str, dict[str, Any]] = {}
    excluded: list[LineageExcluded] = []
    for m in members:
        if m.fingerprint_path is None or m.fingerprint_key is None:
            excluded.append(LineageExcluded(name=m.name, line=m.line, reason=m.error or "no weight fingerprint"))
            continue
        try:
            metas[m.id] = _meta(m.fingerprint_path)
        except InputError as exc:
            excluded.append(LineageExcluded(name=m.name, line=m.line, reason=str(exc)))
            continue
        usable.append(m)

    # 1. every pair once, oriented so that the side that looks derived is the candidate
    by_id = {m.id: m for m in usable}
    order = {m.id: i for i, m in enumerate(members)}
    planned: list[tuple[str, str, str]] = []  # key, cand id, ref id
    repeats: dict[str, bool] = {}

    def repeated(m: Member) -> bool:
        if m.id not in repeats:
            assert m.fingerprint_path is not None
            try:
                repeats[m.id] = repeated_layers(m.fingerprint_path)
            except InputError:
                repeats[m.id] = False
        return repeats[m.id]

    for i, a in enumerate(usable):
        for b in usable[i + 1:]:
            derived = _looks_derived(metas[a.id], metas[b.id],
                                     lambda a=a, b=b: (repeated(a), repeated(b)))  # type: ignore[misc]
            cand, ref = (a, b) if derived > 0 else (b, a)
            key = digest({"schema": PAIR_SCHEMA, "tool": __version__, "cand": cand.fingerprint_key,
                          "ref": ref.fingerprint_key, "names": [cand.name, ref.name], "seed": seed})
            planned.append((key, cand.id, ref.id))
    outcomes: dict[str, dict[str, Any]] = {}
    for key, _, _ in planned:
        found = pairs.get(key)
        if found is not None:
            outcomes[key] = found
    cached = len(outcomes)
    todo = [(k, c, r) for k, c, r in planned if k not in outcomes]
    if planned:
        say(f"lineage: {len(usable)} fingerprints, {len(planned)} pairs ({cached} from the cache)")
    for key, result in _run_jobs(_units(todo, by_id, seed, usable), workers):
        outcomes[key] = result
        if not result.get("internal"):
            try:
                pairs.put(key, result)
            except OSError:
                pass  # a read-only cache: compared again next time

    # 2. the rows' own parents: references that are rows orient pairs; registry and other references are nodes
    nodes: dict[str, LineageNode] = {}
    for m in usable:
        nodes[m.id] = LineageNode(id=m.id, name=m.name, kind="model", line=m.line, path=m.path,
                                  verdict=m.record.verdict.label if m.record is not None else None,
                                  report=m.report, fingerprint=m.fingerprint_key)
    declared, external = _row_parents(usable)
    candidates: list[_Candidate] = []
    skipped: list[LineagePair] = []
    inconclusive: list[LineagePair] = []
    counts = {"skipped": 0, "original": 0, "inconclusive": 0, "related": 0}
    for n, (key, cand_id, ref_id) in enumerate(planned):
        res = outcomes[key]
        name_a, name_b = by_id[cand_id].name, by_id[ref_id].name
        if res.get("status") != "compared":
            counts["skipped"] += 1
            if len(skipped) < MAX_LISTED:
                skipped.append(LineagePair(a=name_a, b=name_b, reason=str(res.get("reason") or "not comparable")))
        elif res["label"] in RELATED:
            counts["related"] += 1
            candidates.append(_Candidate(ref=ref_id, cand=cand_id, result=res, source="pairwise", order=n))
        elif res["label"] == Label.INCONCLUSIVE.value:
            counts["inconclusive"] += 1
            if len(inconclusive) < MAX_LISTED:
                inconclusive.append(LineagePair(a=name_a, b=name_b, reason=str(res.get("summary") or "")))
        else:
            counts["original"] += 1
    for node, child, res in external:
        nodes.setdefault(node.id, node)
        candidates.append(_Candidate(ref=node.id, cand=child, result=res, source="row-audit",
                                     order=len(planned) + len(candidates)))

    # 3. direction, 4. forest
    for c in candidates:
        _orient(c, declared, nodes)
    _spanning_forest(candidates, list(nodes))
    depth, family = _layout(candidates, list(nodes), nodes)
    for c in candidates:
        if not c.in_tree:
            c.note = _explain(c, candidates, depth, nodes)
    ordered = sorted(candidates, key=lambda c: (not c.in_tree, family.get(c.parent) or 0, depth.get(c.parent, 0),
                                                order.get(c.child, len(order)), c.order))
    node_list = [nodes[i].model_copy(update={"depth": depth.get(i, 0), "family": family.get(i)}) for i in nodes]
    return LineageTree(
        tool=Tool(version=__version__), created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        manifest=manifest, seed=seed, method=METHOD, nodes=node_list,
        edges=[_edge(c, nodes) for c in ordered], families=len({f for f in family.values() if f is not None}),
        pairs_compared=len(planned) - counts["skipped"], pairs_from_cache=cached, pairs_related=counts["related"],
        pairs_unrelated=counts["original"], pairs_inconclusive=counts["inconclusive"],
        pairs_skipped=counts["skipped"], skipped=skipped, inconclusive=inconclusive, excluded=excluded,
        seconds=round(time.perf_counter() - t0, 3),
    )


def _units(todo: list[tuple[str, str, str]], by_id: dict[str, Member], seed: int,
           usable: list[Member]) -> list[list[Job]]:
    """Jobs grouped by block pair, so each unit loads at most 2 x BLOCK fingerprints."""
    block = {m.id: i // BLOCK for i, m in enumerate(usable)}
    units: dict[tuple[int, int], list[Job]] = {}
    for key, cand_id, ref_id in todo:
        c, r = by_id[cand_id], by_id[ref_id]
        assert c.fingerprint_path is not None and r.fingerprint_path is not None
        unit = tuple(sorted((block[cand_id], block[ref_id])))
        units.setdefault((unit[0], unit[1]), []).append(
            (key, c.fingerprint_path, c.name, r.fingerprint_path, r.name, seed))
    return [units[k] for k in sorted(units)]


def _files(info: Any) -> frozenset[str]:
    return frozenset(f.sha256 for f in info.files if f.sha256)


def _row_parents(usable: list[Member]) -> tuple[set[tuple[str, str]], list[tuple[LineageNode, str, dict[str, Any]]]]:
    """From the rows' own audits: (pairs (parent row, child row) where the child's audit was given the parent as
    a reference and found it related; parents outside the batch as (node, child row, outcome))."""
    by_files: dict[frozenset[str], str] = {}
    for m in usable:
        if m.record is not None and _files(m.record.subject):
            by_files.setdefault(_files(m.record.subject), m.id)
    declared: set[tuple[str, str]] = set()
    external: list[tuple[LineageNode, str, dict[str, Any]]] = []
    for m in usable:
        rec = m.record
        if rec is None:
            continue
        for comp in rec.comparisons:
            if comp.verdict.label.value not in RELATED:
                continue
            info = rec.reference(comp.reference)
            row = by_files.get(_files(info)) if info is not None and _files(info) else None
            if row is not None and row != m.id:
                declared.add((row, m.id))
            elif info is not None and row is None and comp.reference == rec.verdict.parent:
                stored = info.format == "weight-fingerprint"
                node_id = (f"registry:{info.name}" if stored
                           else "reference:" + digest(sorted(_files(info)) or [info.path])[:16])
                node = LineageNode(id=node_id, name=info.name, kind="registry" if stored else "reference",
                                   path=info.source if stored else info.path)
                external.append((node, m.id, _outcome(comp)))
    return declared, external


def _outcome(comp: Any) -> dict[str, Any]:
    """A row audit's comparison in the form of a pairwise outcome."""
    gram = next((s for s in comp.statistics if s.name == StatisticName.LAYER_GRAM_SIMILARITY), None)
    exact = [s.log10_p for s in comp.statistics if s.null.method == "exact"]
    matched = sum(1 for _, r, _ in comp.layer_map if r is not None)
    v = comp.verdict
    return {
        "status": "compared", "label": v.label.value, "parent": v.parent,
        "operations": [o.value for o in v.operations], "packaging": [o.value for o in v.packaging],
        "confidence": v.confidence, "summary": v.summary,
        "statistic": gram.model_dump(mode="json") if gram is not None else None,
        "exact_log10_p": min(0.0, min(exact) + math.log10(len(exact))) if exact else None,
        "similarity": gram.value if gram is not None else 0.0,
        "layers_matched": matched, "layers_compared": len(comp.layer_map),
        "matched_share": matched / len(comp.layer_map) if comp.layer_map else 0.0,
    }


def _orient(c: _Candidate, declared: set[tuple[str, str]], nodes: dict[str, LineageNode]) -> None:
    """Decide the edge's direction and the rule that decided it (see EdgeRule)."""
    ops = [*(c.result.get("operations") or []), *(c.result.get("packaging") or [])]
    found = [o.value for o in DIRECTIONAL if o.value in ops]
    c.parent, c.child = c.ref, c.cand
    if found:
        c.directed, c.rule = True, EdgeRule.OPERATION
        c.detail = f"{', '.join(found)} found comparing {nodes[c.cand].name} with {nodes[c.ref].name}"
    elif c.source == "row-audit":
        c.directed = True
        c.rule = EdgeRule.REGISTRY_BASE if nodes[c.ref].kind == "registry" else EdgeRule.AUDIT_REFERENCE
        c.detail = f"{nodes[c.cand].name}'s audit found it {c.result['label']} from {nodes[c.ref].name}"
    elif (c.ref, c.cand) in declared or (c.cand, c.ref) in declared:
        if (c.ref, c.cand) not in declared:
            c.parent, c.child = c.cand, c.ref
        c.directed, c.rule = True, EdgeRule.AUDIT_REFERENCE
        c.detail = (f"{nodes[c.child].name}'s audit was given {nodes[c.parent].name} as a reference and found it "
                    f"{c.result['label']}")
    else:
        c.directed, c.rule = False, EdgeRule.UNDIRECTED
        c.detail = "no operation with a direction, and neither model's audit named the other as its parent"
    stat = c.result.get("statistic") or {}
    c.weight = (float(c.result.get("similarity") or 0.0), float(c.result.get("matched_share") or 0.0),
                -float(stat.get("log10_p", 0.0)), -float(c.result.get("exact_log10_p") or 0.0))


def _spanning_forest(candidates: list[_Candidate], ids: list[str]) -> None:
    """Mark a maximum spanning forest as `in_tree`: related pairs by decreasing similarity (within SIMILARITY_TIE:
    directed first, then the larger matched share, then the stronger evidence), each joining two trees, and a
    directed one only into a node that has no parent yet (a child has one parent)."""
    root = {i: i for i in ids}
    has_parent: set[str] = set()

    def find(x: str) -> str:
        while root[x] != x:
            root[x] = root[root[x]]
            x = root[x]
        return x

    def rank(c: _Candidate) -> tuple[float, ...]:
        sim, *rest = c.weight
        return (-round(sim / SIMILARITY_TIE), 0.0 if c.directed else 1.0, *(-w for w in rest), c.order)

    for c in sorted(candidates, key=rank):
        ra, rb = find(c.parent), find(c.child)
        if ra == rb or (c.directed and c.child in has_parent):
            continue
        root[ra] = rb
        c.in_tree = True
        if c.directed:
            has_parent.add(c.child)


def _layout(candidates: list[_Candidate], ids: list[str],
            nodes: dict[str, LineageNode]) -> tuple[dict[str, int], dict[str, int | None]]:
    """Root each tree where the fewest directed edges point upwards (ties: a parent from outside the batch, then
    manifest order); point undirected edges away from the root. Returns (depth, family number) per node."""
    tree = [c for c in candidates if c.in_tree]
    adj: dict[str, list[str]] = {i: [] for i in ids}
    for c in tree:
        adj[c.parent].append(c.child)
        adj[c.child].append(c.parent)
    rank = {i: n for n, i in enumerate(ids)}
    depth: dict[str, int] = {}
    family: dict[str, int | None] = {}
    number = 0
    for start in ids:
        if start in depth:
            continue
        comp = list(_bfs(adj, start))
        if len(comp) == 1:
            depth[start], family[start] = 0, None
            continue
        number += 1
        members = set(comp)
        edges = [c for c in tree if c.parent in members]

        def cost(root: str, edges: list[_Candidate] = edges) -> tuple[int, int, int]:
            dist = _bfs(adj, root)
            up = sum(1 for c in edges if c.directed and dist[c.parent] > dist[c.child])
            return up, 0 if nodes[root].kind != "model" else 1, rank[root]

        root = min(comp, key=cost)
        dist = _bfs(adj, root)
        for i in comp:
            depth[i], family[i] = dist[i], number
        for c in edges:
            if not c.directed and dist[c.parent] > dist[c.child]:
                c.parent, c.child = c.child, c.parent
    return depth, family


def _bfs(adj: dict[str, list[str]], start: str) -> dict[str, int]:
    dist = {start: 0}
    queue = deque([start])
    while queue:
        x = queue.popleft()
        for y in adj[x]:
            if y not in dist:
                dist[y] = dist[x] + 1
                queue.append(y)
    return dist


def _explain(c: _Candidate, candidates: list[_Candidate], depth: dict[str, int],
             nodes: dict[str, LineageNode]) -> str:
    """Why a related pair is not drawn: the tree path that explains it (a chain, or a common parent)."""
    up: dict[str, str] = {}
    for e in candidates:
        if e.in_tree:
            up[e.child] = e.parent
    a, b = c.parent, c.child
    if not c.directed and depth.get(a, 0) > depth.get(b, 0):
        a, b = b, a

    def chain(x: str) -> list[str]:
        out = [x]
        while out[-1] in up and len(out) <= len(up):
            out.append(up[out[-1]])
        return out

    ca, cb = chain(a), chain(b)
    common = next((x for x in ca if x in cb), None)
    if common is None:
        return "weaker than the tree's edges"
    name = nodes[common].name
    if common in (a, b):
        low = b if common == a else a
        path = list(reversed(chain(low)[: chain(low).index(common) + 1]))
        return "implied by the chain " + " -> ".join(nodes[x].name for x in path)
    if up.get(a) == common and up.get(b) == common:
        return f"siblings under {name}"
    return f"related through their common ancestor {name}"


def _edge(c: _Candidate, nodes: dict[str, LineageNode]) -> LineageEdge:
    res = c.result
    ops = [Operation(o) for o in res.get("operations") or []]
    packaging = [Operation(o) for o in res.get("packaging") or []]
    label = Label(res["label"])
    relation = label.value + (f": {', '.join(o.value for o in ops)}" if ops else "")
    if packaging:
        relation += f" ({', '.join(o.value for o in packaging)})"
    if not c.directed:
        relation = f"related, {relation}"
    stat = res.get("statistic")
    statistic = Statistic.model_validate(stat) if stat else _no_statistic()
    return LineageEdge(
        parent=c.parent, child=c.child, directed=c.directed, rule=c.rule, rule_detail=c.detail, relation=relation,
        label=label, operations=ops, packaging=packaging, statistic=statistic,
        exact_log10_p=res.get("exact_log10_p"), layers_matched=int(res.get("layers_matched") or 0),
        layers_compared=int(res.get("layers_compared") or 0),
        matched_share=min(1.0, max(0.0, float(res.get("matched_share") or 0.0))),
        confidence=res.get("confidence"), source="pairwise" if c.source == "pairwise" else "row-audit",
        in_tree=c.in_tree, note=c.note, summary=str(res.get("summary") or ""),
    )


def _no_statistic() -> Statistic:
    from audit.record.models import Null

    return Statistic(name=StatisticName.LAYER_GRAM_SIMILARITY, value=0.0, null=Null(kind="not computed"),
                     p_value=1.0, log10_p=0.0, meaning=StatisticName.LAYER_GRAM_SIMILARITY.meaning)


def summary_counts(tree: LineageTree) -> dict[str, Any]:
    """What batch.json says about the tree (the tree itself is lineage.json)."""
    return {"file": "lineage.json", "schema": tree.schema_, "models": len(tree.nodes),
            "edges": sum(e.in_tree for e in tree.edges), "families": tree.families,
            "pairs_compared": tree.pairs_compared, "pairs_skipped": tree.pairs_skipped,
            "excluded": len(tree.excluded)}
