"""Convolutions, dense / matmul / batch matmul, depthwise convolutions and pooling on CPU.

All of these are one reduction block whose output's innermost axis ``v`` is a
plain spatial loop along which at least one input is contiguous (NHWC conv:
the HWIO weight along output channels; matmul: the [K, N] weight along N;
depthwise and pooling: the data along channels). The rule builds the
register-blocked micro-kernel that the old TVM x86 schedules and BLAS
libraries use:

    parallel  for vo, <other spatial>, uo        # output tiles, spread over cores
                for <reduction axes>               # K, or (kh, kw, cin)
                  unroll for ui in ru              # rows that reuse one weight vector
                    unroll for vj in nv            # SIMD registers along v
                      vectorize for vl in lanes
                        acc[ui, vj, vl] += a[..] * w[..]
                write back acc (+ fused bias / relu / residual add) to the output

``u`` is the spatial axis a contiguous operand does not depend on (the output
pixel row for a conv, the row of the activations for a matmul), so each
loaded weight vector feeds ``ru`` FMAs; ``ru * nv`` accumulators fill the
target's SIMD register file. Keeping ``vo`` outermost keeps one weight panel
in cache while all rows use it. Elementwise epilogues are inlined into the
write-back of the accumulators, so they cost no extra pass over memory.
"""

from __future__ import annotations

from tvm import tirx
from tvm.s_tir.dlight.analysis.common_analysis import collect_vars_used_in_prim_expr
from tvm.sym.pattern import detect_linear_equation

from mcc.schedule.rules.base import CpuRule
from mcc.schedule.rules.bounds import restore_bounds
from mcc.schedule.rules.injective import schedule_spatial
from mcc.targets.cpu_info import cpu_info

MAX_ROWS = 8  # rows per micro-kernel: more rows means more broadcasts per weight load


class TiledReduction(CpuRule):
    """Register-blocked, vectorised, parallel schedule for conv / matmul / pooling kernels."""

    def __init__(self, pack_weights: bool = True, pad_in_tile: bool = True,
                 fuse_epilogue: bool = True):
        self.pack_weights = pack_weights
        self.pad_in_tile = pad_in_tile
        self.fuse_epilogue = fuse_epilogue  # False: epilogues run as separate loops

    def apply(self, func: tirx.PrimFunc, target, tunable: bool):
        started = self._start(func, target)
        if started is None:
            return None
        sch, blocks = started
        reductions = [b for b in blocks if b.is_reduction()]
        if len(reductions) != 1 or any(not (b.is_reduction() or b.is_injective())
                                       for b in blocks):
            return None
        main = reductions[0]
        plan = _plan(sch, main, cpu_info(target))
        if plan is None:
            return None
        index = blocks.index(main)
        if self.pack_weights:
            _pack_weight(sch, func, main, plan)
        _schedule_main(sch, main, plan)
        info = cpu_info(target)
        for block in blocks[:index]:  # producers: copies inlined, padding etc. run apart
            if _try_inline_copy(sch, block.block_rv):
                continue
            if not (plan.per_channel and self.pad_in_tile and _pad_in_tile(sch, block, plan)):
                schedule_spatial(sch, block.block_rv, info)
        _fuse_epilogue(sch, plan, blocks[index + 1:], info, inline=self.fuse_epilogue)
        if plan.u is not None and int(main.iters[plan.u].dom) % plan.ru:
            return restore_bounds(sch)  # the last row tile is partly outside u
        return sch


class _Plan:
    def __init__(self, v: int, u: int | None, vec: int, nv: int, ru: int, cores: int,
                 weights: list[int]):
        self.v, self.u, self.vec, self.nv, self.ru, self.cores = v, u, vec, nv, ru, cores
        self.weights = weights  # indices in block.reads of operands indexed [..., v]
        self.weights_outer = True
        self.per_channel = False  # depthwise / pooling: the data is read per output channel
        self.writeback = None
        self.tile_loop = None


def _plan(sch, main, info) -> _Plan | None:
    """Choose the vector axis v, the reuse axis u and the micro-kernel shape, or None."""
    block = sch.get(main.block_rv)
    if len(block.writes) != 1:
        return None
    out_dtype = str(block.writes[0].source.dtype)
    # integer kernels belong to the int8 rules, except max pooling (int8 ResNet pools its
    # quantized stem output: no accumulation, so any dtype vectorises the same way)
    if not out_dtype.startswith("float") and not block.name_hint.startswith("pool_max"):
        return None
    iters = main.iters
    if any(not isinstance(it.dom, (int, tirx.IntImm)) for it in iters):
        return None  # symbolic extents: leave to the generic rules
    spatial = [i for i, it in enumerate(iters) if it.kind == "S"]
    if not spatial or not any(it.kind == "R" for it in iters):
        return None
    out_region = block.writes[0].region
    if len(out_region) == 0:
        return None  # a scalar result (a full reduction): nothing to vectorise along
    last = out_region[-1].min
    v = next((i for i in spatial if last.same_as(iters[i].var)), None)
    if v is None:
        return None
    v_var = iters[v].var
    operands = [r for r in block.reads if not r.source.same_as(block.writes[0].source)]
    contiguous = [r for r in operands
                  if len(r.region) and _unit_stride(r.region[-1].min, v_var)]
    if not contiguous:
        return None
    lanes = info.lanes(out_dtype)
    extent_v = int(iters[v].dom)
    vec = lanes if extent_v % lanes == 0 else _largest_pow2_divisor(extent_v, lanes)
    if vec < 4:
        return None
    # u: a spatial axis that some contiguous operand does not read, so its vectors are reused.
    used = [_vars_in(r) for r in contiguous]
    candidates = [i for i in spatial if i != v and int(iters[i].dom) > 1
                  and any(not _uses(vars_, iters[i].var) for vars_ in used)]
    u = candidates[-1] if candidates else None
    # SIMD registers along v: 2 when rows share them, more for a lone row (GEMV) or half
    # vectors, always a divisor so no tile needs a bounds check.
    nv_max = 2 if u is not None and int(iters[u].dom) >= 4 else 4
    if vec < lanes:
        nv_max = max(nv_max, min(8, 2 * lanes // vec))
    nv = max(d for d in range(1, nv_max + 1) if (extent_v // vec) % d == 0)
    ru = 1
    if u is not None:
        budget = max(1, min(MAX_ROWS, (info.vector_registers * 3 // 4) // nv))
        ru = _rows_per_tile(int(iters[u].dom), budget)
    weights = [block.reads.index(r) for r in contiguous
               if r.region[-1].min.same_as(v_var)
               and not any(_uses(collect_vars_used_in_prim_expr(rng.min), v_var)
                           for rng in r.region[:-1])]
    plan = _Plan(v, u, vec, nv, ru, info.cores, weights)
    if u is not None:
        u_var = iters[u].var
        reused = [r for r in contiguous if not _uses(_vars_in(r), u_var)]
        streamed = [r for r in operands if all(not r.same_as(x) for x in reused)]
        plan.weights_outer = _bytes(reused) >= _bytes(streamed)
    plan.per_channel = all(_uses(_vars_in(r), v_var) for r in operands)
    return plan


def _rows_per_tile(rows: int, budget: int) -> int:
    """Rows of u per micro-kernel. The largest divisor of ``rows`` within ``budget`` when it
    is at least half the budget: such tiles need no bounds. 13 pixels or 197 tokens have
    no such divisor (one row per weight load ran at 15-20 GFLOP/s), so they get the tile
    with the most useful rows on average (fewer wasted rows on a tie) and a last tile that
    is partly outside u, bounded by ``bounds.restore_bounds``. The bound is a branch in
    every tile, so a good divisor (1500 tokens: 6) is kept: 8-row ragged tiles made the
    Whisper encoder slower."""
    divisor = max(d for d in range(1, min(budget, rows) + 1) if rows % d == 0)
    if 2 * divisor >= min(budget, rows):
        return divisor

    def useful(r):  # average useful rows per tile, then fewer wasted rows
        tiles = -(-rows // r)
        return rows / tiles, -(tiles * r - rows)

    return max(range(1, min(budget, rows) + 1), key=useful)


def _bytes(regions) -> int:
    total = 0
    for r in regions:
        n = 1
        for d in r.source.shape:
            n *= int(d) if isinstance(d, (int, tirx.IntImm)) else 1
        total += n
    return total


def _pack_weight(sch, func, main, plan: _Plan) -> None:
    """Repack a constant weight [..., N] as [N / tile, ..., tile]: one tile's panel is contiguous.

    Only for parameters Relax marked layout-free (constants): the repacking
    block is annotated as a layout-rewrite preprocess, which
    ``SplitLayoutRewritePreproc`` moves into its own function and
    ``FoldConstant`` then evaluates once, at compile time.
    """
    free = func.attrs.get("layout_free_buffers") if func.attrs is not None else None
    if not free or not plan.weights:
        return
    free_buffers = [func.params[int(i)] for i in free]  # params are the buffers themselves
    block = sch.get(main.block_rv)
    tile = plan.vec * plan.nv
    for read_index in plan.weights:
        source = block.reads[read_index].source
        if not any(source.same_as(b) for b in free_buffers):
            continue
        shape = [int(d) for d in source.shape]
        if shape[-1] % tile or shape[-1] == tile:
            continue
        cached = sch.cache_read(main.block_rv, read_index, "global")
        sch.annotate(cached, "meta_schedule.layout_rewrite_preproc", True)
        sch.transform_layout(main.block_rv, ("read", read_index),
                             lambda *idx: (idx[-1] // tile, *idx[:-1], idx[-1] % tile))
        return


def _schedule_main(sch, main, plan: _Plan) -> None:
    loops = sch.get_loops(main.block_rv)
    iters = main.iters
    vo, vj, vl = sch.split(loops[plan.v], [None, plan.nv, plan.vec])
    inner = [vj, vl]
    outer_rest = []
    for i, it in enumerate(iters):
        if it.kind != "S" or i == plan.v:
            continue
        if i == plan.u:
            uo, ui = sch.split(loops[i], [None, plan.ru])
            outer_rest.append(uo)
            inner.insert(0, ui)
        else:
            outer_rest.append(loops[i])
    reduction = [loops[i] for i, it in enumerate(iters) if it.kind == "R"]
    # Weight-stationary (vo outermost: one weight panel serves every row) when the weights
    # are the bigger operand; otherwise activation-stationary (a row block meets every panel).
    order = [vo, *outer_rest] if plan.weights_outer else [*outer_rest, vo]
    sch.reorder(*order, *reduction, *inner)
    # Accumulate the tile in a small local buffer (registers after unrolling).
    writeback = sch.cache_write(main.block_rv, 0, "local")
    tile = sch.fuse(*order)
    sch.reverse_compute_at(writeback, tile, preserve_unit_loops=True)
    for loop in inner[:-1]:
        sch.unroll(loop)
    sch.vectorize(inner[-1])
    if _const(sch, tile) >= 2:
        sch.parallel(tile)
    # After the loop kinds are set: the zero-init copies them (vectorised, unrolled).
    sch.decompose_reduction(main.block_rv, reduction[0])
    plan.writeback, plan.tile_loop = writeback, tile


def _fuse_epilogue(sch, plan: _Plan, consumers, info, inline: bool = True) -> None:
    """Inline elementwise consumers into the accumulator write-back; schedule the rest apart.
    Steps that could not join as they were get a second try once every step that feeds
    just one other is folded into it (``_inline_forward``: SiLU, HardSwish)."""
    leftover = _join_writeback(sch, plan, consumers, inline)
    leftover = [block for block in leftover if _exists(sch, block.block_rv)]
    if inline and len(leftover) > 1:
        leftover = _join_writeback(sch, plan, _inline_forward(sch, leftover), inline)
    wb_loops = sch.get_loops(plan.writeback)
    inner = wb_loops[1:]  # below the tile loop: the tile's rows and vector lanes
    if inner:
        last = inner[-1]
        extent = _const(sch, last)
        if extent and extent % plan.vec == 0:
            if extent != plan.vec:
                _, last = sch.split(last, [None, plan.vec])
            sch.vectorize(last)
    for block in leftover:
        if _exists(sch, block.block_rv):
            schedule_spatial(sch, block.block_rv, info)


def _join_writeback(sch, plan: _Plan, consumers, inline: bool) -> list:
    """reverse_compute_inline each consumer into the write-back (with its side inputs where
    it needs them); return the ones that stay apart."""
    leftover = []
    for block in consumers:
        if not _exists(sch, block.block_rv):  # inlined as another step's side input
            continue
        if not inline or _shared_input(sch, block.block_rv):
            leftover.append(block)  # x * f(x): joined once f is folded in (_inline_forward)
            continue
        try:
            sch.reverse_compute_inline(block.block_rv)
        except Exception:  # not a pure elementwise reader of the tile: run it separately
            if not _inline_side_inputs(sch, block.block_rv, plan):
                leftover.append(block)
    return leftover


def _exists(sch, block) -> bool:
    try:
        sch.get_loops(block)
    except Exception:  # noqa: BLE001 - "The block no longer exists in the IRModule"
        return False
    return True


def _inline_side_inputs(sch, block, plan: _Plan) -> bool:
    """Inline into ``block`` the steps that compute its other inputs inside this kernel
    (a scale computed from the input's range, times a constant), then ``block`` into the
    write-back. Those steps were separate blocks, so the epilogue was not a pure reader of
    the tile: it and every step after it ran as separate, unvectorised passes over the
    whole output (a dynamically quantized conv at a third of its speed). Inlined, they run
    once per output element: cheap for scalars; a per-channel chain computed at run time
    (a bias over a run-time scale) is kept out of the kernel before fusion instead
    (passes/side_inputs_apart.py). False (``block`` left as it was) when that fails."""
    side = [p for p in sch.get_producers(block) if not _reads_block(sch, p, plan.writeback)]
    if not side:
        return False
    trial = sch.copy()
    try:
        _inline_producers(trial, block, plan.writeback)
        trial.reverse_compute_inline(block)
    except Exception:  # noqa: BLE001
        return False
    _inline_producers(sch, block, plan.writeback)
    sch.reverse_compute_inline(block)
    return True


def _inline_producers(sch, block, writeback) -> None:
    """compute_inline every producer of ``block`` (transitively) that does not read the
    tile, earliest first."""
    names, todo = set(), list(sch.get_producers(block))
    while todo:
        producer = todo.pop()
        name = sch.get(producer).name_hint
        if name in names or _reads_block(sch, producer, writeback):
            continue
        names.add(name)
        todo.extend(sch.get_producers(producer))
    for child in sch.get_child_blocks(sch.get_sblock("root")):
        if sch.get(child).name_hint in names:
            sch.compute_inline(child)


def _reads_block(sch, block, target) -> bool:
    """Whether ``block`` is ``target`` or reads it, directly or through other blocks."""
    goal = sch.get(target)
    todo, seen = [block], set()
    while todo:
        current = todo.pop()
        node = sch.get(current)
        if node.same_as(goal):
            return True
        if node.name_hint in seen:
            continue
        seen.add(node.name_hint)
        todo.extend(sch.get_producers(current))
    return False


def _inline_forward(sch, blocks: list) -> list:
    """Inline each epilogue step that feeds exactly one other step, at the same point, into
    that step; return the steps left. ``x * f(x)`` activations (SiLU, HardSwish) read the
    conv's output twice, so the write-back could not take them (``_shared_input``): they ran
    as one extra pass over memory per step, each through a full-size buffer (a 1x1 conv
    112x112, 16 -> 32 channels + HardSwish: 0.31 ms, 0.18 ms without it). Folded into the
    last step, ``f`` reads the value it multiplies, and the write-back takes the whole
    activation."""
    kept = []
    for i, block in enumerate(blocks):
        if i + 1 < len(blocks) and _read_once_by_one(sch, block.block_rv):
            try:
                sch.compute_inline(block.block_rv)
                continue
            except Exception:  # noqa: BLE001 - not inlinable: it stays a step of its own
                pass
        kept.append(block)
    return kept


def _read_once_by_one(sch, block) -> bool:
    """True when one block reads ``block``'s output, one element per element it writes (no
    stencil that inlining would recompute several times)."""
    consumers = sch.get_consumers(block)
    if len(consumers) != 1:
        return False
    written = sch.get(block).writes
    if len(written) != 1:
        return False
    regions = [r for r in sch.get(consumers[0]).reads if r.source.same_as(written[0].source)]
    return len(regions) == 1 and all(
        isinstance(rng.extent, tirx.IntImm) and int(rng.extent) == 1 for rng in regions[0].region)


def _shared_input(sch, block) -> bool:
    """True when another block also reads what ``block`` reads from inside this kernel: a
    GRU's gate matmul feeds two slices (z and r). Inlining one into the write-back removed
    the intermediate buffer the other still read ("used before its definition"), and the
    whole build fell back to unfused epilogues."""
    return any(len(sch.get_consumers(producer)) > 1 for producer in sch.get_producers(block))


def _pad_in_tile(sch, block, plan: _Plan) -> bool:
    """Pad only the window each output tile reads, inside the tile loop (depthwise, pooling).

    These kernels read their input once, so a separately padded copy of the
    whole tensor doubles their memory traffic and adds a parallel launch.
    """
    try:
        sch.compute_at(block.block_rv, plan.tile_loop, preserve_unit_loops=True)
    except Exception:
        return False
    loops = sch.get_loops(block.block_rv)
    extent = _const(sch, loops[-1])
    if extent and extent % plan.vec == 0:
        if extent != plan.vec:
            _, loops[-1] = sch.split(loops[-1], [None, plan.vec])
        sch.vectorize(loops[-1])
    return True


def _try_inline_copy(sch, block) -> bool:
    """Inline a producer that only copies or reindexes (e.g. zero padding of a 1x1 conv)."""
    from tvm import get_global_func

    if get_global_func("s_tir.schedule.HasIfThenElse")(sch.get(block)):
        return False  # real padding: a branch per element inside the micro-kernel costs more
    try:
        sch.compute_inline(block)
    except Exception:
        return False
    return True


def _unit_stride(index, var) -> bool:
    """True when ``index`` grows by exactly 1 as ``var`` grows by 1 (contiguous access)."""
    coeffs = detect_linear_equation(index, [var])
    return len(coeffs) == 2 and isinstance(coeffs[0], tirx.IntImm) and int(coeffs[0]) == 1


def _uses(found: set, var) -> bool:
    return any(v.same_as(var) for v in found)


def _vars_in(region) -> set:
    found = set()
    for rng in region.region:
        found |= collect_vars_used_in_prim_expr(rng.min)
    return found


def _largest_pow2_divisor(n: int, cap: int) -> int:
    d = 1
    while d * 2 <= cap and n % (d * 2) == 0:
        d *= 2
    return d


def _const(sch, loop) -> int:
    extent = sch.get(loop).extent
    return int(extent) if isinstance(extent, tirx.IntImm) else 0
