"""CPU intrinsics for the numba PDQ searches (`mih`, `mih_wide`): popcount and prefetch, and
the array types they share. A module of its own so both layouts import it and not each other."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]


def _popcount_impl(typingctx: Any, x: Any) -> Any:
    """The CPU's popcount instruction on one uint64."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


def _prefetch_impl(typingctx: Any, arr: Any, idx: Any) -> Any:
    """Hint the CPU to load `arr[idx]` (a 1-d array) into cache."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        item = _cg.get_item_pointer(context, builder, aryty, ary, [args[1]])
        ptr = builder.bitcast(item, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = _cg.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, idx), codegen


# Typed as Any: numba's intrinsic wrappers take the typing context mypy cannot see.
_popcount: Any = intrinsic(_popcount_impl)
_prefetch: Any = intrinsic(_prefetch_impl)
_cg: Any = cgutils
