"""The jax-lbfgsb command line, in-process through cli.main, and the demo as a console script."""

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from jax_lbfgsb import Termination, cli, minimize, problems
from jax_lbfgsb.expr import parse

ROSEN_PAGE = "(1-x(1))^2 + 100*(x(2)-x(1)^2)^2"


def run(capsys, *argv):
  assert cli.main(list(argv)) == 0
  return capsys.readouterr()


def test_list_shows_the_page_functions_first(capsys):
  lines = run(capsys, "list").out.splitlines()
  assert lines[0].split() == ["#", "name", "n", "f*", "description"]
  rows = [line.split() for line in lines[1:] if line[:3].strip().isdigit()]
  assert [row[1] for row in rows[:14]] == list(problems.CORE14)
  assert rows[0][:4] == ["1", "helical_valley", "3", "0"]
  named = {row[1]: row for row in rows}
  assert named["rosenbrock_box"][2:4] == ["10", "6.00102"] and named["neuron_input"][2:4] == ["784", "unknown"]
  assert len(rows) == len(problems.PROBLEMS)


def test_solve_predefined_report_and_plots(capsys, tmp_path):
  out = run(capsys, "solve", "rosenbrock_box", "--plots", str(tmp_path), "--contour", "1", "2", "--radius", "0.5").out
  expected = minimize(problems.rosenbrock_box().fun, jnp.asarray(problems.rosenbrock_box().x0),
                      bounds=(-1.5, 0.8), history=cli._history_length(10))
  assert "termination CONVERGED_FTOL (status 0, success)" in out
  assert f"nit         {int(expected.nit)}" in out and f"nfev        {int(expected.nfev)}" in out
  assert f"{float(expected.x[1]):.10e}" in out and "compile ~" in out
  for name in ("convergence", "gradient_norm", "contour"):
    assert f"wrote {tmp_path / name}.png" in out and (tmp_path / f"{name}.png").stat().st_size > 0


def test_solve_by_number_as_json(capsys):
  number = cli._catalog().index("rosenbrock_box") + 1
  result = json.loads(run(capsys, "solve", str(number), "--json", "--maxiter", "5").out)
  assert result["problem"] == "rosenbrock_10_box" and result["nit"] == 5 and result["status"] == 1
  assert result["termination"] == "MAXITER" and result["message"].startswith("STOP: TOTAL NO. OF ITERATIONS")
  assert len(result["x"]) == len(result["jac"]) == 10 and isinstance(result["fun"], float)
  assert result["diagnosis"][-1].startswith("The solve reached maxiter after 5 iterations")
  assert set(result["timing"]) == {"wall", "cpu", "first_wall", "first_cpu", "compile"}


def test_solve_expression_page_preset_json_and_iprint(capsys):
  captured = run(capsys, "solve", "--expr", ROSEN_PAGE, "--x0", "-1.2,1", "--preset", "page", "--json",
                 "--iprint", "0")
  result = json.loads(captured.out)  # stdout is the JSON alone; the iprint output went to stderr
  assert "RUNNING THE L-BFGS-B CODE" in captured.err
  expected = minimize(parse(ROSEN_PAGE, 2).fun, jnp.array([-1.2, 1.0]), maxcor=2, gtol=0.0, ftol=1e-12,
                      pgtol_rel=1e-7, xtol_rel=1e-7, ls_ftol=0.01, ls_gtol=0.9, maxiter=4000, maxfun=40000,
                      iprint=0, history=cli._history_length(2))
  assert result["x"] == np.asarray(expected.x).tolist() and result["nit"] == int(expected.nit)
  assert result["termination"] == Termination(int(expected.termination)).name


def test_presets_map_to_minimize_options():
  parser = cli._parser()
  assert cli._options(parser, "scipy", 10, -1) == dict(
      maxcor=10, ftol=2.220446049250313e-09, ls_ftol=1e-3, ls_gtol=0.9, maxiter=15000, maxfun=15000,
      iprint=-1, history=1000, gtol=1e-5)
  assert cli._options(parser, "page", 30, 0, eps=1e-6, m=None) == dict(
      maxcor=10, ftol=1e-12, ls_ftol=0.01, ls_gtol=0.9, maxiter=4000, maxfun=40000, iprint=0, history=1000,
      gtol=0.0, pgtol_rel=1e-6, xtol_rel=1e-6)
  assert cli._options(parser, "page", 6, -1)["maxcor"] == 4  # min(n // 2 + 1, 10)
  assert cli._history_length(10**6) == 10


def test_x0_and_bounds_flags():
  parser = cli._parser()
  args = parser.parse_args(cli._glue_negative_vectors(
      ["solve", "rosenbrock", "--n", "3", "--x0", "-2", "--lower", "-inf,none,0", "--upper", "none,5,1"]))
  p = cli._problem(parser, args)
  assert p.x0.tolist() == [-2.0, -2.0, -2.0]
  assert p.lower.tolist() == [-np.inf, -np.inf, 0.0] and p.upper.tolist() == [np.inf, 5.0, 1.0]
  args = parser.parse_args(["solve", "neuron_input", "--param", "saturate=true", "--param", "hidden=4"])
  assert cli._problem(parser, args).name == "neuron_input_saturated"


def problem(*argv):
  parser = cli._parser()
  return cli._problem(parser, parser.parse_args(cli._glue_negative_vectors(["solve", *argv])))


def test_expression_n_from_the_text():
  assert problem("--expr", ROSEN_PAGE, "--x0", "0").x0.tolist() == [0.0, 0.0]  # was: x(2) out of range
  assert problem("--expr", "sum((x(i)-i)^2, i=1..5)").x0.size == 5
  assert problem("--expr", "x(1)^2", "--x0", "1,2,3").x0.size == 3  # several values: n is their count
  assert problem("--expr", "x(1)^2", "--n", "4", "--x0", "2").x0.tolist() == [2.0] * 4


def test_bounds_given_make_another_problem():
  # A known f* belongs to the problem as defined: other bounds drop it, unless the factory knows it.
  p = problem("rosenbrock", "--n", "6", "--lower", "-2", "--upper", "0.5")
  assert p.f_opt is None and "unbounded" not in p.description
  assert p.description.endswith("here with the bounds given, lower -2, upper 0.5")
  p = problem("rosenbrock", "--n", "10", "--lower", "-1.5", "--upper", "0.8")
  assert p.f_opt == problems.rosenbrock_box().f_opt and "lower -1.5, upper 0.8" in p.description
  p = problem("wood", "--lower", "-1,none,0,0", "--x0", "0.5")
  assert p.f_opt is None and p.description.endswith("lower (-1, -inf, 0, 0), upper inf")
  assert p.x0.tolist() == [0.5] * 4 and p.lower.tolist() == [-1, -np.inf, 0, 0]
  unchanged = problem("rosenbrock_box", "--lower", "-1.5", "--upper", "0.8")  # its own bounds
  assert (unchanged.f_opt, unchanged.description) == (problems.rosenbrock_box().f_opt,
                                                      problems.rosenbrock_box().description)


@pytest.mark.parametrize("argv, reason", [
    (["solve"], "give either a problem NAME"),
    (["solve", "wood", "--expr", "x(1)"], "give either a problem NAME"),
    (["solve", "nope"], "unknown problem 'nope'"),
    (["solve", "rosenbrok"], "unknown problem 'rosenbrok' (did you mean 'rosenbrock'?)"),
    (["solve", "wood", "--n", "5"], "wood takes no parameter n"),
    (["solve", "rosenbrock_box", "--delta", "0.5", "--kappa", "0.4"], "0 < delta < kappa < 1"),
    (["solve", "rosenbrock_box", "--m", "0"], "--m must be >= 1"),
    (["solve", "rosenbrock_box", "--x0", "1,2"], "--x0: expected 1 or 10 values"),
    (["solve", "rosenbrock_box", "--x0", "a"], "--x0: expected comma-separated numbers"),
    (["solve", "rosenbrock_box", "--lower", "1", "--upper", "0"], "lower > upper at x(1)"),
    (["solve", "rosenbrock_box", "--contour", "1", "1"], "--contour I J: need two different indices in 1..10"),
    (["solve", "rosenbrock_box", "--contour", "1", "2", "--radius", "0"], "--radius must be > 0"),
    (["solve", "--expr", "sum(x(i)^2, i, 1, n)"],
     "--expr needs --n N (or --x0 v1,...,vN) here: n cannot be inferred from an expression that uses n"),
    (["solve", "--expr", "sum((x(i)-i)^2, i, 1..5)"],
     "(inside sum: write sum(body, i, lo, hi) or sum(body, i=lo..hi))"),
    (["solve", "--expr", "x(1) + foo(x(1))", "--n", "1"], "--expr: unknown function `foo`"),
    (["solve", "--expr", "x(1)", "--n", "1", "--param", "a=1"], "--param applies to predefined problems"),
    (["solve", "nnls", "--param", "m"], "--param: expected KEY=VALUE"),
    (["demo", "--n", "1"], "--n must be at least 2"),
])
def test_bad_arguments_exit_2_with_a_reason(capsys, argv, reason):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(argv)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  error = [line for line in err.splitlines() if line.startswith(f"jax-lbfgsb {argv[0]}: error: ")]
  assert len(error) == 1 and reason in error[0], err


class Terminal(io.StringIO):
  def isatty(self):
    return True


def test_progress_line_after_one_second_on_a_terminal_only():
  log, terminal = io.StringIO(), Terminal()
  with cli._progress(log), cli._progress(terminal):
    time.sleep(1.3)
  assert log.getvalue() == "" and terminal.getvalue() == "solving... 1s\r" + " " * 20 + "\r"
  with cli._progress(terminal):
    pass
  assert terminal.getvalue() == "solving... 1s\r" + " " * 20 + "\r"


def test_version(capsys):
  from jax_lbfgsb import __version__

  with pytest.raises(SystemExit) as exit_info:
    cli.main(["--version"])
  assert exit_info.value.code == 0 and capsys.readouterr().out == f"jax-lbfgsb {__version__}\n"


def test_solve_help_shows_the_presets_rules(capsys):
  with pytest.raises(SystemExit):
    cli.main(["solve", "--help"])
  help_text = " ".join(capsys.readouterr().out.split())
  assert "page the classic page's rules: stop when ||proj g||_2 <= eps (1 + |f|)" in help_text
  assert "or f decreased by at most 1e-12 relative" in help_text


def test_unwritable_plots_folder_fails_before_the_solve(tmp_path, monkeypatch, capsys):
  (tmp_path / "file").write_text("")
  monkeypatch.setattr(cli, "_run", lambda *args, **kwargs: pytest.fail("solved before checking --plots"))
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["solve", "rosenbrock", "--plots", str(tmp_path / "file" / "plots")])
  assert exit_info.value.code == 2
  error = capsys.readouterr().err.splitlines()[-1]
  assert error.startswith(f"jax-lbfgsb solve: error: --plots {tmp_path / 'file' / 'plots'}: cannot write there")


def console_script():
  script = Path(sys.executable).with_name("jax-lbfgsb")
  return [str(script)] if script.exists() else [sys.executable, "-m", "jax_lbfgsb.cli"]


def test_closed_stdout_is_quiet():
  # `jax-lbfgsb ... --iprint 1 | head`: the reader is gone before the first line, which is printed
  # from JAX's callback thread (--iprint), then the report from the main thread.
  command = console_script() + ["solve", "--expr", "x(1)^2", "--x0", "3", "--iprint", "1"]
  with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"}) as process:
    process.stdout.close()
    err = process.stderr.read()
    status = process.wait(timeout=300)
  assert status == 141 and "Traceback" not in err and "Error" not in err, err


def test_demo_console_script(tmp_path):
  done = subprocess.run(console_script() + ["demo"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert done.returncode == 0, done.stderr
  out = done.stdout
  assert "RUNNING THE L-BFGS-B CODE" in out and "   N    Tit     Tnf" in out  # the iprint table
  for label in ("termination CONVERGED_FTOL", "message     CONVERGENCE", "f           6.0010163946",
                "nit         32", "nfev        39", "x(i)", "compile ~"):
    assert label in out
  for name in ("convergence", "gradient_norm", "contour"):
    assert (tmp_path / cli.DEMO_DIR / f"{name}.png").stat().st_size > 0


def test_demo_without_matplotlib_says_how_to_get_the_plots(tmp_path, monkeypatch, capsys):
  import builtins

  real_import = builtins.__import__

  def no_matplotlib(name, *args, **kwargs):
    if name.startswith("matplotlib"):
      raise ImportError("No module named 'matplotlib'")
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_matplotlib)
  assert cli.main(["demo", "--out", str(tmp_path / "plots")]) == 0
  out = capsys.readouterr().out
  assert "nit         32" in out and 'pip install "jax-lbfgsb[plot]"' in out


def test_compilation_cache_folder(tmp_path, monkeypatch):
  # Where the CLI keeps compiled solves: JAX_LBFGSB_CACHE_DIR, else
  # XDG_CACHE_HOME/jax_lbfgsb; empty turns it off; JAX's own setting wins.
  import jax

  saved = jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs
  try:
    jax.config.update("jax_compilation_cache_dir", None)
    monkeypatch.setenv("JAX_LBFGSB_CACHE_DIR", "")
    assert cli._compilation_cache() is None and jax.config.jax_compilation_cache_dir is None
    monkeypatch.delenv("JAX_LBFGSB_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cli._compilation_cache() == str(tmp_path / "jax_lbfgsb")
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "jax_lbfgsb")
    monkeypatch.setenv("JAX_LBFGSB_CACHE_DIR", str(tmp_path / "mine"))
    assert cli._compilation_cache() == str(tmp_path / "jax_lbfgsb")  # already set: kept
  finally:
    jax.config.update("jax_compilation_cache_dir", saved[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", saved[1])
