"""Matmul precision: float32, or bfloat16 operands accumulated in float32.

Every matmul of the model goes through `dot` or `einsum`. Under `float32` they are exactly
`x @ w` and `jnp.einsum`. Under `bfloat16` both operands are cast to bfloat16 where the product
is taken and the product accumulates and returns in float32 (`preferred_element_type`), the form
CPU matrix units (AMX), GPU tensor cores and TPU MXUs run fast; a bfloat16 product with a
bfloat16 result takes a slow path on the CPU. Everything else stays float32: the parameters and
their gradients, the optimizer, the cell states, softmaxes, the loss and the sampling draws.

The backward pass is written out (`_low_einsum`'s custom VJP) because autodiff of a mixed product
multiplies the float32 cotangent by a bfloat16 operand, again off the fast path: here the
cotangent is cast to bfloat16 too, and both gradients accumulate and return in float32, so a
weight used at every step of a scan has its per-step gradients added up in float32.

Attention's scores and contexts stay float32: they are batched matrix-vector products, bound by
memory, where a cast costs a pass and matrix units give nothing.

The precision is chosen by the entry points (`model.build`'s functions, through `within`): a
trace-time setting like `jax.default_matmul_precision`, read when a function is traced. A custom
VJP whose backward pass is traced later gets it explicitly (`current()`, captured in the forward
pass).
"""

import contextlib
import functools

import jax
import jax.numpy as jnp

PRECISIONS = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

_current = ["float32"]


def check(name: str) -> str:
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; choose one of {sorted(PRECISIONS)}")
    return name


@functools.cache
def check_backend(name: str) -> None:
    """Raises ValueError when JAX's default backend cannot run `name` matmuls (one tiny product,
    compiled once per process)."""
    if check(name) == "float32":
        return
    try:
        ones = jnp.ones((2, 2), jnp.float32)
        jax.block_until_ready(jax.jit(lambda a: _low("ij,jk->ik", PRECISIONS[name], a, a))(ones))
    except Exception as err:  # noqa: BLE001 - any failure means: this backend cannot
        raise ValueError(
            f"--precision={name} does not run on the {jax.default_backend()} backend "
            f"({type(err).__name__}); choose one of {sorted(PRECISIONS)} that does "
            f"(float32 runs everywhere)"
        ) from None


@contextlib.contextmanager
def matmuls(name: str):
    """Within the block, `dot` and `einsum` trace in precision `name`."""
    check(name)
    _current.append(name)
    try:
        yield
    finally:
        _current.pop()


def within(name: str, fn):
    """`fn` with its body traced (and run) under `matmuls(name)`."""
    check(name)

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with matmuls(name):
            return fn(*args, **kwargs)

    return wrapped


def current() -> str:
    return _current[-1]


def dot(x, w, precision: str | None = None):
    """`x @ w` for x [..., I] and w [I, O] or [I]."""
    if (precision or current()) == "float32":
        return x @ w
    flat = x.reshape(-1, x.shape[-1])  # [N, I]: one product, and 2-D gradients
    if w.ndim == 1:
        return einsum("ni,i->n", flat, w, precision).reshape(x.shape[:-1])
    return einsum("ni,io->no", flat, w, precision).reshape(*x.shape[:-1], w.shape[-1])


def einsum(spec: str, a, b, precision: str | None = None):
    """`jnp.einsum(spec, a, b)` of two operands in the given (or current) precision; every index
    of an operand appears in the other or in the result (so that its gradient is an einsum)."""
    precision = precision or current()
    if precision == "float32":
        return jnp.einsum(spec, a, b)
    return _low_einsum(spec, PRECISIONS[precision], a, b)


def _low(spec, dtype, a, b):
    return jnp.einsum(spec, a.astype(dtype), b.astype(dtype), preferred_element_type=jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _low_einsum(spec, dtype, a, b):
    return _low(spec, dtype, a, b)


def _low_einsum_fwd(spec, dtype, a, b):
    return _low(spec, dtype, a, b), (a, b)


def _transposed(spec: str):
    """The specs of the two gradients of `spec` = "A,B->C": "C,B->A" and "A,C->B"."""
    inputs, out = spec.replace(" ", "").split("->")
    lhs, rhs = inputs.split(",")
    return f"{out},{rhs}->{lhs}", f"{lhs},{out}->{rhs}"


def _low_einsum_bwd(spec, dtype, res, g):
    a, b = res
    spec_a, spec_b = _transposed(spec)
    return _low(spec_a, dtype, g, b).astype(a.dtype), _low(spec_b, dtype, a, g).astype(b.dtype)


_low_einsum.defvjp(_low_einsum_fwd, _low_einsum_bwd)
