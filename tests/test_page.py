"""The page (jax_lbfgsb.page): its routes in-process through Flask's test client, the same numbers as
``jax-lbfgsb solve --preset page --json``, the limits, one solve in a real headless browser, and
``jax-lbfgsb page`` stopped by Ctrl-C."""

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

pytest.importorskip("flask", reason='the page needs flask: pip install -e ".[page]"')

from markupsafe import escape  # noqa: E402  (flask's)

from jax_lbfgsb import cli, page  # noqa: E402

# Rosenbrock n = 2 from the classic start, with every field given; solved by most tests below,
# so that the worker compiles it once.
ROSEN = {"function": "rosenbrock", "n": "2", "x0": "-1.2,1", "eps": "1e-07", "delta": "0.01", "kappa": "0.9",
         "m": "2", "iprint": "0", "contour": "1,2", "radius": "0.5"}
ROSEN_FLAGS = ["--n", "2", "--x0=-1.2,1", "--eps", "1e-07", "--delta", "0.01", "--kappa", "0.9", "--m", "2",
               "--iprint", "0"]


@pytest.fixture(scope="module")
def app():
  app = page.create_app(workers=2, time_limit=120)
  yield app
  app.extensions["jax_lbfgsb"].close()


@pytest.fixture(scope="module")
def client(app):
  return app.test_client()


def query(fields):
  return urllib.parse.urlencode(fields)


def test_form_lists_the_functions_fields_and_rules(client):
  from jax_lbfgsb import problems

  response = client.get("/")
  assert response.status_code == 200
  html = response.get_data(as_text=True)
  for name in problems.CORE14:  # the 14 with their sizes and descriptions, in the select and the table
    p = problems.get(name)
    assert f'<option value="{name}" data-n="{p.x0.size}"' in html and f"<td>{p.description}</td>" in html
  for field in page.FIELDS:
    assert f'name="{field}"' in html
  assert 'value="1e-07"' in html and 'value="0.01"' in html and 'value="0.9"' in html  # the preset's defaults
  assert "0 &lt; delta &lt; kappa &lt; 1" in html and f"m &le; {page.MAX_M}" in html and f"n &le; {page.MAX_N}" in html
  assert "accepted forms" in html and "sum(body, i, lo, hi)" in html  # the expression language's help box


def test_results_page_shows_every_output_and_keeps_the_form(client):
  response = client.get("/solve?" + query(ROSEN))
  assert response.status_code == 200
  html = response.get_data(as_text=True)
  result = client.get("/solve.json?" + query(ROSEN)).get_json()
  assert result["termination"] == "CONVERGED_FTOL" and result["nit"] == 39 and result["nfev"] == 52
  reason = re.search(r'<td id="reason">(.*?)</td>', html, re.S).group(1)
  assert "CONVERGED_FTOL" in reason and escape(result["message"]) in reason
  assert f'{result["fun"]:.12e}' in html and "known f* = 0" in html
  for x, g in zip(result["x"], result["jac"]):
    assert f"{x:.10e}" in html and f"{g:.4e}" in html
  assert f'{result["nit"]} iterations, {result["nfev"]} evaluations' in html and "s for the solve" in html
  images = dict(re.findall(r'<img id="plot-(\w+)".*?src="data:image/png;base64,([^"]+)"', html))
  assert sorted(images) == ["contour", "convergence", "gradient_norm"]
  assert all(base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n") for data in images.values())
  assert "RUNNING THE L-BFGS-B CODE" in html and "CONVERGENCE: RELATIVE REDUCTION OF F" in html  # iprint 0
  # The form is still filled in, so that one value can change and the solve run again.
  assert re.search(r'<option value="rosenbrock"[^>]*selected>', html)
  for field in ("n", "x0", "eps", "delta", "kappa", "m", "iprint", "contour", "radius"):
    assert re.search(rf'name="{field}" id="{field}" value="{re.escape(ROSEN[field])}"', html), field
  assert f'href="/solve.json?{query(ROSEN).replace("&", "&amp;")}"' in html


def test_same_numbers_as_the_command(client, capsys):
  fields = {**ROSEN, "iprint": "-1", "contour": ""}
  ours = client.get("/solve.json?" + query(fields)).get_json()
  assert cli.main(["solve", "rosenbrock", "--preset", "page", "--json", *ROSEN_FLAGS[:-1], "-1"]) == 0
  theirs = json.loads(capsys.readouterr().out)
  for key in ("problem", "fun", "x", "jac", "nit", "nfev", "status", "termination", "message", "diagnosis", "plots"):
    assert ours[key] == theirs[key], key
  assert set(ours["timing"]) == set(theirs["timing"])


def test_own_expression(client):
  fields = {"function": "expr", "expr": "(1-x(1))^2 + 100*(x(2)-x(1)^2)^2", "x0": "-1.2,1", "iprint": "-1"}
  result = client.get("/solve.json?" + query(fields)).get_json()
  assert result["problem"] == "expression" and result["success"]
  assert all(abs(x - 1.0) < 1e-4 for x in result["x"])
  del fields["function"]  # a bookmark with expr alone solves the expression
  assert client.get("/solve.json?" + query(fields)).get_json()["x"] == result["x"]


def test_repeated_solve_reuses_the_compiled_program(client):
  fields = {**ROSEN, "iprint": "-1", "contour": ""}
  client.get("/solve.json?" + query(fields))
  again = client.get("/solve.json?" + query(fields)).get_json()
  # A compile of this solve takes about 2 s; the cached one milliseconds (margins for a busy machine).
  assert again["timing"]["first_wall"] < 1.0 and again["timing"]["compile"] < 0.25, again["timing"]


@pytest.mark.parametrize("fields, field, rule", [
    ({"function": "nope"}, "function", "unknown problem 'nope'"),
    ({"function": "rosenbrok"}, "function", "(did you mean 'rosenbrock'?)"),
    ({"function": ""}, "function", "function: choose a function"),
    ({"function": "expr"}, "expr", "expr: type your own f(x(1..n))"),
    ({"expr": "x(1) +"}, "expr", "expr: syntax error"),
    ({"expr": "x(1) + y"}, "expr", "unknown name `y`"),
    ({"expr": "x(1) + foo(x(2))"}, "expr", "unknown function `foo`"),
    ({"expr": "x(1)^2 + " * 300 + "1"}, "expr", "expr must be at most 2000 characters here, got 2701"),
    ({"function": "rosenbrock", "n": "3", "x0": "1,2"}, "x0", "x0: expected 1 or 3 values (n = 3), got 2"),
    ({"function": "rosenbrock", "x0": "1,abc"}, "x0", "x0: expected comma-separated numbers, got '1,abc'"),
    ({"function": "rosenbrock", "n": "two"}, "n", "n: expected an integer, got 'two'"),
    ({"function": "rosenbrock", "n": "1001"}, "n", "n must be <= 1000 here, got 1001"),
    ({"expr": "x(5000)^2"}, "n", "n must be <= 1000 here, got 5000"),
    ({"function": "wood", "n": "5"}, "n", "wood takes no parameter n"),
    ({"function": "rosenbrock", "delta": "0.9", "kappa": "0.5"}, "delta", "0 < delta < kappa < 1; got 0.9, 0.5"),
    ({"function": "rosenbrock", "kappa": "1"}, "kappa", "0 < delta < kappa < 1"),
    ({"function": "rosenbrock", "eps": "small"}, "eps", "eps: expected a number, got 'small'"),
    ({"function": "rosenbrock", "eps": "-1"}, "eps", "eps must be >= 0, got -1.0"),
    ({"function": "rosenbrock", "m": "0"}, "m", "m must be >= 1, got 0"),
    ({"function": "rosenbrock", "m": "21"}, "m", "m must be <= 20 here, got 21"),
    ({"function": "rosenbrock", "iprint": "1.5"}, "iprint", "iprint: expected an integer, got '1.5'"),
    ({"function": "rosenbrock", "contour": "1"}, "contour", "contour: expected two indices i,j"),
    ({"function": "rosenbrock", "contour": "1,3"}, "contour", "contour: need two different indices in 1..2, got 1 3"),
    ({"function": "rosenbrock", "contour": "1,2", "radius": "0"}, "radius", "radius must be > 0, got 0.0"),
])
def test_bad_input_is_400_naming_the_field_and_rule(client, fields, field, rule):
  response = client.get("/solve.json?" + query(fields))
  assert response.status_code == 400 and response.get_json()["field"] == field
  assert rule in response.get_json()["error"]
  response = client.get("/solve?" + query(fields))
  html = response.get_data(as_text=True)
  assert response.status_code == 400 and f'<span id="error-field">{field}</span>' in html
  assert str(escape(rule)) in html
  if field not in ("function", "expr"):  # the field in error is marked in the form
    assert re.search(rf'id="{field}" [^>]*class="bad"', html), html


def test_two_solves_at_once_and_the_form_answers_meanwhile(app):
  replies = {}

  def solve(name, fields):
    replies[name] = app.test_client().get("/solve.json?" + query(fields))

  threads = [threading.Thread(target=solve, args=("rosenbrock", {**ROSEN, "contour": ""})),
             threading.Thread(target=solve, args=("beale", {"function": "beale", "iprint": "-1"}))]
  for thread in threads:
    thread.start()
  start = time.perf_counter()
  assert app.test_client().get("/").status_code == 200
  answered = time.perf_counter() - start
  for thread in threads:
    thread.join(timeout=120)
  assert replies["rosenbrock"].status_code == replies["beale"].status_code == 200
  assert replies["rosenbrock"].get_json()["nit"] == 39 and replies["beale"].get_json()["success"]
  assert answered < 2.0  # while beale compiled in the other worker


def test_a_solve_past_the_time_limit_is_stopped():
  app = page.create_app(workers=1, time_limit=0.2)  # a new worker is still importing JAX by then
  try:
    client = app.test_client()
    response = client.get("/solve.json?" + query({"function": "rosenbrock"}))
    assert response.status_code == 504 and "longer than the time limit of 0.2 s" in response.get_json()["error"]
    assert client.get("/solve?function=rosenbrock").status_code == 504
    assert client.get("/").status_code == 200
  finally:
    app.extensions["jax_lbfgsb"].close()
  assert not os.path.exists(app.extensions["jax_lbfgsb"].folder)


@pytest.fixture(scope="module")
def server(app):
  from werkzeug.serving import make_server

  served = make_server("127.0.0.1", 0, app, threaded=True)
  thread = threading.Thread(target=served.serve_forever, daemon=True)
  thread.start()
  yield f"http://127.0.0.1:{served.server_port}/"
  served.shutdown()
  thread.join()


def chrome():
  """A headless Chromium driven by chromedriver, or a skip saying what is missing."""
  webdriver = pytest.importorskip("selenium.webdriver", reason='selenium is missing: pip install -e ".[test]"')
  browser, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
  if not (browser and driver):
    pytest.skip("no chromium/chromedriver: apt-get install chromium chromium-driver (.ci/run does)")
  options = webdriver.ChromeOptions()
  options.binary_location = browser
  for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--window-size=1200,1600"):
    options.add_argument(argument)
  return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


def test_browser_fills_the_form_and_sees_the_results(server):
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support.ui import Select, WebDriverWait

  driver = chrome()
  try:
    driver.get(server)
    Select(driver.find_element(By.ID, "function")).select_by_value("rosenbrock")
    assert driver.find_element(By.ID, "description").text.startswith("chained Rosenbrock")
    for field in ("x0", "radius"):
      driver.find_element(By.ID, field).clear()
    driver.find_element(By.ID, "x0").send_keys("-1.2,1")
    driver.find_element(By.ID, "radius").send_keys("0.5")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(driver, 120).until(lambda d: d.find_elements(By.ID, "reason"))
    assert "CONVERGED_FTOL" in driver.find_element(By.ID, "reason").text
    # The solution of the chained Rosenbrock, x = (1, 1), to the digits that
    # SciPy's default ftol gives (the last bits depend on the CPU's rounding).
    assert 0.0 <= float(driver.find_element(By.ID, "f").text.split()[0]) < 1e-12
    rows = driver.find_elements(By.CSS_SELECTOR, "#x tr")[1:]  # i, x(i), g(i)
    xs = [float(row.find_elements(By.TAG_NAME, "td")[1].text) for row in rows]
    assert len(xs) == 2 and np.allclose(xs, 1.0, rtol=0, atol=1e-6)
    images = driver.find_elements(By.CSS_SELECTOR, ".plots img")
    assert len(images) == 3
    for image in images:
      assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 0
    assert driver.find_element(By.ID, "x0").get_attribute("value") == "-1.2,1"  # still filled in
  finally:
    driver.quit()


def test_command_serves_and_stops_on_ctrl_c():
  # `python -m jax_lbfgsb.cli page ...` as from a terminal: with Ctrl-C's
  # SIGINT handled (a shell script's background job, pytest's included,
  # inherits it ignored, and Python keeps it so).
  start = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler);"
           " sys.argv = ['jax_lbfgsb.cli', *sys.argv[1:]]; runpy.run_module('jax_lbfgsb.cli', run_name='__main__')")
  command = [sys.executable, "-c", start, "page", "--port", "0", "--workers", "1"]
  with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"}) as process:
    try:
      line = process.stdout.readline()
      url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
      with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200 and b"L-BFGS-B" in response.read()
      process.send_signal(signal.SIGINT)
      assert process.wait(timeout=60) == 0
      err = process.stderr.read()
    finally:
      process.kill()  # a failed test ends it too (a no-op once it has stopped)
  assert "jax-lbfgsb page stopped" in err and "Traceback" not in err, err
