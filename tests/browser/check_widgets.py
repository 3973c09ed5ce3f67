#!/usr/bin/env python
"""Check the course widgets in a real browser: JupyterLab + headless Chromium, driven by Selenium.

    python tests/browser/check_widgets.py [--notebook 01_molrg_posterior_mean --notebook 06_loco_edit] [--timeout 600]

By default it checks two notebooks, one after the other: 01 (the posterior widget: a slider of t) and 06 (LOCO
Edit's edit widget: its first slider picks the face, so moving it inverts a new face, finds a new direction and
re-samples — about half a minute on a CPU).  Screenshots: ``tests/browser/screenshot_01.png`` and ``..._06.png``.

1. Make sure Chromium and its driver are installed: Debian's ``chromium`` and ``chromium-driver``
   (``apt-get install`` when missing and we are root; no browser is downloaded from anywhere else), and
   the ``selenium`` Python package (``pip install selenium`` when missing).
2. Copy the notebook to a temporary folder (JupyterLab autosaves; the repository's copy stays untouched)
   and start JupyterLab on 127.0.0.1 with a random token.
3. Open the notebook in headless Chromium, run all cells (JupyterLab's own "Run All" command), wait
   for every cell to finish and the widget to render.
4. Record the image (PNG data URL) of the widget's plot, drag the first slider of the widget, and wait
   for the plot to be redrawn; PASS when the image changed, FAIL otherwise.
5. Save a screenshot of the widget after the move to ``tests/browser/screenshot.png`` (and the one
   before to the temporary folder), stop the browser and the JupyterLab server we started.

Exit status 0 on PASS, 1 on FAIL, 2 when the browser or the driver cannot be set up.
Not part of the pytest suite: it needs a browser and takes a minute or two.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]  # tests/browser/ → the repository root
APT_PACKAGES = ("chromium", "chromium-driver")


# ---------------------------------------------------------------------------------------- setup
def _log(msg: str) -> None:
    print(f"[browser-check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ensure_chromium() -> tuple[str, str]:
    """Paths of the chromium binary and chromedriver, installing Debian's packages when missing."""
    def find():
        return (shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver"))

    browser, driver = find()
    if browser and driver:
        return browser, driver
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(f"chromium / chromedriver not found. Install them (Debian/Ubuntu: "
                         f"`sudo apt-get install {' '.join(APT_PACKAGES)}`) and run again.")
    _log(f"installing {' '.join(APT_PACKAGES)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *APT_PACKAGES], check=True, env=env)
    browser, driver = find()
    if not (browser and driver):
        raise SystemExit("apt-get finished but chromium / chromedriver are still not on PATH")
    return browser, driver


def ensure_selenium() -> None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        _log("installing selenium with pip")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "selenium"], check=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(root: Path, port: int, token: str, log_path: Path) -> subprocess.Popen:
    """JupyterLab on 127.0.0.1:port serving ``root``, window.jupyterapp exposed, news and update checks off."""
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           f"--LabApp.workspaces_dir={root / '.workspaces'}", f"--LabApp.user_settings_dir={root / '.settings'}"]
    if os.geteuid() == 0:  # containers often run as root; JupyterLab refuses that without the flag
        cmd.append("--allow-root")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(root / ".runtime"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=root, stdout=log_path.open("w"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    for _ in range(120):
        if proc.poll() is not None:
            raise SystemExit(f"JupyterLab exited early (code {proc.returncode}); see {log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"JupyterLab did not answer on port {port} within 60 s; see {log_path}")


def stop_lab(proc: subprocess.Popen) -> None:
    """Stop the server we started (it shuts its kernels down on SIGTERM); kill it if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def make_driver(browser: str, driver_path: str, width: int = 1500, height: int = 1300):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              f"--window-size={width},{height}", "--hide-scrollbars"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)


# ---------------------------------------------------------------------------------------- in the page
def _wait(predicate, timeout: float, what: str, poll: float = 0.5):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 — the DOM changes under us while JupyterLab renders
            value = None
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


JS_NOTEBOOK_STATE = """
const app = window.jupyterapp;
if (!app) return null;
const w = app.shell.currentWidget;
if (!w || !w.content || !w.sessionContext) return null;
const session = w.sessionContext;
const kernel = session.session && session.session.kernel;
const cells = w.content.widgets.filter(c => c.model.type === 'code');
return {
  kernel: kernel ? kernel.status : null,
  n: cells.length,
  executed: cells.filter(c => c.model.executionCount !== null).length,
  running: document.querySelectorAll('.jp-InputArea-prompt').length ?
           Array.from(document.querySelectorAll('.jp-InputArea-prompt')).filter(p => p.textContent.includes('*')).length : 0,
  errors: Array.from(document.querySelectorAll('.jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]')).length,
};
"""

JS_WIDGET_IMAGE = """
const box = arguments[0];
const img = box.querySelector('.jupyter-widgets-output-area img, .widget-output img, img');
return img ? img.getAttribute('src') : null;
"""


def find_widget(driver):
    """The last rendered ipywidgets ``interactive`` box that holds a slider and an image."""
    from selenium.webdriver.common.by import By

    boxes = driver.find_elements(By.CSS_SELECTOR, ".widget-interact, .jupyter-widgets.widget-vbox")
    for box in reversed(boxes):
        if box.find_elements(By.CSS_SELECTOR, ".noUi-handle, .widget-slider") and box.find_elements(By.TAG_NAME, "img"):
            return box
    return None


def move_slider(driver, box) -> str:
    """Drag the first slider's handle to the right; fall back to the keyboard, then to its readout."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", box)
    handle = box.find_element(By.CSS_SELECTOR, ".noUi-handle")
    readout = box.find_elements(By.CSS_SELECTOR, ".widget-readout")
    before = readout[0].text if readout else ""
    track = box.find_element(By.CSS_SELECTOR, ".noUi-target, .slider")
    ActionChains(driver).click_and_hold(handle).pause(0.2).move_by_offset(int(track.size["width"] * 0.3), 0) \
        .pause(0.2).release().perform()
    time.sleep(0.5)
    if readout and readout[0].text != before:
        return f"dragged the slider handle: {before} → {readout[0].text}"
    handle.click()
    handle.send_keys(*[Keys.ARROW_RIGHT] * 20)
    time.sleep(0.5)
    if readout and readout[0].text != before:
        return f"moved the slider with the keyboard: {before} → {readout[0].text}"
    readout[0].click()
    readout[0].send_keys(Keys.CONTROL, "a")
    readout[0].send_keys("0.5", Keys.ENTER)
    return f"typed into the slider's readout: {before} → {readout[0].text}"


# ---------------------------------------------------------------------------------------- main
DEFAULT_NOTEBOOKS = ("01_molrg_posterior_mean", "06_loco_edit")


def check_notebook(src: Path, screenshot: Path, browser: str, driver_path: str, timeout: float) -> tuple[bool, list[str]]:
    """Run all cells of a copy of ``src`` in JupyterLab + headless Chromium, move the widget's first slider, and check
    that its plot is redrawn.  Returns (passed, details)."""
    work = Path(tempfile.mkdtemp(prefix="lococourse-browser-check-"))
    shutil.copy(src, work / src.name)
    token, port = secrets.token_hex(16), _free_port()
    _log(f"JupyterLab on 127.0.0.1:{port} serving a copy of {src.name} in {work}")
    lab = start_lab(work, port, token, work / "jupyterlab.log")
    driver = None
    result, details = False, []
    try:
        driver = make_driver(browser, driver_path)
        driver.get(f"http://127.0.0.1:{port}/lab/tree/{src.name}?token={token}&reset")
        state = _wait(lambda: (s := driver.execute_script(JS_NOTEBOOK_STATE)) and s["kernel"] == "idle" and s,
                      180, "the notebook to open with an idle kernel")
        _log(f"notebook open, kernel idle, {state['n']} code cells; running all cells")
        t0 = time.monotonic()
        driver.execute_script("return window.jupyterapp.commands.execute('notebook:run-all-cells');")
        _wait(lambda: (s := driver.execute_script(JS_NOTEBOOK_STATE)) and s["kernel"] == "idle"
              and s["executed"] == s["n"] and s["running"] == 0 and s, timeout, "all cells to run")
        state = driver.execute_script(JS_NOTEBOOK_STATE)
        details.append(f"ran {state['executed']}/{state['n']} code cells in {time.monotonic() - t0:.0f} s, "
                       f"{state['errors']} error output(s)")
        _log(details[-1])
        box = _wait(lambda: find_widget(driver), 120, "the widget (slider + plot) to render")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", box)
        before = _wait(lambda: driver.execute_script(JS_WIDGET_IMAGE, box), 60, "the widget's plot")
        box.screenshot(str(work / "screenshot_before.png"))
        how = move_slider(driver, box)
        details.append(how)
        _log(how)
        after = _wait(lambda: (a := driver.execute_script(JS_WIDGET_IMAGE, find_widget(driver))) and a != before and a,
                      300, "the plot to be redrawn after the slider moved")
        time.sleep(1.0)
        box = find_widget(driver)
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", box)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        box.screenshot(str(screenshot))
        h0, h1 = (hashlib.sha256(x.encode()).hexdigest()[:12] for x in (before, after))
        details.append(f"plot image changed: sha256 {h0} → {h1} ({len(before)} → {len(after)} chars of data URL)")
        result = state["errors"] == 0 and after.startswith("data:image/png") and after != before
        if state["errors"]:
            details.append("some cells produced error outputs")
    except TimeoutError as e:
        details.append(str(e))
        if driver is not None:
            driver.save_screenshot(str(screenshot))
            details.append(f"full-page screenshot of the failure saved to {screenshot}")
    finally:
        if driver is not None:
            driver.quit()
        stop_lab(lab)
    details.append(f"screenshot: {screenshot} (before the move: {work / 'screenshot_before.png'})")
    return result, details


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--notebook", action="append", default=None,
                    help=f"notebook in notebooks/ (without .ipynb); repeat for several; default: {' and '.join(DEFAULT_NOTEBOOKS)}")
    ap.add_argument("--timeout", type=float, default=900, help="seconds for running all cells of one notebook")
    ap.add_argument("--screenshot-dir", type=Path, default=HERE, help="where screenshot_<NN>.png go")
    args = ap.parse_args(argv)

    sources = [REPO / "notebooks" / f"{name}.ipynb" for name in (args.notebook or DEFAULT_NOTEBOOKS)]
    missing = [str(s) for s in sources if not s.exists()]
    if missing:
        raise SystemExit(f"no notebook {', '.join(missing)}")
    try:
        browser, driver_path = ensure_chromium()
        ensure_selenium()
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"FAIL (setup): {e}")
        return 2
    passed = True
    for src in sources:
        ok, details = check_notebook(src, args.screenshot_dir / f"screenshot_{src.name[:2]}.png", browser, driver_path,
                                     args.timeout)
        passed &= ok
        print(("PASS" if ok else "FAIL") + f": {src.name} in headless Chromium")
        for d in details:
            print(f"  - {d}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
