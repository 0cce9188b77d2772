"""iprint: the Fortran v3.0 progress output, printed from inside the jitted loop."""

import jax
import jax.numpy as jnp
import numpy as np

from jax_lbfgsb import minimize
from jax_lbfgsb._iprint import fortran_d, iterate_line


def rosen(x):
  return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


X0 = jnp.asarray(np.resize([-1.2, 1.0], 10))


def test_fortran_d_format():
  assert fortran_d(1.5, 12, 5) == " 1.50000D+00"
  assert fortran_d(-2.220446049250313e-16, 10, 3) == "-2.220D-16"
  assert fortran_d(6.00101639e100, 10, 3) == " 6.001+100"
  assert iterate_line(7, 6.0, 1e-5) == "At iterate    7    f=  6.00000D+00    |proj g|=  1.00000D-05"


def _run(capsys, x0=X0, **kwargs):
  res = minimize(rosen, x0, bounds=(-1.5, 0.8), **kwargs)
  jax.effects_barrier()
  return res, capsys.readouterr().out


def test_iprint_off_prints_nothing_and_keeps_no_diagnostics(capsys):
  res, out = _run(capsys)
  assert out == "" and res.state.info is None  # the iprint counters are not in the graph
  # A warm start that prints starts them (its table counts from here) ...
  more, out = _run(capsys, iprint=0, x0=res)
  assert more.state.info is not None and out.rstrip().endswith("CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH")
  # ... and one that does not print drops them.
  assert _run(capsys, x0=more)[0].state.info is None


def test_iprint_levels(capsys):
  res, out = _run(capsys, iprint=0)
  assert out.startswith("RUNNING THE L-BFGS-B CODE")
  assert "Machine precision =  2.220D-16" in out and "At iterate" not in out
  nit, nfev = int(res.nit), int(res.nfev)
  row = [line for line in out.splitlines() if line.startswith("   10 ")]
  assert len(row) == 1 and row[0].split()[:3] == ["10", str(nit), str(nfev)]
  assert out.rstrip().endswith("CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH")

  res, out = _run(capsys, iprint=10)
  lines = [line for line in out.splitlines() if line.startswith("At iterate")]
  assert [int(line.split()[2]) for line in lines] == [0, 10, 20, 30]
  assert "At X0         5 variables are exactly at the bounds" in out
  assert f"f= {fortran_d(float(res.fun), 12, 5)}" not in lines[0]

  _, out = _run(capsys, iprint=99)
  assert out.count("LINE SEARCH") == int(res.nit)


def test_iprint_under_jit_and_vmap_prints_each_lane_iteration_once(capsys):
  # float32 here (float64 output: test_iprint_levels); unconstrained.
  x0s = jnp.stack([X0, X0 * 0.5]).astype(jnp.float32)
  batch = jax.jit(jax.vmap(lambda x0: minimize(rosen, x0, iprint=1)))(x0s)
  jax.effects_barrier()
  out = capsys.readouterr().out
  assert out.count("RUNNING THE L-BFGS-B CODE") == 2 and out.count("Tit   =") == 2
  assert " This problem is unconstrained." in out
  lines = [line for line in out.splitlines() if line.startswith("At iterate")]
  assert len(lines) == 2 + int(batch.nit[0]) + int(batch.nit[1])  # iterate 0 of each lane, then each iteration


def test_last_line_is_the_whole_task_text_for_every_code(capsys):
  # The final line is SciPy's task text in full ("STOP: TOTAL NO. OF ..." was
  # once cut at its first period).
  from jax_lbfgsb._iprint import IprintPrinter
  from jax_lbfgsb._status import Termination

  res, out = _run(capsys, iprint=0, maxiter=3)
  assert out.rstrip().endswith("STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT")
  for code in Termination:
    IprintPrinter(0).finish(2, 3, 4, 5, 0, 1, 1e-3, 1.5, int(code))
    out = capsys.readouterr().out
    assert code.record.task in out.splitlines(), code
